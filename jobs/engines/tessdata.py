"""Where Tesseract's language data is, and which languages a job's ``lang`` option means.

The tesserocr wheel embeds its own Tesseract whose built-in data path points nowhere, so the
folder is found here: ``$TESSDATA_PREFIX``, else the newest Debian ``/usr/share/tesseract-ocr/*/tessdata``
(the version in that path changes between Debian releases), else the usual other prefixes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jobs.errors import EngineError

#: What ``--lang`` means to Tesseract. Anything else is taken as Tesseract codes (``deu``, ``chi_tra+eng``).
LANGS = {"en": "eng", "zh": "chi_sim", "auto": "chi_sim+eng"}
_OTHER_PREFIXES = ("/usr/share/tessdata", "/usr/local/share/tessdata", "/opt/homebrew/share/tessdata")


def tesseract_langs(lang: str | None) -> str:
    """``en``/``zh``/``auto`` (default) or Tesseract codes joined by ``+`` -> Tesseract codes."""
    value = LANGS.get(lang or "auto", lang or "")
    if not re.fullmatch(r"[a-z_]+(\+[a-z_]+)*", value, flags=re.I):
        raise EngineError(f"lang {lang!r}: use en, zh, auto or Tesseract codes such as eng+chi_tra")
    return value


def debian_package(code: str) -> str:
    return "tesseract-ocr-" + code.lower().replace("_", "-")


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def candidates() -> list[Path]:
    found = []
    if env := os.environ.get("TESSDATA_PREFIX"):
        found += [Path(env), Path(env) / "tessdata"]
    found += sorted(Path("/usr/share/tesseract-ocr").glob("*/tessdata"), key=_version, reverse=True)
    found += [Path(p) for p in _OTHER_PREFIXES]
    return found


def find_tessdata() -> Path:
    """The first folder holding any ``*.traineddata``; a clear error naming the package if none."""
    for path in candidates():
        if any(path.glob("*.traineddata")):
            return path
    looked = ", ".join(str(p) for p in candidates())
    raise EngineError(
        f"no Tesseract language data found (looked in {looked}): install Debian's tesseract-ocr "
        "and tesseract-ocr-eng (`make setup` does), or set TESSDATA_PREFIX to a tessdata folder"
    )


def check_langs(langs: str, tessdata: Path) -> None:
    """Every ``+``-joined code must have its traineddata, else say which Debian package adds it."""
    missing = [code for code in langs.split("+") if not (tessdata / f"{code}.traineddata").is_file()]
    if missing:
        pkgs = " ".join(debian_package(code) for code in missing)
        raise EngineError(
            f"Tesseract has no language data for {', '.join(missing)} in {tessdata}: "
            f"install the Debian package {pkgs} (apt-get install {pkgs})"
        )
