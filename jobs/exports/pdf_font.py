"""The text layer's font: Tesseract's glyphless font, as OCRmyPDF embeds it.

A Type0 font with Identity-H encoding over a CIDFontType2 whose every CID maps to glyph 1, an
empty glyph 500 units wide (CIDToGIDMap), and a ToUnicode map that reads each 2-byte code as the
UTF-16 code unit it is. So any text, Chinese too, is shown by its UTF-16 bytes, copied and searched
as itself, and draws nothing (the layer is also render mode 3, invisible).
"""

from __future__ import annotations

import base64
import zlib

import pikepdf
from pikepdf import Dictionary, Name, Pdf, String

#: Tesseract's glyphless font (tessdata/pdf.ttf, Apache-2.0; OCRmyPDF ships the same file): one empty glyph.
_GLYPHLESS_TTF = base64.b64decode(
    "AAEAAAAKAIAAAwAgT1MvMlbeyJQAAAEoAAAAYGNtYXAACgA0AAABkAAAAB5nbHlmFSJBJAAAAbgAAAAYaGVhZAt48WUAAACs"
    "AAAANmhoZWEMAgQCAAAA5AAAACRobXR4BAAAAAAAAYgAAAAIbG9jYQAMAAAAAAGwAAAABm1heHAABAAFAAABCAAAACBuYW1l"
    "8usW2gAAAdAAAABLcG9zdAABAAEAAAIcAAAAIAABAAAAAQAAsJRxEF8PPPUEBwgAAAAAAM+a/G4AAAAA1MOn8gAAAAAEAAgA"
    "AAAAEAACAAAAAAAAAAEAAAgA//8AAAQAAAAAAAQAAAEAAAAAAAAAAAAAAAAAAAACAAEAAAACAAQAAQAAAAAAAQAAAAAAAAAA"
    "AAAAAAAAAAAAAwAAAZAABQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAUAAQABAAAAAAAAAAAAAAAAAAAAAAAAAAAAR09PRwBA"
    "AAAAAAAB//8AAAABAAGAAAAAAAAAAAAAAAAAAAABAAAAAAAABAAAAAAAAAIAAQAAAAAAFAADAAAAAAAUAAYACgAAAAAAAAAA"
    "AAAAAAAMAAAAAQAAAAAEAAgAAAMAADEhESEEAPwACAAAAAADACoAAAADAAAABQAWAAAAAQAAAAAABQALABYAAwABBAkABQAW"
    "AAAAVgBlAHIAcwBpAG8AbgAgADEALgAwVmVyc2lvbiAxLjAAAAEAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAA="
)
CHAR_WIDTH = 0.5  # the font's width of every code, in ems (DW 500)
_TO_UNICODE = b"""/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /Adobe-Identity-UCS def
/CMapType 2 def
1 begincodespacerange
<0000> <FFFF>
endcodespacerange
1 beginbfrange
<0000> <FFFF> <0000>
endbfrange
endcmap
CMapName currentdict /CMap defineresource pop
end
end
"""


def glyphless_font(pdf: Pdf) -> pikepdf.Object:
    """The Type0 font of the text layer, added to ``pdf`` (the structure OCRmyPDF's GlyphlessFont builds)."""
    descriptor = pdf.make_indirect(
        Dictionary(
            Type=Name.FontDescriptor,
            FontName=Name.GlyphLessFont,
            Flags=5,  # fixed pitch, symbolic
            FontBBox=[0, 0, 500, 1000],
            ItalicAngle=0,
            Ascent=1000,
            Descent=-1,
            CapHeight=1000,
            StemV=80,
            FontFile2=pdf.make_stream(_GLYPHLESS_TTF),
        )
    )
    cid_font = pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.CIDFontType2,
            BaseFont=Name.GlyphLessFont,
            CIDSystemInfo=Dictionary(Registry=String("Adobe"), Ordering=String("Identity"), Supplement=0),
            FontDescriptor=descriptor,
            DW=int(1000 * CHAR_WIDTH),
            CIDToGIDMap=pdf.make_stream(zlib.compress(b"\x00\x01" * 65536), Filter=Name.FlateDecode),
        )
    )
    return pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type0,
            BaseFont=Name.GlyphLessFont,
            Encoding=Name("/Identity-H"),
            DescendantFonts=[cid_font],
            ToUnicode=pdf.make_stream(_TO_UNICODE),
        )
    )
