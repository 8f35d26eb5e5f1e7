"""Submitting a job: copy the inputs into a new job folder built under a temporary name,
then rename it into place, so a job is either wholly there or not there at all."""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from jobs import config
from jobs.engines.allow import check_at_submit
from jobs.engines.registry import validate_options
from jobs.errors import EngineError, InputError, SubmitError
from jobs.intake import excel
from jobs.intake.column_match import check_column
from jobs.intake.excel import EXCEL_ERRORS, cell_text
from jobs.intake.folder import natural_key
from jobs.intake.folder import scan as folder_scan
from jobs.intake.inputs import Item, copy_input, expand, release_zip_budget
from jobs.intake.sources import Resolver, copy_or_explain
from jobs.store import perms, queue_journal
from jobs.store.atomic import TMP_PREFIX, fsync_dir, is_disk_full, remove_tree
from jobs.store.job import new_job_id
from jobs.store.store import Store


@dataclass
class JobSpec:
    """What a job asks for. Stored in job.json; never changed after submit."""

    engine: str = config.DEFAULT_ENGINE
    engine_options: dict[str, Any] = field(default_factory=dict)
    item_timeout: float = config.DEFAULT_ITEM_TIMEOUT_S
    retries: int = config.DEFAULT_RETRIES
    max_attempts: int = config.DEFAULT_MAX_ATTEMPTS
    dpi: int = config.DEFAULT_DPI
    #: PDF pages: "auto" reads a page's own text layer when it covers the page, else OCRs it;
    #: "ocr" always OCRs; "text" never does (jobs/intake/textlayer.py). Absent in old jobs: "auto".
    pdf_text: str = "auto"
    #: A name to find the job by, and who submitted it (filled with the OS user when left empty).
    name: str = ""
    submitted_by: str = ""
    #: At most this many of a runner's workers on this job at once (None: its fair share, up to all).
    max_workers: int | None = None

    def validate(self) -> None:
        try:  # the runner checks again at claim: a job.json written by hand gets no further
            check_at_submit(self.engine)
        except EngineError as e:
            raise SubmitError(str(e)) from None
        if not 0 < self.item_timeout <= 24 * 3600:
            raise SubmitError(f"item timeout must be between 0 and 86400 s, got {self.item_timeout}")
        if not 36 <= self.dpi <= 1200:
            raise SubmitError(f"dpi must be between 36 and 1200, got {self.dpi}")
        if self.pdf_text not in ("auto", "ocr", "text"):
            raise SubmitError(
                f"pdf text must be auto (the text layer where it covers the page, else OCR), ocr or text, "
                f"got {self.pdf_text!r}"
            )
        for label, value, most in (("job name", self.name, 120), ("submitter name", self.submitted_by, 64)):
            if len(value) > most or any(unicodedata.category(c)[0] == "C" for c in value):
                raise SubmitError(f"{label} must be at most {most} printable characters, got {value[:40]!r}")
        if not 0 <= self.retries <= 20:
            raise SubmitError(f"retries must be between 0 and 20, got {self.retries}")
        if not 1 <= self.max_attempts <= 100:
            raise SubmitError(f"max attempts must be between 1 and 100, got {self.max_attempts}")
        if self.max_workers is not None and not 1 <= self.max_workers <= 1000:
            raise SubmitError(f"max workers must be between 1 and 1000, got {self.max_workers}")
        try:  # the engine's own check (the transformers engine: can its model be found?)
            validate_options(self.engine, self.engine_options)
        except EngineError as e:
            raise SubmitError(str(e)) from None


def submit(
    store: Store, files: Sequence[str | os.PathLike[str]], spec: JobSpec | None = None, priority: int = 0
) -> str:
    """Create a queued job from ``files``; returns its id. Raises SubmitError before writing anything durable."""
    paths = [Path(f) for f in files]
    if not paths:
        raise SubmitError("nothing to submit: give at least one file")
    for p in paths:
        if not p.is_file():
            raise SubmitError(f"cannot read {p}: no such file" if not p.exists() else f"{p} is not a file")

    def build(tmp: Path) -> list[Item]:
        items: list[Item] = []
        for n, p in enumerate(paths):
            dest = tmp / "inputs" / f"{n:03d}-{_safe_name(p.name)}"
            copy_input(p, dest)
            items.extend(expand(tmp, dest, p.name))
        return items

    return _create(store, spec, priority, build, [p.name for p in paths], {})


