"""Engines for tests, loaded by the real runner through their import path (tests.engines:Name).

Images tell the engines what to do: the text is the image size (so each item's result is
checkable), and a coloured top-left pixel marks an image to hang on (red) or crash on (blue).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from PIL import Image

from jobs.engines.base import Engine, Recognition

RED = (255, 0, 0)
BLUE = (0, 0, 255)


class SizeEngine(Engine):
    """Answers "<width>x<height>" after ``delay`` seconds; logs every call to ``log`` if given."""

    name = "size"

    def load(self, device: str = "auto") -> None:
        self.delay = float(self.options.get("delay", 0.0))
        self.log = self.options.get("log")
        self.device = "cpu"

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        out = []
        for im in images:
            self.react(im)
            time.sleep(self.delay)
            text = f"{im.width}x{im.height}"
            if self.log:
                with open(self.log, "a") as f:
                    f.write(f"{os.getpid()} {text}\n")
            out.append(Recognition(text=text, confidence=0.99))
        return out

    def react(self, im: Image.Image) -> None:
        pass


class HangEngine(SizeEngine):
    """Never returns on a red-marked image, and ignores the soft stop (like a wedged model)."""

    def react(self, im: Image.Image) -> None:
        if im.getpixel((0, 0)) == RED:
            while True:
                time.sleep(0.05)


class CrashEngine(SizeEngine):
    """Kills its own process on a blue-marked image (like a segfault in native code)."""

    def react(self, im: Image.Image) -> None:
        if im.getpixel((0, 0)) == BLUE:
            os._exit(3)


class FlakyEngine(SizeEngine):
    """Raises on the first ``fail_times`` calls for each image, then succeeds (a transient error)."""

    def react(self, im: Image.Image) -> None:
        counter = Path(self.options["counter_dir"]) / f"{im.width}x{im.height}"
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n < int(self.options.get("fail_times", 1)):
            raise ConnectionError(f"transient failure {n + 1}")


class DictEngine(SizeEngine):
    """Returns plain dicts instead of Recognition objects (the other allowed result shape)."""

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        return [{"text": f"{im.width}x{im.height}"} for im in images]


class StopEngine(SizeEngine):
    """Honours the runner's soft stop like the real engines do (auto, transformers): waits ``delay``
    seconds in small steps and, once asked to stop, raises the error a real one raises at its timeout.
    With ``signals=1`` a SIGTERM to the worker fails the call, as when a service stop signals the whole
    process group and kills the engine's own subprocess (tesseract) while the worker lives on."""

    def load(self, device: str = "auto") -> None:
        super().load(device)
        self.signalled = False
        if self.options.get("signals"):
            signal.signal(signal.SIGTERM, lambda *_: setattr(self, "signalled", True))

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        out = []
        for im in images:
            end = time.monotonic() + self.delay
            while time.monotonic() < end:
                if self.stop_requested():
                    raise TimeoutError("stopped at the item timeout while re-reading Latin lines")
                if self.signalled:
                    raise RuntimeError("the engine's subprocess was killed by signal 15")
                time.sleep(0.05)
            text = f"{im.width}x{im.height}"
            if self.log:
                with open(self.log, "a") as f:
                    f.write(f"{os.getpid()} {text}\n")
            out.append(Recognition(text=text, confidence=0.99))
        return out


class BrokenLoadEngine(SizeEngine):
    def load(self, device: str = "auto") -> None:
        raise RuntimeError("model weights not found in /models/missing")


GREEN = (0, 255, 0)


class SlowOnceEngine(SizeEngine):
    """Fast (``delay``) on most images, but takes ``slow`` seconds on a green-marked one: a job that
    stalls on one item without reaching its timeout."""

    def react(self, im: Image.Image) -> None:
        if im.getpixel((0, 0)) == GREEN:
            time.sleep(float(self.options.get("slow", 30.0)))


YELLOW = (255, 255, 0)


class BatchEngine(SizeEngine):
    """Takes ``batch`` images per call (default 4). A yellow-marked image gets an Exception in its slot
    (that item alone fails), a blue one kills the process, a red one hangs the whole call."""

    def load(self, device: str = "auto") -> None:
        super().load(device)
        self.max_batch = int(self.options.get("batch", 4))

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        out: list[Any] = []
        for im in images:
            marker = im.getpixel((0, 0))
            if marker == BLUE:
                os._exit(3)
            while marker == RED:
                time.sleep(0.05)
            text = f"{im.width}x{im.height}"
            out.append(MemoryError(f"out of memory on {text}") if marker == YELLOW else Recognition(text, 0.9))
        time.sleep(self.delay)
        return out


class DuckEngine:
    """A plug-in that does not subclass Engine: only ``load(device)`` and ``recognize(images)``, nothing else
    (no ``device``, ``max_batch``, ``set_stop_check`` or ``close``)."""

    def load(self, device):  # type: ignore[no-untyped-def]  # deliberately bare, as a plug-in author writes it
        self.loaded_for = device

    def recognize(self, images):  # type: ignore[no-untyped-def]
        return [{"text": f"duck {im.width}x{im.height}"} for im in images]


class TypeErrorEngine(DuckEngine):
    """Loads, then raises TypeError on every call (a plug-in written against another interface)."""

    def recognize(self, images):  # type: ignore[no-untyped-def]
        raise TypeError("recognize() missing 1 required positional argument: 'lang'")


class WrongCountEngine(SizeEngine):
    """Loads, then answers every call with one result too few."""

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        return [Recognition(text="x") for _ in images[1:]]


class GpuEnvEngine(SizeEngine):
    """Declares it wants a GPU (``uses_gpu``) and answers with the GPU its worker was pinned to and its pid:
    "<CUDA_VISIBLE_DEVICES> <pid>". ``delay`` keeps each worker busy long enough for all to get items."""

    uses_gpu = True

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        time.sleep(self.delay * len(images))
        pinned = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        return [Recognition(text=f"{pinned} {os.getpid()} {os.environ.get('OCRJOBS_THREADS')}") for _ in images]


class TypeErrorOnBlueEngine(SizeEngine):
    """Reads sizes, but raises TypeError on a blue-marked image: an item-specific error, once it has worked."""

    def react(self, im: Image.Image) -> None:
        if im.getpixel((0, 0)) == BLUE:
            raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")


class PrepareEngine(BatchEngine):
    """Has the optional ``prepare(images)``: notes which images it saw and on which thread, and answers
    "prepared on <thread>" for those (else "not prepared"), after ``delay`` per call."""

    def load(self, device: str = "auto") -> None:
        super().load(device)
        self.seen: dict[int, str] = {}

    def prepare(self, images: list[Image.Image]) -> None:
        import threading

        for im in images:
            self.seen[id(im)] = threading.current_thread().name

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        time.sleep(self.delay)
        out = [self.seen.pop(id(im), None) for im in images]
        return [Recognition(text=f"prepared on {t}" if t else "not prepared") for t in out]
