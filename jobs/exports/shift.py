"""Inserting columns into a worksheet the way Excel does: what refers to a column moves with it.

openpyxl's ``insert_cols`` moves cells only; everything that *refers* to a column stays put.
So after inserting, this module moves what Excel itself would move: formulas (in every sheet)
and defined names that point at the shifted columns, merged cells, column widths, conditional
formats, data validations, the auto-filter, tables, print areas, frozen panes, hyperlinks and
pictures. Everything else in the workbook is left untouched. Charts' own data references are
not rewritten (openpyxl keeps charts only partially anyway).
"""

from __future__ import annotations

import re
from copy import copy
from typing import Any

from openpyxl.formula.tokenizer import Token, Tokenizer
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.cell_range import CellRange, MultiCellRange
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.worksheet.table import TableColumn
from openpyxl.worksheet.worksheet import Worksheet

_CELL = re.compile(r"^(\$?)([A-Za-z]{1,3})(\$?)(\d+)$")
_COL = re.compile(r"^(\$?)([A-Za-z]{1,3})$")
_ROW = re.compile(r"^\$?\d+$")
_MAX_COL = 16_384  # XFD: anything beyond is a name, not a column


class Shift:
    """Inserting ``n`` columns before column ``at`` of sheet ``title``."""

    def __init__(self, title: str, at: int, n: int) -> None:
        self.title, self.at, self.n = title, at, n

    def col(self, c: int) -> int:
        return c + self.n if c >= self.at else c

    def formula(self, text: str, home: bool) -> str:
        """``text`` (with or without a leading '=') with its references to the shifted columns moved.
        ``home``: the formula lives on the shifted sheet, so unqualified references point there."""
        if not isinstance(text, str) or not text:
            return text
        bare = not text.startswith("=")
        try:
            tok = Tokenizer("=" + text if bare else text)
        except Exception:  # noqa: BLE001 - a formula openpyxl cannot parse is kept as it was
            return text
        changed = False
        for t in tok.items:
            if t.type == Token.OPERAND and t.subtype == Token.RANGE:
                new = self._ref(t.value, home)
                changed |= new != t.value
                t.value = new
        if not changed:
            return text
        out = tok.render()
        return out[1:] if bare else out

    def _ref(self, ref: str, home: bool) -> str:
        sheet, bang, area = ref.rpartition("!")
        if bang:
            name = sheet[1:-1].replace("''", "'") if sheet.startswith("'") and sheet.endswith("'") else sheet
            if name.startswith("[") or name != self.title:  # another sheet, another workbook, or 3-D
                return ref
        elif not home:
            return ref
        parts = area.split(":")
        if len(parts) == 1 and not _CELL.match(area):
            return ref  # a name, a structured reference, #REF!
        moved = []
        for part in parts:
            m = _CELL.match(part)
            if m and column_index_from_string(m[2].upper()) <= _MAX_COL:
                c = self.col(column_index_from_string(m[2].upper()))
                moved.append(f"{m[1]}{get_column_letter(c)}{m[3]}{m[4]}")
                continue
            m = _COL.match(part) if len(parts) == 2 else None
            if m and column_index_from_string(m[2].upper()) <= _MAX_COL:
                moved.append(f"{m[1]}{get_column_letter(self.col(column_index_from_string(m[2].upper())))}")
                continue
            if len(parts) == 2 and _ROW.match(part):
                moved.append(part)
                continue
            return ref
        return f"{sheet}{bang}{':'.join(moved)}"

    def cells(self, r: CellRange) -> None:
        """Shift a range in place; one that straddles the insertion grows, as in Excel."""
        if r.max_col >= self.at:
            r.max_col += self.n
        if r.min_col >= self.at:
            r.min_col += self.n

    def multi(self, ranges: MultiCellRange | str) -> MultiCellRange:
        out = MultiCellRange(str(ranges))
        for r in out.ranges:
            self.cells(r)
        return out

    def range_text(self, text: str) -> str:
        r = CellRange(text)
        self.cells(r)
        return r.coord