def submit_any(
    store: Store,
    files: Sequence[str | os.PathLike[str]],
    *,
    folder: str | os.PathLike[str] | None = None,
    sheet: str | None = None,
    column: str | None = None,
    header_row: int = 1,
    images: str | os.PathLike[str] | None = None,
    spec: JobSpec | None = None,
    priority: int = 0,
) -> str:
    """Files, a folder, or one workbook/CSV: what the CLI and the dashboard submit."""
    paths = [Path(f) for f in files]
    if folder is not None:
        if paths:
            raise SubmitError("give files or --folder, not both")
        return submit_folder(store, folder, spec, priority)
    tables = [p for p in paths if excel.is_table(p)]
    if tables or sheet or column or images:
        if len(paths) != 1 or not tables:
            raise SubmitError(
                "submit one workbook (.xlsx, .xlsm) or CSV on its own, with --sheet and --column; "
                "the files its column names go in the --images ZIP"
            )
        return submit_table(
            store,
            paths[0],
            sheet=sheet,
            column=column,
            header_row=header_row,
            images=images,
            spec=spec,
            priority=priority,
        )
    if not paths:
        raise SubmitError("nothing to submit: give at least one file, or --folder PATH")
    return submit(store, paths, spec, priority)


def submit_table(
    store: Store,
    workbook: str | os.PathLike[str],
    *,
    sheet: str | None = None,
    column: str | None = None,
    header_row: int = 1,
    images: str | os.PathLike[str] | None = None,
    spec: JobSpec | None = None,
    priority: int = 0,
) -> str:
    """A job with one item per non-empty row of a workbook's (or CSV's) column, each tied to its row.

    The sheet, column and rows are validated before anything is written; a row whose file cannot
    be used becomes that item's error. The workbook is copied into the job for the export."""
    book = Path(workbook)
    zip_path = Path(images) if images is not None else None
    if zip_path is not None and not zip_path.is_file():
        raise SubmitError(f"cannot read the images ZIP {zip_path}: no such file")
    if zip_path is not None and zip_path.suffix.lower() != ".zip":
        raise SubmitError(f"--images must be a .zip of the files the column names, got {zip_path.name}")
    (spec or JobSpec()).validate()
    selection = excel.select(book, sheet, column, header_row)
    refs = [cell_text(r.value) for r in selection.rows if r.value is not None and not r.images]
    if zip_path is None and refs and not any(r.images for r in selection.rows) and all(_relative(r) for r in refs):
        raise SubmitError(
            f"column {selection.letter} holds relative paths (like {refs[0]!r}) but no images ZIP was given; "
            "add --images files.zip (paths inside it), or use absolute paths under OCRJOBS_ALLOWED_ROOTS"
        )
    resolver = Resolver(zip_path)
    try:
        check_column(selection, resolver)  # a column that names no file is refused now, not row by row
    except SubmitError:
        resolver.close()
        raise
    table: dict[str, Any] = {**selection.spec(), "file": book.name}

    def build(tmp: Path) -> list[Item]:
        dest = tmp / "inputs" / f"000-{_safe_name(book.name)}"
        copy_input(book, dest)
        table["workbook"] = dest.relative_to(tmp).as_posix()
        resolver.job_dir = tmp
        return _table_items(tmp, selection, resolver)

    try:
        names = [book.name] + ([zip_path.name] if zip_path else [])
        return _create(store, spec, priority, build, names, {"table": table})
    finally:
        resolver.close()


def submit_folder(store: Store, folder: str | os.PathLike[str], spec: JobSpec | None = None, priority: int = 0) -> str:
    """A job with every image and PDF below ``folder`` (under an allowed root), in natural order."""
    (spec or JobSpec()).validate()
    found = folder_scan(folder)
    entries: list[tuple[str, Path | None, str | None]] = [(rel, path, None) for rel, path in found.files]
    entries += [(rel, None, why) for rel, why in found.refused]
    entries.sort(key=lambda e: natural_key(e[0]))

    def build(tmp: Path) -> list[Item]:
        items: list[Item] = []
        for n, (rel, path, why) in enumerate(entries):
            if path is None:
                items.append({"source": rel, "path": "", "page": None, "kind": "image", "error": why})
                continue
            dest = tmp / "inputs" / "folder" / f"{n:06d}{path.suffix.lower()}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                copy_or_explain(path, dest)
            except InputError as e:
                items.append({"source": rel, "path": "", "page": None, "kind": "image", "error": str(e)})
                continue
            items.extend(expand(tmp, dest, rel))
        return items

    info = {"folder": str(Path(folder).absolute()), "skipped": found.skipped}
    return _create(store, spec, priority, build, [Path(folder).name or str(folder)], info)


