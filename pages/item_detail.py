"""One item of a job in detail: its picture large with the line boxes drawn over it, the text beside
it, and how it was made (attempts, device, processing time, batch, the full error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from jobs.dashboard.thumbnails import detail_png
from pages.literal import md_text


def label(i: dict[str, Any]) -> str:
    return f"#{i['index']} {i['source']}" + (f" p{i['page']}" if i.get("page") else "")


def worker(res: dict[str, Any]) -> str | None:
    """Which runner and worker process made the result (results before workers were recorded: the runner)."""
    w = res.get("worker") if isinstance(res.get("worker"), dict) else {}
    runner = res.get("runner")
    if not w:
        return str(runner) if runner else None
    return f"{runner or '?'} · worker {w.get('slot')} (pid {w.get('pid')})"


def show(job_dir: Path, item: dict[str, Any], res: dict[str, Any], dpi: int) -> None:
    """``item`` (its manifest entry) with ``res`` (its result merged in, as the Results table has it)."""
    picture, about = st.columns([3, 2])
    picture = picture.container(border=True)  # a white page on a white page needs an edge
    png = detail_png(job_dir, item, dpi, res.get("boxes") or [])
    if png:
        boxes = len(res.get("boxes") or [])
        picture.image(png, caption=f"{boxes} line box(es) drawn" if boxes else None, width="stretch")
    else:
        picture.caption("No picture: the input is gone, refused or not an image.")
    with about:
        st.code(res.get("text") or "(no text found)", language=None, wrap_lines=True)
        facts = {
            "status": str(res.get("status", "")).replace("_", " "),
            "confidence": f"{res['confidence']:.2f}" if isinstance(res.get("confidence"), int | float) else None,
            "attempts": res.get("attempts"),
            "device": res.get("device"),
            "worker": worker(res),
            "processing time": f"{res['processing_time_ms'] / 1000:.2f} s"
            if isinstance(res.get("processing_time_ms"), int | float)
            else None,
            "batch size": res.get("batch_size"),
            "truncated": "yes: cut at the token limit" if res.get("truncated") else None,
        }
        st.markdown("  \n".join(f"**{k}**: {md_text(v)}" for k, v in facts.items() if v not in (None, "")))
        error = res.get("error") or {}
        if error:
            st.caption(f"Error ({md_text(error.get('kind', '?'))})")
            st.code(str(error.get("message", "")), language=None, wrap_lines=True)