def insert_columns(wb: Workbook, ws: Worksheet, at: int, names: list[str]) -> None:
    """Insert empty columns before column ``at`` of ``ws``, one per name, and move what refers to
    the columns after them. ``names`` head the new columns where they land inside a table."""
    n = len(names)
    s = Shift(ws.title, at, n)
    ws.insert_cols(at, n)
    for sheet in wb.worksheets:
        home = sheet is ws
        for cell in sheet._cells.values():
            value = cell._value
            if cell.data_type == "f" and isinstance(value, str):
                cell._value = s.formula(value, home)
            elif isinstance(value, ArrayFormula):
                value.text = s.formula(value.text, home)
                if home and value.ref:
                    value.ref = s.range_text(value.ref)
            if home and getattr(cell, "hyperlink", None) is not None:
                cell.hyperlink.ref = cell.coordinate
        for dn in list(getattr(sheet, "defined_names", {}).values()):
            dn.attr_text = s.formula(dn.attr_text, False)
    for dn in wb.defined_names.values():
        dn.attr_text = s.formula(dn.attr_text, False)
    for r in ws.merged_cells.ranges:
        s.cells(r)
    _move_widths(ws, s)
    _move_rules(ws, s)
    if ws.auto_filter.ref:
        ws.auto_filter.ref = s.range_text(ws.auto_filter.ref)
    for table in ws.tables.values():
        _move_table(ws, table, s, names)
    for r in ws._print_area.ranges if ws._print_area else ():
        s.cells(r)
    if ws.freeze_panes:  # columns left of the pane stay frozen; it grows only if they get new ones
        pane = CellRange(ws.freeze_panes)
        if pane.min_col > at:
            pane.shift(col_shift=n)
            ws.freeze_panes = pane.coord
    for obj in [*ws._images, *ws._charts]:
        for corner in (getattr(obj.anchor, "_from", None), getattr(obj.anchor, "to", None)):
            if corner is not None and corner.col + 1 >= at:
                corner.col += n


def _move_widths(ws: Worksheet, s: Shift) -> None:
    """Column widths follow their columns; a span across the insertion is split around it."""
    old = list(ws.column_dimensions.values())
    ws.column_dimensions.clear()
    for dim in old:
        lo, hi = dim.min or column_index_from_string(dim.index), dim.max or column_index_from_string(dim.index)
        pieces = [(lo, hi)] if hi < s.at or lo >= s.at else [(lo, s.at - 1), (s.at, hi)]
        for a, b in pieces:
            new = copy(dim)
            new.min, new.max = s.col(a), s.col(b)
            new.index = get_column_letter(new.min)
            ws.column_dimensions[new.index] = new


def _move_rules(ws: Worksheet, s: Shift) -> None:
    from openpyxl.formatting.formatting import ConditionalFormattingList

    old = ws.conditional_formatting
    ws.conditional_formatting = ConditionalFormattingList()
    for cf in old:
        sqref = str(s.multi(cf.sqref))
        for rule in cf.rules:
            rule.formula = [s.formula(f, True) for f in rule.formula or []]
            ws.conditional_formatting.add(sqref, rule)
    for dv in ws.data_validations.dataValidation:
        dv.sqref = s.multi(dv.sqref)
        dv.formula1 = s.formula(dv.formula1, True) if dv.formula1 else dv.formula1
        dv.formula2 = s.formula(dv.formula2, True) if dv.formula2 else dv.formula2


def _move_table(ws: Worksheet, table: Any, s: Shift, headers: list[str]) -> None:
    r = CellRange(table.ref)
    # New columns inside the table become its columns (a table never saved has none yet:
    # openpyxl names them from the header cells when it writes the file).
    if r.min_col < s.at <= r.max_col and table.tableColumns:
        names = {c.name for c in table.tableColumns}
        pos = s.at - r.min_col
        for k in range(s.n):
            name = _unique(headers[k], names)
            ws.cell(r.min_row, s.at + k).value = name
            table.tableColumns.insert(pos + k, TableColumn(id=0, name=name))
        for i, col in enumerate(table.tableColumns, 1):
            col.id = i
    table.ref = s.range_text(table.ref)
    if table.autoFilter is not None and table.autoFilter.ref:
        table.autoFilter.ref = s.range_text(table.autoFilter.ref)


def _unique(name: str, taken: set[str]) -> str:
    out, k = str(name), 2
    while out in taken:
        out, k = f"{name} {k}", k + 1
    taken.add(out)
    return out
