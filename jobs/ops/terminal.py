"""Text from users (file names, sheet names, cells, OCR errors) made safe to print or to use as
one line of a text export: control characters are shown escaped, the way Python's repr does.

A file named ``"\\x1b]0;pwned\\x07.png"`` would otherwise retitle the terminal or rewrite what
``show`` printed, and a newline in a name would forge a line of its own (a section header in
the txt export). Bidi overrides are escaped too: they make a name read differently than it is.
"""

from __future__ import annotations

import re

# C0 controls (newline and tab too: each value is one line), DEL, C1 controls, bidi controls.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object) -> str:
    """``value`` as one printable line: control and bidi characters escaped, the rest unchanged."""
    return _UNSAFE.sub(_escape, str(value))
