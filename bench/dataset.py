"""A generated, reproducible OCR test set: English, Chinese and mixed text as line images,
pages and 150/300 dpi PDFs, some slightly rotated or speckled, each with its reference text.

Generated rather than shipped so the benchmarks need no data files and no network; the same
seed always gives the same pixels.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LATIN_FONTS = [
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"),
]
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

ENGLISH = """The quarterly report shows a steady increase in online orders.
Please sign the attached form and return it before Friday.
Our office will be closed on Monday for the public holiday.
Invoice 2024-0315 total 1,280.50 USD, due within 30 days.
The committee approved the new budget after a long discussion.
Shipping address: 42 Harbour Road, Suite 7, Springfield.
All employees must complete the safety training this month.
The meeting was moved to room B204 at half past three.
Customer satisfaction rose by 12 percent compared to last year.
Backups run every night at 02:00 and are kept for two weeks.
The contract may be renewed for another year by mutual agreement.
Temperature readings were recorded every hour during the test.
Please contact the help desk if your password has expired.
The warehouse received 350 boxes of printer paper yesterday.
Results will be published on the project website next week.
A new version of the software fixes several security issues.""".splitlines()

CHINESE = """今天天气很好，我们去公园散步。
光学字符识别系统可以批量处理文件。
北京上海广州深圳杭州南京成都武汉
本季度的销售额比去年同期增长了百分之十二。
请在星期五之前签署并交回所附表格。
由于公共假期，我们的办公室星期一休息。
所有员工必须在本月内完成安全培训。
会议改到下午三点半在二楼会议室举行。
仓库昨天收到了三百五十箱打印纸。
新版本的软件修复了若干安全问题。
合同经双方同意可以再续签一年。
如果您的密码已过期，请联系技术支持。
测试期间每小时记录一次温度读数。
项目结果将于下周在网站上公布。
客户满意度较去年提高了明显的幅度。
每天晚上两点自动备份，保留两周。""".splitlines()

MIXED = """订单 Order 2024-0315 合计 Total 1,280.50 元
会议 Meeting 下午三点 Room B204
请使用 Chrome 或 Firefox 浏览器访问系统。
联系人 Contact: 王小明 Wang Xiaoming
Project Alpha 项目进度报告 Progress Report
发票号码 Invoice No. 88120457 已付款 Paid
客户 Customer: Springfield Trading Ltd.
产品型号 Model XR-200 数量 Quantity 350""".splitlines()


@dataclass
class Sample:
    """One benchmark input file and what it says."""

    path: Path
    subset: str  # english | chinese | mixed
    kind: str  # line | page | pdf150 | pdf300
    reference: str


def _font(script: str, px: int, rng: random.Random) -> ImageFont.FreeTypeFont:
    path = CJK_FONT if script != "english" else rng.choice(LATIN_FONTS)
    return ImageFont.truetype(str(path), px)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Break at spaces, or between any two CJK characters (they have no spaces to break on)."""
    lines, cur = [], ""
    for space, tok in re.findall(r"(\s*)([!-~]+|\S)", text):
        cand = cur + (space and " ") + tok if cur else tok
        if cur and font.getlength(cand) > width:
            lines.append(cur)
            cur = tok
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


def _speckle(im: Image.Image, rng: random.Random, density: float = 0.0015) -> Image.Image:
    a = np.asarray(im.convert("L")).copy()
    g = np.random.default_rng(rng.randrange(2**32))
    n = int(a.size * density)
    ys, xs = g.integers(0, a.shape[0], n), g.integers(0, a.shape[1], n)
    a[ys, xs] = 0
    a[np.clip(ys + 1, 0, a.shape[0] - 1), xs] = 0  # 2-pixel specks, like dust on a scan
    return Image.fromarray(a).convert("RGB")


