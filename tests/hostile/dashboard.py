"""Hostile dashboard data made at test time: markdown payloads in every file-borne string the pages
show, manifests pointing outside the job folder, and a 150 MP PNG written without holding it."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

from jobs.intake.submit import JobSpec, submit
from jobs.ops.gpu import gpu_stats
from jobs.store import Store
from jobs.store.lease import claim_next, commit_item, finish
from jobs.store.status import JobStatus
from tests.conftest import make_png
from tests.fakes import FakeNvml, running_state, write_heartbeat, write_job

BEACON = "![x](http://evil.example/b.png)"
PHISH = "[Session expired: log in again](http://evil.example)"
#: One string with every payload: an image beacon, a phishing link, HTML, a colour directive, LaTeX.
PAYLOAD = f"{BEACON} {PHISH} <img src=x> :red[big] $x$ www.evil.example me@evil.example"
#: What must never reach a markdown element unescaped (Streamlit would render it).
RAW = ["![x](", "](http", "<img", ":red[big]", "$x$", "http://evil", "www.evil", "me@evil"]
#: Every markdown construct CommonMark, GFM, remark-math and Streamlit's directives know, and everyday
#: text that must come through unchanged: each must render as exactly its own text, with no markup.
MARKDOWN_ATTACKS = [
    BEACON,
    PHISH,
    "<img src=x> <div>d</div> <!-- c --> <http://evil.example/auto> <https://evil.example>",
    ":red[big] :blue-background[x] :small[y] :orange-badge[z] :material/home: :smile: :+1: :joy:",
    "$x$ and $$y$$",
    "see http://evil.example/a, HTTPS://EVIL.EXAMPLE, www.evil.example/p?q=1, me@evil.example, a.b+c@evil.example",
    "mailto:x@evil.example xmpp:x@evil.example/res ftp://evil.example evil.example javascript:alert(1)",
    "&lt;b&gt; &#x5b;a&#x5d;(http&#58;//evil.example) &amp;",
    "x\n- item\n+ plus\n* star\n1. one\n2) two\n> quote\n# head\n## h2\n    code\n```\nfence\n```\n~~~\nt\n~~~",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "a | b\n--- | ---\n1 | 2",
    "~~del~~ ~d~ **b** __b__ *i* _i_ `c` ``c`` *a* 2*3*4 a*b*c",
    "[a][r]\n\n[r]: http://evil.example",
    "[^1]\n\n[^1]: note",
    "x\n===\ny\n---\n***\n___\n- - -",
    '[x](<http://evil.example>) [y]( http://evil.example "t") [z](javascript:alert(1))',
    "\\[escaped\\] back\\slash end\\",
    "\u202eevil\u202c text\x00\x07 tab\there",
    "C:\\Users\\x a:b c: d ::: 10 < 20 > 5 & 3 {#id .cls} ^sup^ ==mark==",
    "model folder /tmp/pytest-of-root/pytest-64/test_a_b/nope does not exist: a_b_c __init__.py _lead trail_",
    "engine changed since this job started: model sha256 ab12.. -> cd34..; resume with --accept-engine-change",
    "a <-> b <- c -- d >= e <= f ~= g :streamlit: -> x",
]


def hostile_finished_job(store: Store, tmp_path: Path) -> str:
    """A finished job whose job error, item error messages and source names (as a ZIP member's
    would be) all carry :data:`PAYLOAD`; a delete request whose kind does too."""
    job_id = submit(
        store,
        [make_png(tmp_path / "a.png", (50, 40)), make_png(tmp_path / "b.png", (60, 40))],
        JobSpec(engine="tests.engines:SizeEngine"),
    )
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    commit_item(store, claim, {"index": 0, "source": "a.png", "status": "done", "text": "hello"})
    error = {"kind": "engine", "message": PAYLOAD}
    commit_item(store, claim, {"index": 1, "source": "b.png", "status": "failed", "text": "", "error": error})
    finish(store, claim, JobStatus.FAILED, f"engine options {{'model': '{PAYLOAD}'}} failed")
    manifest = store.job_dir(job_id) / "manifest.json"
    items = json.loads(manifest.read_text())
    for item in items:
        item["source"] = f"{PAYLOAD}/{item['source']}"
    manifest.write_text(json.dumps(items))
    return job_id


def hostile_stalled_job(store: Store) -> str:
    """A running job whose alive runner (id, host and in-flight ZIP member all :data:`PAYLOAD`) has
    committed nothing for 200 s: the Job page shows the 'stalled' diagnosis with its tips."""
    now = time.time()
    job_id = write_job(store, "20260101-000000-bbbbbb", state=running_state(PAYLOAD, expires_in=600))
    write_heartbeat(
        store,
        "r1",
        id=PAYLOAD,
        host=PAYLOAD,
        interval_s=600.0,  # stays alive however slow the machine is
        current={"job": job_id, "item_timeout_s": 60, "claimed_at": now - 200},
        workers=[{"item": 0, "source": PAYLOAD, "pid": 1, "item_started_at": now - 50}],
    )
    return job_id


def hostile_health(store: Store) -> None:
    """A stale runner whose id is :data:`PAYLOAD`, and a live one whose GPU name is (a memory alert)."""
    write_heartbeat(store, "stale-box", age_s=30, id=f"stale {PAYLOAD}", host=PAYLOAD)
    gpu = gpu_stats(FakeNvml(used_mib=15800, total_mib=16000))
    for g in gpu["gpus"]:
        g["name"] = PAYLOAD
    write_heartbeat(store, "gpu-box", id="gpu-box", host=PAYLOAD, gpu=gpu, interval_s=600.0)


def point_items_at(store: Store, job_id: str, paths: list[Any]) -> None:
    """Hand-edit the manifest so item n's input is ``paths[n]`` (absolute, ``../``, a symlink...)."""
    manifest = store.job_dir(job_id) / "manifest.json"
    items = json.loads(manifest.read_text())
    for item, path in zip(items, paths, strict=False):
        item["path"] = path
    manifest.write_text(json.dumps(items))


def huge_png(path: Path, width: int, height: int) -> Path:
    """A white greyscale PNG of width x height, streamed row by row: the test never holds it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * width
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
        f.write(chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def pdf_pages(path: Path, sizes: list[tuple[float, float]]) -> Path:
    """A blank PDF with one page per (width, height) in points: 3600 pt is 50 inches, 225 MP at 300 dpi."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for w, h in sizes:
        doc.new_page(w, h)
    doc.save(str(path))
    doc.close()
    return path
