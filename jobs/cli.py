"""``python -m jobs``: the command-line contract other tools drive.

Clients only write requests; every command that changes a job asks the runners to do it.
A mistake a user can make prints one line on stderr and exits non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs import config
from jobs.errors import JobDamaged, JobNotFound, OcrJobsError
from jobs.ops.terminal import safe
from jobs.store.clock import milestones, when
from jobs.store.status import TERMINAL, JobStatus
from jobs.store.store import Job, Store

EXPORT_FORMATS = ("json", "csv", "txt", "xlsx", "pdf", "hocr", "alto")
_MAX_ITEM_TIMEOUT_S = 24 * 3600  # the rule JobSpec enforces (jobs/intake/submit.py)
#: The job states in which a request would do nothing: refused instead of saying "requested".
_NOTHING_TO_DO: dict[str, frozenset[JobStatus]] = {
    "pause": frozenset({JobStatus.PAUSED}) | TERMINAL,
    "resume": frozenset(JobStatus) - {JobStatus.PAUSED},
    "cancel": TERMINAL,
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state", default=argparse.SUPPRESS, help="job folder (default: $OCRJOBS_STATE or ./state)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    prog = "python -m jobs" if sys.argv[0].endswith("__main__.py") else "ocrjobs"
    p = argparse.ArgumentParser(prog=prog, description="ocrjobs: crash-safe batch OCR jobs")
    p.add_argument("--state", default=None, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", parents=[common], help="submit files, a workbook's column or a folder as one job")
    s.add_argument("files", nargs="*", metavar="FILE")
    s.add_argument("--sheet", help="workbook: the sheet (default: the only one)")
    s.add_argument("--column", help="workbook/CSV: the column naming the files, by header text or letter")
    s.add_argument("--header-row", type=int, default=1, metavar="N", help="workbook/CSV: header row (0: none)")
    s.add_argument("--images", metavar="ZIP", help="workbook/CSV: ZIP of the files the column names")
    s.add_argument("--folder", metavar="PATH", help="every image/PDF below PATH (under OCRJOBS_ALLOWED_ROOTS)")
    s.add_argument(
        "--engine",
        default=config.DEFAULT_ENGINE,
        help="built-in name, an installed ocrjobs.engines entry point, or package.module:Class "
        "allowed by the runner's OCRJOBS_ALLOWED_ENGINES",
    )
    s.add_argument(
        "--engine-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the engine (JSON values allowed); repeatable",
    )
    s.add_argument(
        "--lang",
        choices=("en", "zh", "auto"),
        help="the text's language, if known: skips the script detection of the auto engine (engine option lang)",
    )
    hf = s.add_argument_group("transformers engine (--engine transformers)")
    hf.add_argument("--model", metavar="PATH_OR_ID", help="model folder, or a hub id already in the local cache")
    hf.add_argument("--batch-size", metavar="N|auto", help="images per batch (default auto: grows while memory allows)")
    hf.add_argument("--max-new-tokens", type=int, metavar="N", help="longest text generated per image")
    hf.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code")
    hf.add_argument("--task", help="what the model reads out: ocr (default), markdown, grounding, table, formula...")
    hf.add_argument("--prompt", metavar="TEXT", help="the instruction sent instead of the family's task prompt")
    hf.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the model runs (default auto)")
    s.add_argument("--name", default="", help="a name to find the job by (shown beside its id)")
    s.add_argument("--priority", type=int, default=config.DEFAULT_PRIORITY, help="higher runs first")
    s.add_argument("--item-timeout", type=float, default=config.DEFAULT_ITEM_TIMEOUT_S, metavar="S")
    s.add_argument(
        "--max-workers",
        type=int,
        default=None,
        metavar="N",
        help="at most N workers on this job at once (default: its fair share of a runner's workers)",
    )
    s.add_argument("--dpi", type=int, default=config.DEFAULT_DPI, help="PDF render resolution")
    s.add_argument(
        "--pdf-text",
        choices=("auto", "ocr", "text"),
        default="auto",
        help="PDF pages: auto reads a page's own text layer when it covers the page, else OCRs it; "
        "ocr always OCRs; text never OCRs a PDF page (default auto)",
    )
    s.add_argument("--retries", type=int, default=config.DEFAULT_RETRIES, help="retries of a failing item")
    s.add_argument(
        "--max-attempts",
        type=int,
        default=config.DEFAULT_MAX_ATTEMPTS,
        help="times the job may lose its runner before it fails",
    )
    s.add_argument("--wait", action="store_true", help="show progress; exit 0 only if the job succeeds")

    ls = sub.add_parser("list", parents=[common], help="list jobs")
    ls.add_argument("--name", metavar="TEXT", help="only jobs whose name contains TEXT (any case)")
    ls.add_argument("--by", metavar="WHO", help="only jobs submitted by WHO")
    for name, text in (
        ("show", "show one job"),
        ("cancel", "cancel a job"),
        ("pause", "pause a job"),
        ("resume", "resume a paused job"),
        ("retry", "retry failed and timed-out items"),
        ("delete", "delete a job and its files (a running job is cancelled first)"),
    ):
        r = sub.add_parser(name, parents=[common], help=text)
        r.add_argument("job_id", metavar="ID")
        if name == "resume":
            r.add_argument(
                "--accept-engine-change",
                action="store_true",
                help="continue a job paused because its engine or model changed since it started",
            )
    pr = sub.add_parser("priority", parents=[common], help="change where a waiting job stands in the queue")
    pr.add_argument("job_id", metavar="ID")
    pr.add_argument("priority", type=int, metavar="N", help="the new priority (higher runs first)")
    e = sub.add_parser("export", parents=[common], help="write a job's results to a file")
    e.add_argument("job_id", metavar="ID")
    e.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        help="default: from the output's extension (.json .csv .txt .xlsx .pdf .hocr, .xml for alto), else json; "
        "pdf: the inputs as a searchable PDF (an invisible text layer on OCR'd pages)",
    )
    e.add_argument("-o", "--output", required=True, metavar="PATH", help="file to write, or - for stdout")
    e.add_argument(
        "--split",
        action="store_true",
        help="pdf: one PDF per source, hocr/alto: one file per item, into the new folder -o names",
    )
    i = sub.add_parser("inspect", parents=[common], help="a workbook's sheets, columns and first rows")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--header-row", type=int, default=1, metavar="N", help="header row (0: none)")
    i.add_argument("--rows", type=int, default=5, metavar="N", help="rows to preview per sheet")
    sub.add_parser("health", parents=[common], help="ok (exit 0), degraded (1) or down (2)")
    d = sub.add_parser("diagnose", parents=[common], help="why a running job is stalled or orphaned, and what to do")
    d.add_argument("job_id", metavar="ID")
    f = sub.add_parser("init-folder", parents=[common], help="set the job folder up for several Unix users")
    f.add_argument("--group", required=True, help="the team: the users (group name or gid) who may submit")
    f.add_argument("--owner", help="the runner's user (default: you); run as root to give the folder away")
    f.add_argument("--service-group", help="group of the runners and the dashboard (default: the owner's group)")
    q = sub.add_parser("search", parents=[common], help="find items by their text, across all jobs")
    q.add_argument("query", metavar="TEXT", help="words that must all occur (any case; Chinese too)")
    q.add_argument("--job", metavar="ID", help="only this job's items")
    q.add_argument("--limit", type=int, default=20, metavar="N", help="most hits shown (default 20)")
    sub.add_parser("reindex", parents=[common], help="rebuild the search index from the result files")
    return p


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise OcrJobsError(f"engine option {pair!r} must look like KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _hf_options(args: argparse.Namespace) -> dict[str, Any]:
    """The transformers engine's flags as engine options (only those given)."""
    given = {
        "model": args.model,
        "batch_size": None if args.batch_size is None else _batch_size(args.batch_size),
        "max_new_tokens": args.max_new_tokens,
        "trust_remote_code": True if args.trust_remote_code else None,
        "device": args.device,
        "task": args.task,
        "prompt": args.prompt,
    }
    out = {k: v for k, v in given.items() if v is not None}
    if out and args.engine != "transformers":
        flags = ", ".join("--" + k.replace("_", "-") for k in out)
        raise OcrJobsError(f"{flags} only apply to --engine transformers")
    return out


