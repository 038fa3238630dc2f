"""Pictures of a model's weights as inline SVG, made with numpy and string building.

No plotting library: matplotlib is not a dependency (and costs seconds to import), plotly's
static export needs kaleido and a browser.  The two pictures are a grid of coloured cells and
a bar chart, which take a few dozen lines here.  The heatmap's cells travel as one small PNG
(written with zlib) inside the SVG: 100 layers x 40 bins is ~3 KB instead of ~150 KB of
``<rect>`` elements.  Every text is ``currentColor`` (the page's own text colour), so it reads
on light and dark pages; names are escaped.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..model.stats import WeightStats
    from ..widgets.overview import Overview

# plotly's Viridis, the live overview's colour scale (dark purple = no weights there)
VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
           "#6ece58", "#b5de2b", "#fde725"]
BAR = "#1f77b4"  # mid blue: visible on white and on near-black
WIDTH = 460
LABEL_PX = 178  # the layer names' column: 30 characters at 10 px
ROW_PX = 11
MAX_LABELS = 150  # more layers than this: thinner rows, every k-th one named
MIN_ROW_PX = 2
FONT = 10


def viridis(density: np.ndarray) -> np.ndarray:
    """RGB uint8 for densities 0..100 (the live overview's scale)."""
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in VIRIDIS], dtype=float)
    at = np.clip(np.asarray(density, dtype=float) / 100.0, 0, 1) * (len(stops) - 1)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, len(stops) - 1)
    frac = (at - lo)[..., None]
    return np.round(stops[lo] * (1 - frac) + stops[hi] * frac).astype(np.uint8)


def png(rgb: np.ndarray) -> bytes:
    """A truecolour PNG of an (height, width, 3) uint8 array."""
    height, width, _ = rgb.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + np.ascontiguousarray(row).tobytes() for row in rgb)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = FONT,
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="currentColor" '
            f'text-anchor="{anchor}"{extra}>{html.escape(text)}</text>')


def _tick(value: float) -> str:
    return f"{value:.3g}"


def _short(name: str, limit: int = 30) -> str:
    return name if len(name) <= limit else "\u2026" + name[-(limit - 1):]


def overview_svg(overview: "Overview", title: str = "Weights by layer") -> str:
    """One row per layer (its kernel, or its largest trainable weight), value bins across,
    colour = density relative to the row's fullest bin: the live overview, drawn once."""
    rows, bins = overview.density.shape
    top, bottom = 22, 34
    plot_w = WIDTH - LABEL_PX - 10
    row_px = ROW_PX if rows <= MAX_LABELS else max(MIN_ROW_PX, ROW_PX * MAX_LABELS / rows)
    step = -(-rows // MAX_LABELS)  # every k-th row named: at most MAX_LABELS names
    height = round(top + rows * row_px + bottom)
    image = base64.b64encode(png(viridis(overview.density))).decode()
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="hw-s-overview" role="img" '
             f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
             f'aria-label="{html.escape(title)}: {rows} layers">',
             f"<title>{html.escape(title)}</title>",
             _text(0, 14, title, size=12, extra=' font-weight="600"'),
             f'<image x="{LABEL_PX}" y="{top}" width="{plot_w}" height="{rows * row_px:.1f}" '
             f'preserveAspectRatio="none" image-rendering="pixelated" '
             f'style="image-rendering:pixelated" href="data:image/png;base64,{image}"/>']
    for i, name in enumerate(overview.names):
        if i % step:
            continue
        y = top + (i + 0.5) * row_px + 0.35 * FONT  # the name's middle on its row's
        label = _short(name.rsplit("/", 1)[-1], 28)  # the whole path in its tooltip
        parts.append(f'<g class="hw-s-layer"><title>{html.escape(name)} '
                     f"({html.escape(overview.tensors[i])})</title>"
                     + _text(LABEL_PX - 4, y, label, "end") + "</g>")
    base = top + rows * row_px
    lo, hi = float(overview.centers[0]), float(overview.centers[-1])
    for frac, value in ((0.0, lo), (0.5, (lo + hi) / 2), (1.0, hi)):
        x = LABEL_PX + frac * plot_w
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[frac]
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" '
                     f'stroke="currentColor"/>')
        parts.append(_text(x, base + 14, _tick(value), anchor))
    parts.append(_text(LABEL_PX + plot_w / 2, base + 28,
                       "weight value · colour: density per layer", "middle"))
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(stats: "WeightStats", title: str) -> str:
    """A bar chart of one variable's histogram (``stats.counts`` over ``stats.edges``), with
    its mean and standard deviation in the caption line."""
    counts = np.asarray(stats.counts, dtype=float)
    edges = np.asarray(stats.edges, dtype=float)
    left, right, top, bottom = 50, 10, 22, 34
    height = 200
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="hw-s-histogram" role="img" '
             f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
             f'aria-label="{html.escape(title)}">', f"<title>{html.escape(title)}</title>",
             _text(0, 14, title, size=12, extra=' font-weight="600"')]
    if counts.size and counts.sum() > 0 and edges.size == counts.size + 1:
        peak = counts.max()
        lo, hi = edges[0], edges[-1]
        span = hi - lo if hi > lo else 1.0
        path = []
        for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
            if c <= 0:
                continue
            x0 = left + (a - lo) / span * plot_w
            w = max((b - a) / span * plot_w, 0.6)
            h = c / peak * plot_h
            path.append(f"M{x0:.1f} {top + plot_h:.1f}h{w:.1f}v{-h:.1f}h{-w:.1f}z")
        parts.append(f'<path d="{"".join(path)}" fill="{BAR}"/>')
        base = top + plot_h
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}" '
                     f'stroke="currentColor"/>')
        middle = 0.0 if lo < 0 < hi else lo + span / 2  # 0 when the range holds it
        for value, anchor in ((lo, "start"), (middle, "middle"), (hi, "end")):
            x = left + (value - lo) / span * plot_w
            parts.append(_text(x, base + 14, _tick(value), anchor))
        parts.append(_text(left - 4, top + 8, f"{int(peak):,}", "end"))
        parts.append(_text(left - 4, base, "0", "end"))
        mean = "?" if stats.mean is None else f"{stats.mean:.3g}"
        std = "?" if stats.std is None else f"{stats.std:.3g}"
        parts.append(_text(left + plot_w / 2, base + 28,
                           f"weight value · count per bin · mean {mean}, std {std}", "middle"))
    else:
        parts.append(_text(left, top + 20, "no values to draw"))
    parts.append("</svg>")
    return "".join(parts)
