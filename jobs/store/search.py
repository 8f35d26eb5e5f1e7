"""Search across every job's results: a *derived* SQLite FTS5 index in ``state/search/index.sqlite``.

The result files stay the truth; this index is only a copy made to find them fast, so it may be
dropped at any time (``ocrjobs reindex``) and is never a reason to fail a commit or a delete.

* Freshness: the index records, per job, a *mark* of its ``results/`` folder (mtime_ns and inode,
  which change whenever a result file is added, replaced or removed). Each search stats every job's
  ``results/`` (one stat per job) and re-reads only the jobs whose mark changed, or that are new;
  jobs whose folder is gone are dropped. The runner's commit hook (:func:`note_commit`) adds the one
  result and refreshes the mark only when the job's indexed count equals its result files (else it
  forgets the mark, so the next search re-reads that job): a missed or failed hook is caught either way.
* Chinese: the FTS5 ``trigram`` tokenizer (SQLite >= 3.34) matches any substring of 3+ characters,
  whatever the script. A query term of 1-2 characters (``发票`` is 2) cannot use trigrams: such terms
  are matched with ``LIKE`` on the stored text (a scan; the other terms still narrow it through FTS5).
* Damage: a file that is not our schema (not SQLite, a FIFO, a symlink, extra triggers or views)
  is moved to ``state/quarantine/`` and rebuilt, with a note for the user.
* Several users (jobs/store/perms.py): the index holds every job's text, so its folder belongs to the
  service group (runners, dashboard) with mode 2770, like the job folders. A user who cannot open it
  searches an in-memory index of the jobs they can read instead (slower, same answers for them).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import JobNotFound, OcrJobsError
from jobs.store import perms
from jobs.store.atomic import quarantine
from jobs.store.job import JOB_ID
from jobs.store.store import Store

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
BUSY_MS = 5000
#: Highlight markers inside snippets (private-use characters, stripped from indexed text).
MARK_START, MARK_END = "\ue000", "\ue001"
SNIPPET_TOKENS = 48
MAX_LIMIT = 1000
#: Past this many matches, hits come newest first rather than by bm25 (see :meth:`SearchIndex.query`).
RANK_CAP = 5000
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


class SearchError(OcrJobsError):
    """A query or an index this user cannot use; the message says what to do."""


class Damaged(Exception):
    """The index file is not one we made: set aside and rebuilt."""


@dataclass
class Hit:
    """One matching item. ``snippet`` is plain text; ``highlights`` are [start, end) offsets into it."""

    job_id: str
    item: int
    source: str
    page: int | None
    snippet: str
    highlights: list[tuple[int, int]]
    score: float | None
    job_name: str | None = None
    link: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "highlights": [list(h) for h in self.highlights]}


@dataclass
class Found:
    """What :func:`search` returns: ranked hits and notes for the user (a rebuild, a fallback)."""

    query: str
    hits: list[Hit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "hits": [h.to_dict() for h in self.hits], "notes": self.notes}


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
        """Hits for every whitespace-separated term (all must occur, anywhere, any case), best first."""
        terms = [t for t in text.split() if t]
        if not terms:
            raise SearchError("give one or more words to search for")
        long_terms = [t for t in terms if len(t) >= 3]
        likes = [_like(t) for t in terms if len(t) < 3]
        where, args = [], []
        if job_id is not None:
            where.append("d.job_id = ?")
            args.append(job_id)
        for pattern in likes:
            where.append("d.text LIKE ? ESCAPE '\\'")
            args.append(pattern)
        if long_terms:
            rows = self._fts(long_terms, job_id, where, args, limit)
        else:  # 1-2 character terms only: no trigram can serve them; newest jobs first
            sql = (
                "SELECT d.job_id, d.item, d.source, d.page, NULL, NULL, d.text FROM docs d WHERE "
                + " AND ".join(where)
                + " ORDER BY d.job_id DESC, d.item LIMIT ?"
            )
            rows = self.conn.execute(sql, [*args, limit]).fetchall()
        hits = []
        for job, item, source, page, snip, score, full in rows:
            if type(item) is not int:  # only a hand-made index holds such a row
                continue
            if snip is None or len(terms) > len(long_terms):  # mark the short terms too, ourselves
                snip = _snippet(str(full), terms)
            plain, spans = _spans(str(snip))
            hits.append(
                Hit(str(job), item, str(source), page if type(page) is int else None, plain, spans,
                    None if type(score) is not float else round(-score, 4))
            )  # fmt: skip
        return hits

    def _fts(self, terms: list[str], job_id: str | None, where: list[str], args: list[Any], limit: int) -> list[Any]:
        """The FTS5 side of :meth:`query`. bm25 must count every document holding each term first (a
        scan of their whole posting lists: ~50 ms for a word on most of 100,000 pages), so past
        :data:`RANK_CAP` matches hits come newest first, unscored, with a note: a word on that many
        pages ranks little anyway. One job's documents are also bounded by their rowid range."""
        c = self.conn
        match = " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)
        probe = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid DESC LIMIT ?"
        many = len(c.execute(probe, (match, RANK_CAP + 1)).fetchall()) > RANK_CAP
        if many:
            self.notes.append(f"over {RANK_CAP:,} items match: newest first; add words to rank by relevance")
        if job_id is not None:
            lo, hi = c.execute("SELECT min(id), max(id) FROM docs WHERE job_id=?", (job_id,)).fetchone()
            if lo is None:
                return []
            where, args = [*where, "fts.rowid BETWEEN ? AND ?"], [*args, lo, hi]
        sql = (
            f"SELECT d.job_id, d.item, d.source, d.page, snippet(fts, 0, ?, ?, '…', ?), "
            f"{'NULL' if many else 'bm25(fts)'}, d.text FROM fts JOIN docs d ON d.id = fts.rowid WHERE fts MATCH ? "
            + "".join(f"AND {w} " for w in where)
            + ("ORDER BY fts.rowid DESC LIMIT ?" if many else "ORDER BY rank LIMIT ?")
        )
        return c.execute(sql, [MARK_START, MARK_END, SNIPPET_TOKENS, match, *args, limit]).fetchall()


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _snippet(text: str, terms: list[str], width: int = 40) -> str:
    """A window of ``text`` around the first term found, every term marked (case-insensitive)."""
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
    first = pattern.search(text)
    start = max(0, (first.start() if first else 0) - width)
    end = min(len(text), start + 2 * width + (first.end() - first.start() if first else 0))
    window = pattern.sub(lambda m: MARK_START + m.group() + MARK_END, text[start:end])
    return ("…" if start else "") + window + ("…" if end < len(text) else "")