def _batch_size(raw: str) -> int | str:
    if raw == "auto":
        return raw
    if not raw.isdigit() or int(raw) < 1:
        raise OcrJobsError(f"--batch-size must be a whole number >= 1 or auto, got {raw!r}")
    return int(raw)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=1) if args.json else text)


def _summary(job: Job) -> str:
    p = job.progress()
    named = f"  {safe(job.name)!r}" if job.name else ""
    by = f"  by {safe(job.submitted_by)}" if job.submitted_by else ""
    return (
        f"{job.id}  {job.status.value:<21} {p['committed']:>5}/{p['total']:<5} "
        f"done {p['done']} failed {p['failed']} timed out {p['timed_out']}  engine {job.spec.get('engine')}"
        f"  submitted {when(job.created_at) or '-'}{by}{named}"
    )


def _times(job: Job) -> str:
    started, finished = job.state.get("started_at"), job.state.get("finished_at")
    return milestones(job.created_at, started, finished, took=lambda s: f"{s:.1f} s", submitted="submitted")


def cmd_submit(store: Store, args: argparse.Namespace) -> int:
    from jobs.intake.submit import JobSpec, submit_any

    if not 0 < args.item_timeout <= _MAX_ITEM_TIMEOUT_S:
        raise OcrJobsError(
            f"--item-timeout must be more than 0 and at most {_MAX_ITEM_TIMEOUT_S:g} s, got {args.item_timeout:g}"
        )
    spec = JobSpec(
        engine=args.engine,
        engine_options={
            **_options(args.engine_option),
            **({"lang": args.lang} if args.lang else {}),
            **_hf_options(args),
        },
        item_timeout=args.item_timeout,
        retries=args.retries,
        max_attempts=args.max_attempts,
        dpi=args.dpi,
        pdf_text=args.pdf_text,
        name=args.name.strip(),
        max_workers=args.max_workers,
    )
    job_id = submit_any(
        store,
        args.files,
        folder=args.folder,
        sheet=args.sheet,
        column=args.column,
        header_row=args.header_row,
        images=args.images,
        spec=spec,
        priority=args.priority,
    )
    job = store.get(job_id)
    bad = [i for i in store.manifest(job_id) if i.get("error")]
    note = f"; {len(bad)} with input errors, first: {safe(bad[0]['source'])}: {safe(bad[0]['error'])}" if bad else ""
    _print(args, {"id": job_id, "total": job.total}, f"submitted {job_id} ({job.total} items{note})")
    return _wait(store, job_id, args.json) if args.wait else 0


