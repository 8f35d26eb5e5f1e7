"""Code a client could plant for the runner to run, and engines that keep a worker from starting.

Everything is written at test time; each planted module leaves a marker file if it is ever imported,
which is how a test proves that it never ran.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from jobs.engines.base import Engine, Recognition

#: What a planted engine module does when imported: leave a mark, then offer an engine.
_PLANTED = """
import os
import pathlib
pathlib.Path({marker!r}).write_text(f"imported by pid {{os.getpid()}}")
from tests.engines import SizeEngine as {cls}
"""


def plant_engine(folder: Path, module: str, marker: Path, cls: str = "Engine") -> Path:
    """``folder/module.py``: an engine class ``cls`` that writes ``marker`` as soon as it is imported."""
    path = folder / f"{module}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_PLANTED.format(marker=str(marker), cls=cls))
    return path


def entry_point_site(site: Path, name: str, module: str, cls: str = "TinyEngine") -> Path:
    """A folder to put on PYTHONPATH holding an installed distribution whose entry point ``name`` in the
    ``ocrjobs.engines`` group is ``module:cls`` (an engine answering ``tiny:<width>x<height>``)."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(
        "from tests.engines import SizeEngine\n\n\n"
        f"class {cls}(SizeEngine):\n"
        "    def recognize(self, images):\n"
        '        return [{"text": f"tiny:{im.width}x{im.height}"} for im in images]\n'
    )
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[ocrjobs.engines]\n{name} = {module}:{cls}\n")
    return site


def dying_worker_site(site: Path, log: Path, code: int = 1) -> Path:
    """A folder to put on PYTHONPATH whose ``sitecustomize`` makes every worker process (a multiprocessing
    child) exit with ``code`` at once, after appending a line to ``log``: a worker that cannot start."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if '--multiprocessing-fork' in sys.argv:\n"
        f"    with open({str(log)!r}, 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        f"    os._exit({code})\n"
    )
    return site


class ExitOnLoadEngine(Engine):
    """Kills its own process while loading (a native library that aborts), after noting each try in
    ``options["log"]``: every worker that loads it dies before it could take an item."""

    def load(self, device: str = "auto") -> None:
        with open(self.options["log"], "a") as f:
            f.write(f"{os.getpid()}\n")
        os._exit(3)

    def recognize(self, images: list[Image.Image]) -> list[Recognition]:
        raise AssertionError("never loaded")
