"""Write the hostile corpus to a folder, to look at or to try by hand: ``python -m tests.hostile DIR``.

The tests build the same files in their own temporary folders; this script is the one place that lays
them all out together. ``DIR/uploads/`` holds files to submit or upload, ``DIR/state/`` a job folder
with hostile files planted beside a real job (point ``--state`` at it: nothing may hang or crash), and
``DIR/dashboard-payloads.txt`` the strings that must show as text on every page. FIFOs and symlinks are
made as such, so copy the folder with ``cp -a``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from tests.hostile import inputs, store_files
from tests.hostile.dashboard import MARKDOWN_ATTACKS, PAYLOAD
from tests.hostile.engine_code import plant_engine


def write_uploads(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = [
        inputs.shared_strings_bomb(out / "shared-strings-1gib.xlsx", 1 << 30),
        inputs.billion_laughs(out / "billion-laughs.xlsx"),
        inputs.long_cell_rows(out / "long-cells.xlsx", 32_000, 1000),
        inputs.big_other_sheet(out / "big-other-sheet.xlsx", 300_000),
        inputs.zip_with_fake_image(out / "fake-png.zip", "scan.png", 1 << 30),
        inputs.images_zip(out / "many-folders.zip", {"a.png": inputs.png_bytes()}, dirs=20_000),
        inputs.multipage_tiff(out / "pages-1000.tif", 1000),
        inputs.huge_png(out / "huge-119mp.png", (10_900, 10_900)),
    ]
    name = out / "name with \x1b[31mescape\x1b[0m and\nnewline.png"
    name.write_bytes(inputs.png_bytes())
    made.append(name)
    inputs.symlink_diamond(out / "diamond", 20)
    return made


def write_state(root: Path, sample: Path) -> Path:
    """A job folder with one real queued job and every store-file attack planted around it."""
    store = Store(root)
    job_id = submit(store, [sample], JobSpec(engine="rapid"))
    victim = submit(store, [sample], JobSpec(engine="rapid"))
    for n, name in enumerate(store_files.JOB_FILES):
        attack = store_files.ATTACKS[n % len(store_files.ATTACKS)]
        store_files.damage_job_file(store.job_dir(victim), name, attack)
    store_files.lock_replaced(store.job_dir(submit(store, [sample], JobSpec(engine="rapid"))), "fifo")
    store_files.heartbeat_yesterday(root)
    store_files.append_journal_attack(root, job_id)
    store_files.runner_files(root)
    store_files.request_files(root, job_id)
    plant_engine(root / "requests", "evil", root / "EVIL-RAN")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.hostile", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="an empty or new folder")
    args = p.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        p.error(f"{args.out} is not empty")
    uploads = write_uploads(args.out / "uploads")
    sample = args.out / "sample.png"
    sample.write_bytes(inputs.png_bytes())
    write_state(args.out / "state", sample)
    (args.out / "dashboard-payloads.txt").write_text("\n".join([PAYLOAD, *map(str, MARKDOWN_ATTACKS)]) + "\n")
    print(f"{len(uploads)} uploads, a hostile job folder and the dashboard payloads in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