def _wait(store: Store, job_id: str, quiet: bool) -> int:
    from jobs.ops.health import check

    warned = False
    started = time.monotonic()
    while True:
        job = store.get(job_id)
        p = job.progress()
        if not quiet:
            bar = "#" * int(30 * p["committed"] / max(p["total"], 1))
            print(f"\r[{bar:<30}] {p['committed']}/{p['total']} {job.status.value:<12}", end="", file=sys.stderr)
        if job.status.is_terminal or job.status == JobStatus.PAUSED:
            if not quiet:
                print(file=sys.stderr)
                if job.state.get("error"):
                    print(f"{job.status.value}: {safe(job.state['error'])}", file=sys.stderr)
            return 0 if job.status == JobStatus.SUCCEEDED else 1
        if not warned and time.monotonic() - started > 10 and check(store)["status"] == "down":
            print(f"\nwarning: no runner is alive in {store.root}; start one with `python runner.py`", file=sys.stderr)
            warned = True
        time.sleep(0.5)


def cmd_list(store: Store, args: argparse.Namespace) -> int:
    jobs = store.list_jobs()
    if args.name:
        jobs = [j for j in jobs if args.name.lower() in j.name.lower()]
    if args.by:
        jobs = [j for j in jobs if j.submitted_by == args.by]
    text = "\n".join(_summary(j) for j in jobs) if jobs else f"no jobs in {store.root}"
    _print(args, [j.to_dict() for j in jobs], text)
    return 0