def _spans(snip: str) -> tuple[str, list[tuple[int, int]]]:
    """Plain text and the [start, end) of each marked run (adjacent runs merged)."""
    out, spans, opened = [], [], None
    n = 0
    for ch in snip:
        if ch == MARK_START:
            opened = n
        elif ch == MARK_END:
            if opened is not None:
                if spans and spans[-1][1] == opened:
                    spans[-1] = (spans[-1][0], n)
                elif n > opened:
                    spans.append((opened, n))
            opened = None
        else:
            out.append(ch)
            n += 1
    return "".join(out), spans


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


def _mark(store: Store, job_id: str) -> str | None:
    """What changes when a result file comes or goes; None if the job is gone or not ours to read."""
    try:
        st = os.stat(f"{store.jobs_dir}/{job_id}/results")
        return f"{st.st_mtime_ns}:{st.st_ino}"
    except FileNotFoundError:
        return "none" if os.path.isdir(f"{store.jobs_dir}/{job_id}") else None
    except (PermissionError, NotADirectoryError):
        return None


def refresh(store: Store, idx: SearchIndex) -> int:
    """Bring the index up to the result files: re-read new and changed jobs, drop deleted ones.
    One stat per job; returns how many jobs were re-read."""
    known = idx.marks()
    with os.scandir(store.jobs_dir) as it:
        names = sorted(e.name for e in it if JOB_ID.fullmatch(e.name))  # oldest first: rowids follow time
    changed = 0
    for job_id in names:
        mark = _mark(store, job_id)
        old = known.pop(job_id, None)
        if mark is None or mark == old:
            continue
        try:
            results = list(store.iter_results(job_id))  # read before the write lock is taken
        except (JobNotFound, OSError) as e:
            log.debug("search index skips job %s: %s", job_id, e)
            continue
        idx.replace_job(job_id, results, mark)
        changed += 1
    for gone in set(known) - set(names):  # every job with documents has a row in jobs (see add)
        idx.remove_job(gone)
    return changed