def _render(lines: list[str], script: str, size: tuple[int, int], px: int, margin: int, rng: random.Random):
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    font = _font(script, px, rng)
    wrapped = [w for line in lines for w in _wrap(line, font, size[0] - 2 * margin)]
    step = int(px * 1.6)
    wrapped = wrapped[: max(1, (size[1] - 2 * margin) // step)]
    for i, line in enumerate(wrapped):
        draw.text((margin, margin + i * step), line, fill="black", font=font)
    return im, "\n".join(wrapped)


def _pick(subset: str, n: int, rng: random.Random) -> list[str]:
    if subset == "english":
        return rng.sample(ENGLISH, n)
    if subset == "chinese":
        return rng.sample(CHINESE, n)
    # Mixed: lines holding both scripts, alternating with plain English or Chinese lines.
    both, plain = rng.sample(MIXED, len(MIXED)), rng.sample(ENGLISH + CHINESE, n)
    return [both[j // 2 % len(both)] if j % 2 == 0 else plain[j] for j in range(n)]


def make_line(path: Path, subset: str, rng: random.Random, rotate: float = 0.0, speckle: bool = False) -> Sample:
    n = rng.randint(1, 3)
    im, ref = _render(_pick(subset, n, rng), subset, (1400, 60 + 85 * n), rng.randint(34, 42), 30, rng)
    im = _finish(im, rng, rotate, speckle)
    im.save(path)
    return Sample(path, subset, "line", ref)


def make_page(
    path: Path, subset: str, rng: random.Random, dpi: int = 200, rotate: float = 0.0, speckle: bool = False
) -> Sample:
    """An A4 page at ``dpi`` with 11-12 pt text; saved as PNG, or as a one-page raster PDF at that dpi."""
    size = (round(8.27 * dpi), round(11.69 * dpi))
    px = round(rng.choice((11, 12)) * dpi / 72)
    im, ref = _render(_pick(subset, 16, rng), subset, size, px, dpi, rng)
    im = _finish(im, rng, rotate, speckle)
    if path.suffix == ".pdf":
        im.save(path, resolution=float(dpi))
        kind = f"pdf{dpi}"
    else:
        im.save(path)
        kind = "page"
    return Sample(path, subset, kind, ref)


def _finish(im: Image.Image, rng: random.Random, rotate: float, speckle: bool) -> Image.Image:
    if rotate:
        im = im.rotate(rotate, resample=Image.Resampling.BICUBIC, fillcolor="white")
    return _speckle(im, rng) if speckle else im


def quality_set(out: Path, quick: bool = False, seed: int = 7) -> list[Sample]:
    """Per subset: line images (plain, rotated, speckled) and pages (speckled PNG, rotated PNG,
    150 and 300 dpi PDFs). ``quick``: one line image per subset."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for subset in ("english", "chinese", "mixed"):
        if subset != "english" and not CJK_FONT.is_file():
            raise FileNotFoundError(f"{CJK_FONT} is missing: install Debian's fonts-wqy-zenhei (`make setup` does)")
        samples.append(make_line(out / f"{subset}-line0.png", subset, rng))
        if quick:
            continue
        samples.append(make_line(out / f"{subset}-line1.png", subset, rng))
        samples.append(make_line(out / f"{subset}-line-rot.png", subset, rng, rotate=rng.choice((-1.5, 1.5))))
        samples.append(make_line(out / f"{subset}-line-speck.png", subset, rng, speckle=True))
        samples.append(make_page(out / f"{subset}-page-speck.png", subset, rng, speckle=True))
        samples.append(make_page(out / f"{subset}-page-rot.png", subset, rng, rotate=rng.choice((-1.0, 1.0))))
        samples.append(make_page(out / f"{subset}-150.pdf", subset, rng, dpi=150))
        samples.append(make_page(out / f"{subset}-300.pdf", subset, rng, dpi=300))
    return samples


def throughput_set(out: Path, n: int = 50, seed: int = 11, lines_only: bool = False) -> list[Sample]:
    """``n`` mixed inputs as PNG: two in three are A4 pages at 150 dpi, one in three a line image
    (all of them with ``lines_only``); English, Chinese and mixed text in turn, every fourth speckled."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    subsets = ("english", "chinese", "mixed")
    for i in range(n):
        subset = subsets[i % 3] if CJK_FONT.is_file() else "english"
        speckle = i % 4 == 3
        if lines_only or (i // 3) % 3 == 2:
            samples.append(make_line(out / f"{i:03d}-{subset}-line.png", subset, rng, speckle=speckle))
        else:
            samples.append(make_page(out / f"{i:03d}-{subset}-page.png", subset, rng, dpi=150, speckle=speckle))
    return samples


def page_set(out: Path, n: int = 50, seed: int = 13, dpi: int = 150) -> list[Sample]:
    """``n`` A4 pages (1240x1754 px at 150 dpi) as PNG, English, Chinese and mixed text in turn."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    subsets = ("english", "chinese", "mixed") if CJK_FONT.is_file() else ("english",)
    return [
        make_page(out / f"{i:03d}-{subsets[i % len(subsets)]}.png", subsets[i % len(subsets)], rng, dpi=dpi)
        for i in range(n)
    ]


def pdf_document(path: Path, pages: int = 20, seed: int = 17, dpi: int = 150) -> list[Sample]:
    """One ``pages``-page raster PDF (A4 at ``dpi``, scripts in turn), as a scanner makes them.
    Returns one Sample per page, each with the PDF's path."""
    samples = page_set(path.parent / f".{path.stem}-pages", pages, seed, dpi)
    images = [Image.open(s.path).convert("RGB") for s in samples]
    images[0].save(path, save_all=True, append_images=images[1:], resolution=float(dpi))
    return [Sample(path, s.subset, f"pdf{dpi}", s.reference) for s in samples]


def short_lines(out: Path, n: int = 20, seed: int = 19) -> list[Sample]:
    """``n`` small one-line images (240x40), scripts in turn: many cheap real-OCR items."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    subsets = ("english", "chinese", "mixed") if CJK_FONT.is_file() else ("english",)
    samples = []
    for i in range(n):
        subset = subsets[i % len(subsets)]
        im, ref = _render(_pick(subset, 1, rng), subset, (240, 40), 20, 6, rng)
        path = out / f"{i:03d}-{subset}-short.png"
        im.save(path)
        samples.append(Sample(path, subset, "line", ref))
    return samples