def cmd_show(store: Store, args: argparse.Namespace) -> int:
    from jobs.exports.results import count_truncated, truncation_warning
    from jobs.store.job import queue_places

    job = store.get(args.job_id)
    data = job.to_dict()
    data["requests_pending"] = [r["kind"] for _, r in store.pending_requests(job.id)]
    lines = [_summary(job), _times(job)]
    if data["error"]:
        lines.append(f"error: {safe(data['error'])}")
    if data["requests_pending"]:
        lines.append(f"requested (waiting for a runner): {', '.join(data['requests_pending'])}")
    if job.status == JobStatus.RUNNING and (n := data["progress"].get("workers")) is not None:
        lines.append(f"workers on it now: {n}")
    elif job.status == JobStatus.QUEUED:
        data["queue_position"] = queue_places(store.list_jobs()).get(job.id)
        lines.append(f"#{data['queue_position']} in the queue")
    if not args.json:  # the per-item lines read every result file: only for people
        try:
            items = store.items(job.id)
        except OcrJobsError as e:
            items = []
            lines.append(f"items unreadable: {e}")
        truncated: dict[str, int] = {}
        for item in items:
            count_truncated(truncated, item)
            if item["status"] in ("failed", "timed_out"):
                lines.append(
                    f"  #{item['index']} {safe(item['source'])} p{item.get('page') or '-'}: {item['status']}: "
                    f"{safe((item.get('error') or {}).get('message'))}"
                )
        if warning := truncation_warning(truncated):  # done, but their text is incomplete
            lines.insert(1, f"warning: {warning}")
    _print(args, data, "\n".join(lines))
    return 0


def cmd_priority(store: Store, args: argparse.Namespace) -> int:
    job = store.get(args.job_id)
    if job.status.is_terminal:
        raise OcrJobsError(f"job {args.job_id} is {job.status.value}: it waits in no queue, no request made")
    store.request(args.job_id, "priority", priority=args.priority)
    _print(
        args,
        {"id": args.job_id, "requested": "priority", "priority": args.priority},
        f"priority {args.priority} requested for {args.job_id} (now {job.priority}); a runner applies it shortly",
    )
    return 0


def cmd_request(store: Store, args: argparse.Namespace) -> int:
    extra = {"accept_engine_change": True} if getattr(args, "accept_engine_change", False) else {}
    if args.command in _NOTHING_TO_DO:  # not delete: a damaged job (no status to read) may still be deleted
        status = store.get(args.job_id).status
        if status in _NOTHING_TO_DO[args.command]:
            raise OcrJobsError(f"job {args.job_id} is {status.value}: nothing to {args.command}, no request made")
    store.request(args.job_id, args.command, **extra)
    _print(
        args,
        {"id": args.job_id, "requested": args.command},
        f"{args.command} requested for {args.job_id}; a runner applies it at the next item boundary",
    )
    return 0


def cmd_export(store: Store, args: argparse.Namespace) -> int:
    import tempfile

    from jobs.exports.export import write

    fmt = _export_format(args.format, args.output)
    if args.split and args.output == "-":
        raise OcrJobsError("--split writes a folder of files: give -o a folder name, not -")
    if args.output == "-":  # stdout gets the export's bytes and nothing else
        with tempfile.TemporaryDirectory(prefix="ocrjobs-export-") as tmp:
            summary = write(store, args.job_id, fmt, Path(tmp) / f"export.{fmt}")
            data = summary.path.read_bytes()
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        summary = write(store, args.job_id, fmt, Path(args.output), split=args.split)
        _print(args, {"id": args.job_id, **summary.to_dict()}, f"wrote {summary.path}")
    if summary.note():
        print(f"note: {summary.note()}", file=sys.stderr)
    if summary.warning():
        print(f"warning: {summary.warning()}", file=sys.stderr)
    return 0


def _export_format(given: str | None, output: str) -> str:
    """--format if given, else the output's extension; json when neither says (stdout, no or unknown extension)."""
    ext = Path(output).suffix.lower().lstrip(".") if output != "-" else ""
    named = {"xml": "alto"}.get(ext, ext)  # ALTO files end in .xml
    implied = named if named in EXPORT_FORMATS else None
    if given and implied and given != implied:
        raise OcrJobsError(f"--format {given} disagrees with the output's extension .{ext}; make them match")
    return given or implied or "json"