def reindex(store: Store) -> dict[str, Any]:
    """Rebuild the index from scratch from the result files (``ocrjobs reindex``)."""
    idx = open_index(store.root)
    try:
        idx.clear()
        jobs = refresh(store, idx)
        return {"jobs": jobs, "items": idx.count(), "path": str(idx.path), "notes": idx.notes}
    finally:
        idx.close()


def search(store: Store, query: str, job_id: str | None = None, limit: int = 20) -> Found:
    """What the CLI and the dashboard's search box call: ranked hits across all jobs (or one), after
    bringing the index up to date. Hits of jobs this user cannot open are left out."""
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"the limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if job_id is not None:
        store.get(job_id)  # JobNotFound with its usual message
    found = Found(query)
    for attempt in (1, 2):
        try:
            idx = open_index(store.root)
        except (PermissionError, sqlite3.OperationalError) as e:
            if isinstance(e, sqlite3.OperationalError) and "unable to open" not in str(e):
                raise SearchError(f"the search index is busy or unusable ({e}); try again") from None
            found.notes.append(f"you cannot open the search index ({e}); searched the jobs you can read without it")
            idx = SearchIndex(None)
        try:
            try:
                refresh(store, idx)
            except sqlite3.OperationalError as e:  # read-only to this user, or locked past the timeout
                if is_corruption(e):
                    raise
                found.notes.append(f"the search index could not be updated ({e}); recent items may be missing")
            hits = idx.query(query, job_id, limit)
            found.notes += idx.notes
            break
        except sqlite3.DatabaseError as e:
            if attempt == 2 or not is_corruption(e) or idx.path is None:
                raise SearchError(f"the search index cannot be read ({e}); run `ocrjobs reindex`") from None
            idx.close()
            _set_aside(store.root, idx.path, str(e))
            found.notes.append(f"the search index was damaged ({e}); it was set aside and rebuilt")
        finally:
            idx.close()
    for hit in hits:
        try:
            if not os.access(store.job_dir(hit.job_id), os.R_OK | os.X_OK):
                continue
            hit.job_name = store.get(hit.job_id).spec.get("name") or None
        except JobNotFound:
            continue  # deleted since, or a name that is no job id (a hand-made index)
        hit.link = f"job?id={hit.job_id}"
        found.hits.append(hit)
    return found


# -- hooks: a failure here never fails the commit or the delete ----------------------------------
_LOCK = threading.Lock()
_OPEN: dict[str, SearchIndex] = {}
_warned: set[str] = set()


def _cached(root: Path) -> SearchIndex | None:
    """This process's open index for the folder, reopened if the file was replaced (a rebuild);
    None while no index exists: the first search builds it whole, so runners never create it."""
    idx = _OPEN.pop(str(root), None)
    if idx is not None:
        try:
            if idx.path is not None and os.stat(idx.path).st_ino == idx.ino:
                _OPEN[str(root)] = idx
                return idx
        except FileNotFoundError:
            pass
        idx.close()
    if not (index_dir(root) / "index.sqlite").exists():
        return None
    idx = _OPEN[str(root)] = open_index(root)
    return idx


def _quietly(what: str, root: Path, fn: Any) -> None:
    try:
        with _LOCK:
            idx = _cached(root)
            if idx is not None:
                fn(idx)
    except Exception as e:  # noqa: BLE001 - the index is derived: log, the next search re-reads the job
        stale = _OPEN.pop(str(root), None)
        if stale is not None:
            stale.close()
        level = logging.DEBUG if what in _warned else logging.WARNING
        _warned.add(what)
        log.log(level, "search index not updated (%s): %s; the next search re-reads the results", what, e)


def note_commit(store: Store, job_id: str, result: dict[str, Any], progress: dict[str, Any] | None = None) -> None:
    """Runner hook, after an item's result file is in place. ``progress`` (the claim's exact counts of
    valid results) saves listing results/ at every commit; without it the files are counted."""

    def run(idx: SearchIndex) -> None:
        mark = _mark(store, job_id)
        if progress is not None:
            files = sum(v for k, v in progress.items() if k != "current" and type(v) is int)
        else:
            files = store.committed_count(job_id)
        idx.add(job_id, result, files, mark)

    _quietly("commit", store.root, run)


def forget_job(store: Store, job_id: str) -> None:
    """Hook after a job's folder is deleted."""
    _quietly("delete", store.root, lambda idx: idx.remove_job(job_id))
