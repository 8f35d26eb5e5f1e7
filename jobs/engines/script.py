"""Which script a line is in, and how to join two engines' readings of one line.

RapidOCR's recogniser is the stronger reader of Chinese but drops the spaces between Latin
words; Tesseract keeps them. The auto engine takes Chinese characters from the first and Latin
text and its spaces from the second, aligning the two readings character by character.
"""

from __future__ import annotations

import re

# CJK ideographs and radicals, CJK symbols and punctuation, kana, Hangul, full-width forms.
_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
CJK = re.compile(f"[{_CJK}]")
_SPACE_IN_CJK = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")


def has_cjk(text: str) -> bool:
    return CJK.search(text) is not None


def has_latin(text: str) -> bool:
    return re.search(r"[A-Za-z\u00c0-\u024f]", text) is not None


def tidy_cjk(text: str) -> str:
    """Remove the spaces Tesseract puts between CJK characters (Chinese is written without them)."""
    return _SPACE_IN_CJK.sub("", text)


def merge_line(rapid: str, tess: str) -> str:
    """One line read twice: CJK characters from ``rapid``, everything else and all spaces from ``tess``.

    The two readings are aligned without spaces (RapidOCR may have none); where they disagree,
    a stretch holding CJK on RapidOCR's side is taken from it, any other stretch from Tesseract.
    """
    from rapidfuzz.distance import Levenshtein

    r0 = rapid.replace(" ", "")
    t0, spaces = [], set()
    for ch in " ".join(tess.split()):
        if ch == " ":
            spaces.add(len(t0))
        else:
            t0.append(ch)
    out: list[str] = []
    for op in Levenshtein.opcodes(r0, "".join(t0)):
        mine = r0[op.src_start : op.src_end]
        if op.tag != "equal" and has_cjk(mine):
            out.append((" " if op.dest_start in spaces else "") + mine)
            continue
        for k in range(op.dest_start, op.dest_end):
            out.append((" " if k in spaces else "") + t0[k])
    return tidy_cjk("".join(out)).strip()
