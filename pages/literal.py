"""Untrusted values (from job files, heartbeats, uploads, the URL) as literal text in Streamlit markdown.

st.markdown, st.error/warning/info/success, st.caption, st.subheader, st.toast and widget labels all
render markdown: an error message holding ``![x](http://evil.example/b.png)`` would fetch an image
beacon, ``[Session expired: log in again](http://evil.example)`` would be a phishing link. Streamlit
offers no escape function, so this is it; dataframe cells, st.text, st.code and selectbox options are
plain text already and need none of it.

A mark is backslash-escaped (CommonMark makes any escaped ASCII punctuation literal) only where it
could start markup, so an everyday message or path (``/tmp/a_b-c.png``, ``started: x -> y``) reads
the same in the page source as on screen. Streamlit's typography (`` -> `` between spaces shows as an
arrow, `` -- `` as a dash) is left alone: it changes no meaning and links nothing.
"""

from __future__ import annotations

import re
from typing import Any

#: Bare URLs and e-mail addresses (GFM), :emoji: shortcodes and :material/icons: are found in the
#: text after parsing, escapes or not: a word joiner (U+2060, invisible) inside ``http:`` and ``www.``,
#: before ``@`` and after a ``:`` that touches a word stops them, and only there.
_AUTOLINK = re.compile(
    r"(?i)(?<=https)(?=:)|(?<=http)(?=:)|(?<=mailto)(?=:)|(?<=xmpp)(?=:)|(?<=www)(?=\.)|(?=@)|(?<=:)(?=\S)"
)
#: Anywhere: backslash, code, emphasis (*), links and images ([ ]), HTML and autolinks (<), entities
#: (&), LaTeX ($), tables (|), strikethrough (~); ``_`` unless inside a word (CommonMark never
#: emphasises intraword ``_``); ``:`` before a non-space (Streamlit's :red[...], :material/icon:,
#: :emoji: directives).
_INLINE = re.compile(r"[\\`*\[\]<&$|~]|(?<![^\W_])_|_(?![^\W_])|:(?=\S)")
#: At a line's start: headings (#), quotes (>), lists (- + 1. 1)), setext underlines (= -).
_LINE_START = re.compile(r"^([ \t]*)([#>+=-]|\d+[.)])", re.MULTILINE)
#: Control and bidi-override characters are dropped; a tab is a space.
_CONTROLS = str.maketrans(
    {chr(n): None for n in (*range(9), *range(11, 32), 127, *range(0x80, 0xA0), *range(0x202A, 0x202F))}
    | {chr(n): None for n in range(0x2066, 0x206A)}
    | {"\t": " "}
)


def md_text(value: Any, limit: int = 2000) -> str:
    """``value`` as literal text for any Streamlit call that renders markdown, cut at ``limit`` chars."""
    s = str(value).replace("\r\n", "\n").replace("\r", "\n")
    if len(s) > limit:
        s = s[:limit] + "…"
    s = _AUTOLINK.sub("\u2060", s.translate(_CONTROLS))
    s = _INLINE.sub(lambda m: "\\" + m.group(), s)
    s = _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], s)
    return s.replace("\n", "  \n")  # a newline stays a (hard) line break