def cmd_inspect(store: Store, args: argparse.Namespace) -> int:
    from jobs.intake.excel import describe, inspect

    data = inspect(Path(args.file), header_row=args.header_row, preview=args.rows)
    _print(args, data, describe(data))
    return 0


def cmd_health(store: Store, args: argparse.Namespace) -> int:
    from jobs.ops.health import EXIT_CODES, check

    report = check(store)
    text = report["status"] + "".join(f"\n- {r}" for r in report["reasons"])
    _print(args, report, text)
    return EXIT_CODES[report["status"]]


def cmd_init_folder(store: Store, args: argparse.Namespace) -> int:
    from jobs.store import shared_folder as sf

    done = sf.init_folder(
        store.root,
        sf.resolve_group(args.group),
        sf.resolve_user(args.owner) if args.owner else None,
        sf.resolve_group(args.service_group) if args.service_group else None,
    )
    _print(args, {"done": done, "problems": sf.folder_problems(store.root)}, "\n".join(done))
    return 0


def cmd_diagnose(store: Store, args: argparse.Namespace) -> int:
    from jobs.ops.diagnose import diagnose

    d = diagnose(store, args.job_id)
    lines = [f"{d.job_id} ({d.status}): {d.summary}"]
    lines += [f"  {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in d.evidence.items()]
    lines += [f"- {tip}" for tip in d.suggestions]
    _print(args, d.to_dict(), "\n".join(lines))
    return 0


def cmd_search(store: Store, args: argparse.Namespace) -> int:
    from jobs.store.search import search

    found = search(store, args.query, args.job, args.limit)
    for note in found.notes:
        print(f"note: {safe(note)}", file=sys.stderr)
    bold = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    on, off = ("\x1b[1m", "\x1b[0m") if bold else ("**", "**")
    lines = []

    def piece(text: str) -> str:  # a snippet's line breaks read as " / " on one output line
        return safe(text.replace("\r\n", "\n").replace("\n", " / "))

    for h in found.hits:
        snip, at = "", 0
        for start, end in h.highlights:  # each piece made safe apart, so a marker can never be forged
            snip += piece(h.snippet[at:start]) + on + piece(h.snippet[start:end]) + off
            at = end
        snip += piece(h.snippet[at:])
        name = f" ({safe(h.job_name)})" if h.job_name else ""
        page = f" p{h.page}" if h.page is not None else ""
        lines.append(f"{h.job_id}{name} #{h.item} {safe(h.source)}{page}: {snip}")
    text = "\n".join(lines) if lines else f"no item matches {safe(args.query)!r}"
    _print(args, found.to_dict(), text)
    return 0


def cmd_reindex(store: Store, args: argparse.Namespace) -> int:
    from jobs.store.search import reindex

    done = reindex(store)
    for note in done["notes"]:
        print(f"note: {safe(note)}", file=sys.stderr)
    _print(args, done, f"search index rebuilt: {done['items']} items of {done['jobs']} jobs in {done['path']}")
    return 0


COMMANDS = {
    "submit": cmd_submit,
    "list": cmd_list,
    "show": cmd_show,
    "cancel": cmd_request,
    "pause": cmd_request,
    "resume": cmd_request,
    "retry": cmd_request,
    "delete": cmd_request,
    "priority": cmd_priority,
    "export": cmd_export,
    "inspect": cmd_inspect,
    "health": cmd_health,
    "diagnose": cmd_diagnose,
    "init-folder": cmd_init_folder,
    "search": cmd_search,
    "reindex": cmd_reindex,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        store = Store(args.state)
        rc = COMMANDS[args.command](store, args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return rc
    except BrokenPipeError:  # `list --json | head`: the reader left; end quietly (Python docs' SIGPIPE recipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except JobDamaged as e:
        print(f"error: {safe(e)}", file=sys.stderr)
        return 1
    except JobNotFound as e:  # say where it looked: a wrong --state or $OCRJOBS_STATE is the usual cause
        print(f"error: {safe(e)}; job folder: {safe(config.state_dir(args.state))}", file=sys.stderr)
        return 1
    except OcrJobsError as e:
        print(f"error: {safe(e)}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