def _create(
    store: Store,
    spec: JobSpec | None,
    priority: int,
    build: Callable[[Path], list[Item]],
    inputs: list[str],
    extra_spec: dict[str, Any],
) -> str:
    """Build the job under a temporary name, then rename it into place: a job is whole or absent."""
    spec = spec or JobSpec()
    spec.validate()
    if not spec.submitted_by.strip():
        who = perms.current_owner()
        spec = replace(spec, submitted_by=who["user"] or f"uid {who['uid']}")
    job_id = new_job_id()
    created_at = time.time()
    tmp = store.jobs_dir / f"{TMP_PREFIX}{job_id}"
    try:
        os.mkdir(tmp, 0o700)  # nobody else can open a scan while it is copied; sealed below
        items = build(tmp)
        for i, item in enumerate(items):
            item["index"] = i
        _write_synced(tmp / "manifest.json", items)
        _write_synced(
            tmp / "job.json",
            {
                "id": job_id,
                "created_at": created_at,
                "priority": int(priority),
                "spec": {**asdict(spec), **extra_spec},
                "total": len(items),
                "inputs": inputs,
                "owner": perms.current_owner(),  # for people: the folder's owner is the one checked
            },
        )
        # Made here, not at the first claim: creating files is what a claim would wait on most.
        (tmp / "job.lock").touch()
        line = {"at": created_at, "event": "submitted", "items": len(items), "priority": int(priority)}
        (tmp / "events.jsonl").write_text(json.dumps(line, sort_keys=True) + "\n")
        perms.seal_job_folder(tmp, perms.is_shared(store.jobs_dir))
        for d in (tmp / "inputs", tmp):
            fsync_dir(d)
        os.rename(tmp, store.jobs_dir / job_id)
        fsync_dir(store.jobs_dir)
    except OSError as e:
        remove_tree(tmp)
        if is_disk_full(e):
            raise SubmitError(
                f"disk full while copying inputs into {store.root}; free space and submit again"
            ) from None
        raise SubmitError(f"could not store the job in {store.root}: {e}") from None
    except BaseException:
        remove_tree(tmp)
        raise
    finally:
        release_zip_budget(tmp)
    # The job is in place: tell the runners (a failure here only delays it to their next rescan).
    queue_journal.append_quietly(store.root, job_id, "queued", int(priority), created_at)
    return job_id


def _write_synced(path: Path, obj: Any) -> None:
    """A file inside the job folder still being built: nobody reads it before the folder's rename,
    so no temp name and no folder fsync of its own (the folder is fsync'd once, before the rename)."""
    with open(path, "xb") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode())
        f.flush()
        os.fsync(f.fileno())


def _table_items(tmp: Path, selection: excel.Selection, resolver: Resolver) -> list[Item]:
    """Items for each selected row, in row order: its pictures, else the file its cell names."""
    items: list[Item] = []
    where = f"{selection.sheet}!{selection.letter}"
    for row in selection.rows:
        cell = f"{where}{row.row}"
        made: list[Item] = []
        for k, im in enumerate(row.images):
            dest = tmp / "inputs" / "embedded" / f"{row.row:07d}-{k}{im.ext}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(im.data)
            made.extend(expand(tmp, dest, f"{cell} picture {k + 1}" if len(row.images) > 1 else f"{cell} picture"))
        if not row.images:
            text = cell_text(row.value) if row.value is not None else ""
            try:
                if len(text) > excel.MAX_REF_CHARS:  # not copied into the manifest: 100,000 rows of it are GBs
                    text = text[:80] + "…"
                    raise InputError(f"cell {cell} holds more than {excel.MAX_REF_CHARS:,} characters: not a file name")
                if row.formula:
                    raise InputError(
                        f"formula {row.formula} in {cell} has no computed value (the file was saved by a "
                        "program that does not calculate); open and save it in Excel, then submit again"
                    )
                if not text:
                    raise InputError(f"cell {cell} is empty")
                if text in EXCEL_ERRORS:
                    raise InputError(f"cell {cell} holds the Excel error {text}, not a file name")
                made = expand(tmp, resolver.resolve(text), text)
            except InputError as e:
                made = [{"source": text or cell, "path": "", "page": None, "kind": "image", "error": str(e)}]
        for item in made:
            item["row"] = row.row
        items.extend(made)
    return items


def _relative(ref: str) -> bool:
    return not ref.startswith(("/", "\\\\")) and not re.match(r"^[A-Za-z]:[\\/]", ref) and "://" not in ref


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "file"
    return cleaned[-120:]
