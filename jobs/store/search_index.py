"""The search index's SQLite file, ``state/search/index.sqlite``: opening or creating it, checking it is ours.

Split from the search entry points (jobs/store/search.py, which says what the index is for) so that
the one file's safety rules sit together: the schema it must match exactly, where it lives and who may
open it, what happens to a damaged one, and the short write transactions that change its rows. What a
query matches and how hits are ranked is jobs/store/search_query.py.

* Damage: a file that is not our schema (not SQLite, a FIFO, a symlink, extra triggers or views)
  is moved to ``state/quarantine/`` and rebuilt, with a note for the user.
* Several users (jobs/store/perms.py): the index holds every job's text, so its folder belongs to the
  service group (runners, dashboard) with mode 2770, like the job folders. A user who cannot open it
  gets PermissionError here; jobs/store/search.py then searches an in-memory index instead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobs.store import perms, search_query
from jobs.store.atomic import quarantine
from jobs.store.search_query import MARK_END, MARK_START, Hit

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
BUSY_MS = 5000
_SCHEMA = {
    "meta": "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "jobs": "CREATE TABLE jobs(job_id TEXT PRIMARY KEY, mark TEXT NOT NULL)",
    "docs": "CREATE TABLE docs(id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, item INTEGER NOT NULL, "
    "source TEXT NOT NULL, page INTEGER, text TEXT NOT NULL, UNIQUE(job_id, item))",
    "fts": "CREATE VIRTUAL TABLE fts USING fts5(text, content='docs', content_rowid='id', tokenize='trigram')",
}
_EXPECTED = {("table", n) for n in ("meta", "jobs", "docs", "fts", "fts_data", "fts_idx", "fts_docsize", "fts_config")}
_EXPECTED |= {("index", f"sqlite_autoindex_{n}_1") for n in ("meta", "jobs", "docs")}
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class Damaged(Exception):
    """The index file is not one we made: set aside and rebuilt."""


def is_corruption(e: BaseException) -> bool:
    return isinstance(e, Damaged) or (
        isinstance(e, sqlite3.DatabaseError) and (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF in _CORRUPT_CODES
    )


class SearchIndex:
    """One open index (a file, or ``:memory:``). Writes run in short ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.notes: list[str] = []
        target = str(path) if path is not None else ":memory:"
        if path is not None:
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    raise Damaged("it is not a regular file")
            except FileNotFoundError:
                pass
        self.conn = sqlite3.connect(target, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
        self.ino = os.stat(path).st_ino if path is not None else 0
        try:
            self._setup()
        except BaseException:
            self.conn.close()
            raise

    def _setup(self) -> None:
        c = self.conn
        c.execute("PRAGMA trusted_schema=OFF")  # a hand-made file's views/triggers may call nothing unsafe
        c.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        try:
            if self.path is not None:
                c.execute("PRAGMA journal_mode=WAL")
                c.execute("PRAGMA synchronous=NORMAL")  # derived data: no fsync per commit
            have = set(c.execute("SELECT type, name FROM sqlite_master"))
        except sqlite3.DatabaseError as e:
            if is_corruption(e):
                raise Damaged(str(e)) from None
            raise
        if not have:
            c.execute("BEGIN IMMEDIATE")
            try:
                if not c.execute("SELECT 1 FROM sqlite_master").fetchone():
                    for sql in _SCHEMA.values():
                        c.execute(sql)
                    c.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            have = set(c.execute("SELECT type, name FROM sqlite_master"))
        if have != _EXPECTED:
            raise Damaged(f"unexpected tables {sorted(n for _, n in have ^ _EXPECTED)[:5]}")
        sqls = dict(c.execute("SELECT name, sql FROM sqlite_master WHERE name IN ('meta','jobs','docs','fts')"))
        version = c.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if sqls != _SCHEMA or version != (SCHEMA_VERSION,):
            raise Damaged("its tables are not this version's")

    def close(self) -> None:
        self.conn.close()

    # -- writes ------------------------------------------------------------------------------
    def _write(self, fn: Any, *args: Any) -> Any:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            out = fn(*args)
            c.execute("COMMIT")
            return out
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _drop_job(self, job_id: str) -> None:
        c = self.conn
        c.execute("INSERT INTO fts(fts, rowid, text) SELECT 'delete', id, text FROM docs WHERE job_id=?", (job_id,))
        c.execute("DELETE FROM docs WHERE job_id=?", (job_id,))
        c.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))

    def _put(self, job_id: str, res: dict[str, Any]) -> None:
        c, item = self.conn, int(res["index"])
        old = c.execute("SELECT id, text FROM docs WHERE job_id=? AND item=?", (job_id, item)).fetchone()
        if old is not None:
            c.execute("INSERT INTO fts(fts, rowid, text) VALUES ('delete', ?, ?)", old)
            c.execute("DELETE FROM docs WHERE id=?", (old[0],))
        text = str(res.get("text") or "").replace(MARK_START, "").replace(MARK_END, "")
        page = res.get("page") if type(res.get("page")) is int else None
        cur = c.execute(
            "INSERT INTO docs(job_id, item, source, page, text) VALUES (?,?,?,?,?)",
            (job_id, item, str(res.get("source") or ""), page, text),
        )
        c.execute("INSERT INTO fts(rowid, text) VALUES (?, ?)", (cur.lastrowid, text))

    def replace_job(self, job_id: str, results: Iterable[dict[str, Any]], mark: str | None) -> None:
        """The job's documents become ``results`` (all of them); ``mark`` records what was read."""

        def run() -> None:
            self._drop_job(job_id)
            for res in results:
                self._put(job_id, res)
            if mark is not None:
                self.conn.execute("INSERT INTO jobs VALUES (?, ?)", (job_id, mark))

        self._write(run)

    def add(self, job_id: str, res: dict[str, Any], files: int | None = None, mark: str | None = None) -> None:
        """Add or replace one item; keep the job's mark only if its documents now number ``files``."""

        def run() -> None:
            self._put(job_id, res)
            n = self.conn.execute("SELECT count(*) FROM docs WHERE job_id=?", (job_id,)).fetchone()[0]
            # A count that differs means something was missed: "stale" never equals a real mark, so
            # the next search re-reads this job (the row stays: every job with documents has one).
            ok = mark is not None and n == files
            self.conn.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (job_id, mark if ok else "stale"))

        self._write(run)

    def remove_job(self, job_id: str) -> None:
        self._write(self._drop_job, job_id)

    def clear(self) -> None:
        def run() -> None:
            for sql in ("INSERT INTO fts(fts) VALUES ('delete-all')", "DELETE FROM docs", "DELETE FROM jobs"):
                self.conn.execute(sql)

        self._write(run)

    def marks(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT job_id, mark FROM jobs"))

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM docs").fetchone()[0])

    # -- reads -------------------------------------------------------------------------------
    def query(self, text: str, job_id: str | None = None, limit: int = 20) -> list[Hit]:
        """Hits for every whitespace-separated term (all must occur, anywhere, any case), best first;
        the matching and ranking are jobs/store/search_query.py's. Its notes land in ``.notes``."""
        return search_query.query(self.conn, text, job_id, limit, self.notes)


# -- the index of a job folder -----------------------------------------------------------------
def index_dir(root: Path) -> Path:
    return Path(root) / "search"


def _prepare_dir(root: Path) -> Path:
    """``state/search/``: in a shared folder, the service group's alone (2770, like a job folder),
    so a team member cannot read others' text in it. PermissionError if this user cannot make it so."""
    d = index_dir(root)
    try:
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode):
            quarantine(Path(root), d, "state/search is not a folder; the search index is rebuilt")
            raise FileNotFoundError
    except FileNotFoundError:
        shared = perms.is_shared(Path(root) / "jobs")
        try:
            os.mkdir(d, 0o770 if shared else 0o700)
        except FileExistsError:
            return d
        if shared:
            try:
                os.chown(d, -1, os.stat(Path(root) / "jobs").st_gid)
                os.chmod(d, 0o2770)
            except PermissionError:
                os.rmdir(d)  # not the service group's: this user may not hold every job's text
                raise
    return d


def open_index(root: Path) -> SearchIndex:
    """The folder's index, created if missing; a damaged one is set aside and a new one made (with a
    note in ``.notes``). PermissionError if this user cannot open it (see the module's doc)."""
    path = _prepare_dir(Path(root)) / "index.sqlite"
    try:
        return SearchIndex(path)
    except (Damaged, sqlite3.DatabaseError) as e:
        if not is_corruption(e):
            raise
        _set_aside(Path(root), path, str(e))
        idx = SearchIndex(path)
        idx.notes.append(f"the search index was damaged ({e}); it was set aside and rebuilt from the result files")
        return idx


def _set_aside(root: Path, path: Path, why: str) -> None:
    for victim in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            quarantine(root, victim, f"search index unusable, rebuilt from the result files: {why}")
        except OSError as e:
            log.warning("could not set aside %s: %s", victim, e)
            victim.unlink(missing_ok=True)
