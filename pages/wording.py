"""Messages from the intake code, worded for the Submit page instead of the command line.

The intake raises one message for both: it names the CLI's flags (``--images files.zip``,
``--column``) and the operator's settings (``OCRJOBS_ALLOWED_ROOTS``). On the page those are
boxes and uploads, and a setting is something the person who runs the dashboard changes.
"""

from __future__ import annotations

import re

#: Longest first: a phrase is replaced before the flag inside it.
_PHRASES = [
    ("add --images files.zip (paths inside it)", "upload the files as a ZIP under the workbook (paths inside it)"),
    ("(--images files.zip)", "(the ZIP upload under the workbook)"),
    ("the --images ZIP", "the ZIP under the workbook"),
    ("--images must be a .zip", "the upload under the workbook must be a .zip"),
    ("with --sheet and --column", "and choose its sheet and column"),
    ("choose one with --sheet", "choose one in the Sheet box"),
    ("with --column (header text or letter)", "in the column box"),
    ("with --column", "in the column box"),
    ("under OCRJOBS_ALLOWED_ROOTS", "under a folder this dashboard's operator allowed"),
    ("(an admin sets OCRJOBS_ALLOWED_ROOTS)", "(this dashboard's operator sets them)"),
]
_FLAG = re.compile(r"`?--([a-z][a-z-]*)`?")
_SETTING_NOTE = re.compile(r" ?\(OCRJOBS_[A-Z_]+\)")
_SETTING = re.compile(r"\bOCRJOBS_[A-Z_]+\b")


def for_page(message: object) -> str:
    """``message`` with the CLI's flags and setting names turned into the page's words."""
    text = str(message)
    for cli, page in _PHRASES:
        text = text.replace(cli, page)
    text = _SETTING_NOTE.sub(" (a setting of this dashboard's operator)", text)
    text = _SETTING.sub("the operator's settings", text)
    return _FLAG.sub(lambda m: f"the {m[1].replace('-', ' ')} setting", text)
