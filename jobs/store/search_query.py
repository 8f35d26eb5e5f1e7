"""The query side of the search index (jobs/store/search.py): a user's words to SQL, rows to hits.

Kept apart from the file that holds the rows (jobs/store/search_index.py) so the matching rules can be
read and changed in one place: how terms combine, which use FTS5 and which ``LIKE``, how hits are ranked
and how snippets mark the matches. It works on any open connection holding the index's tables, so it
sits below the module that opens the file (``SearchIndex.query`` calls :func:`query`).

* Chinese: the FTS5 ``trigram`` tokenizer (SQLite >= 3.34) matches any substring of 3+ characters,
  whatever the script. A query term of 1-2 characters (``发票`` is 2) cannot use trigrams: such terms
  are matched with ``LIKE`` on the stored text (a scan; the other terms still narrow it through FTS5).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from jobs.errors import OcrJobsError

#: Highlight markers inside snippets (private-use characters, stripped from indexed text).
MARK_START, MARK_END = "\ue000", "\ue001"
SNIPPET_TOKENS = 48
#: Past this many matches, hits come newest first rather than by bm25 (see :func:`_fts`).
RANK_CAP = 5000


class SearchError(OcrJobsError):
    """A query or an index this user cannot use; the message says what to do."""


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


def query(conn: sqlite3.Connection, text: str, job_id: str | None, limit: int, notes: list[str]) -> list[Hit]:
    """Hits for every whitespace-separated term (all must occur, anywhere, any case), best first.
    Notes for the user (too many matches to rank) are appended to ``notes``."""
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
        rows = _fts(conn, long_terms, job_id, where, args, limit, notes)
    else:  # 1-2 character terms only: no trigram can serve them; newest jobs first
        sql = (
            "SELECT d.job_id, d.item, d.source, d.page, NULL, NULL, d.text FROM docs d WHERE "
            + " AND ".join(where)
            + " ORDER BY d.job_id DESC, d.item LIMIT ?"
        )
        rows = conn.execute(sql, [*args, limit]).fetchall()
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


def _fts(
    conn: sqlite3.Connection,
    terms: list[str],
    job_id: str | None,
    where: list[str],
    args: list[Any],
    limit: int,
    notes: list[str],
) -> list[Any]:
    """The FTS5 side of :func:`query`. bm25 must count every document holding each term first (a
    scan of their whole posting lists: ~50 ms for a word on most of 100,000 pages), so past
    :data:`RANK_CAP` matches hits come newest first, unscored, with a note: a word on that many
    pages ranks little anyway. One job's documents are also bounded by their rowid range."""
    c = conn
    match = " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)
    probe = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid DESC LIMIT ?"
    many = len(c.execute(probe, (match, RANK_CAP + 1)).fetchall()) > RANK_CAP
    if many:
        notes.append(f"over {RANK_CAP:,} items match: newest first; add words to rank by relevance")
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
