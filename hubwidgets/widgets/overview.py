"""The whole-model overview: one heatmap row per layer, value bins across, colour = density.

Built from the per-variable histograms that :func:`hubwidgets.model.stats.weight_stats`
computes on the device, so no raw weights reach the browser.  Each layer is shown by one
tensor: its kernel (or embedding table), else its largest trainable weight; a normalisation
layer's scale (BatchNorm gamma, all ones at initialisation) is never the one shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.adapters.common import short_name
from ..model.stats import WeightStats
from ..model.tree import ModelTree, Node, VariableInfo

KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings", "recurrent_kernel")
SCALE_NAMES = ("gamma", "scale")  # normalisation scales: all ones until trained
ROW_PX = 13  # the height of one layer's row: names stay legible at 10 px
VISIBLE_ROWS = 40  # rows in view at once; the rest is reached by panning or clicking a layer
OVERVIEW_BINS = 40  # value bins across: ~8 px each, and ~3 bytes a cell in the widget state
OVERVIEW_TITLE = "Weights by layer"


def representative_variable(node: Node) -> VariableInfo | None:
    """The tensor that stands for ``node`` in the overview (None when it has no weights).

    Its kernel or embedding table when it has one; else its largest weight that gradients can
    train, leaving out normalisation scales; else its largest weight.
    """
    variables = [v for v in node.variables if v.size > 0]
    if not variables:
        return None
    for name in KERNEL_NAMES:
        for var in variables:
            if short_name(var) == name:
                return var
    trainable = [v for v in variables if v.can_train and short_name(v) not in SCALE_NAMES]
    pool = trainable or [v for v in variables if v.can_train] or variables
    return max(pool, key=lambda v: v.size)


def rebin(stats: WeightStats, edges: np.ndarray) -> np.ndarray:
    """``stats``' histogram moved onto ``edges`` (linear inside each of its bins); values
    beyond the ends count in the first and last bins."""
    counts = np.asarray(stats.counts, dtype=float)
    total = counts.sum()
    out = np.zeros(len(edges) - 1)
    if total == 0:
        return out
    own = np.asarray(stats.edges, dtype=float)
    if own.size < 2 or not np.all(np.diff(own) > 0):  # a constant tensor: one value
        value = float(stats.min if stats.min is not None else own[0])
        out[int(np.clip(np.searchsorted(edges, value, side="right") - 1, 0, len(out) - 1))] = total
        return out
    cdf = np.concatenate([[0.0], np.cumsum(counts)])
    at = np.interp(edges, own, cdf)
    out[:] = np.diff(at)
    out[0] += at[0]
    out[-1] += total - at[-1]
    return out


@dataclass
class Overview:
    """What the overview heatmap draws (JSON- and buffer-ready)."""

    paths: list[str]  # the layer of each row, in model order
    names: list[str]  # its label: the path below the model's root
    tensors: list[str]  # the variable each row shows
    centers: np.ndarray  # the value at the centre of each bin
    density: np.ndarray  # uint8 (rows, bins): 100 = the row's fullest bin

    def row_of(self, path: str) -> int | None:
        """The row of the layer at ``path``, or of the layer holding the variable at ``path``."""
        best = None
        for i, layer in enumerate(self.paths):
            if path == layer or path.startswith(layer + "/"):
                if best is None or len(layer) > len(self.paths[best]):
                    best = i
        return best


def build_overview(tree: ModelTree, stats: dict[str, WeightStats],
                   bins: int = OVERVIEW_BINS) -> Overview:
    """One row per layer that has weights, on value bins shared by every row.

    The shared range is symmetric and covers the 99th percentile of every row's magnitudes,
    so one outlier does not squash every other row into a single bin.  A layer whose
    statistics are not in ``stats`` yet has an empty row (they are computed in the
    background: the rows, and so the figure's layout, do not move as they come).
    """
    root = tree.root.path
    rows: list[tuple[Node, VariableInfo, WeightStats | None]] = []
    for node in tree:
        var = representative_variable(node)
        if var is None or (var.path in stats and stats[var.path].counts.sum() == 0):
            continue
        rows.append((node, var, stats.get(var.path)))
    picked = [(n, v, s) for n, v, s in rows if s is not None]
    reach = 0.0
    for _node, _var, s in picked:
        lo, hi = _quantiles(s, (0.01, 0.99))
        reach = max(reach, abs(lo), abs(hi))
    if not np.isfinite(reach) or reach <= 0:
        reach = max([abs(s.min or 0) for *_, s in picked] + [abs(s.max or 0) for *_, s in picked]
                    + [1.0])
    edges = np.linspace(-reach, reach, bins + 1)
    density = np.zeros((len(rows), bins), dtype=np.uint8)
    for i, (_node, _var, s) in enumerate(rows):
        if s is None:
            continue
        row = rebin(s, edges)
        peak = row.max()
        if peak > 0:
            density[i] = np.round(100 * row / peak).astype(np.uint8)
    names = [n.path[len(root) + 1:] or n.name for n, _v, _s in rows]
    return Overview(paths=[n.path for n, _v, _s in rows], names=names,
                    tensors=[short_name(v) for _n, v, _s in rows],
                    centers=np.round((edges[:-1] + edges[1:]) / 2, 6), density=density)


def _quantiles(stats: WeightStats, qs: tuple[float, ...]) -> list[float]:
    counts = np.asarray(stats.counts, dtype=float)
    total = counts.sum()
    if total == 0 or len(stats.edges) < 2:
        return [0.0 for _ in qs]
    cdf = np.concatenate([[0.0], np.cumsum(counts) / total])
    return [float(np.interp(q, cdf, stats.edges)) for q in qs]


def heatmap_trace(overview: Overview) -> dict:
    """The heatmap trace (on the figure's second axes): names on the axis and on hover."""
    # plotly reads "<...>" in labels as markup: names from a model are escaped text
    labels = [_escape(n) for n in overview.names]
    return dict(type="heatmap", z=overview.density, x=overview.centers, y=labels,
                xaxis="x2", yaxis="y2", colorscale="Viridis", zmin=0, zmax=100,
                name="overview", showscale=False, xgap=0, ygap=1,
                hovertemplate="%{y}<br>weights near %{x:.3g}: %{z}% of the layer's peak"
                              "<extra></extra>")


def overview_layout(overview: Overview, selected_row: int | None = None) -> dict:
    """The overview axes: rows in model order, top down, :data:`VISIBLE_ROWS` in view."""
    n = len(overview.names)
    if selected_row is None:
        top = 0
    else:
        top = max(0, min(selected_row - VISIBLE_ROWS // 2, n - VISIBLE_ROWS))
    shown = min(n, VISIBLE_ROWS)
    return dict(
        yaxis2=dict(type="category",  # names like "5" or "2024-01" are labels, not numbers
                    range=[top + shown - 0.5, top - 0.5], tickfont=dict(size=10), dtick=1,
                    automargin=True, title=None, fixedrange=False),
        xaxis2=dict(title=dict(text="weight value · colour: density per layer",
                               font=dict(size=11)), fixedrange=True),  # rows pan, bins stay
        shapes=[] if selected_row is None else [dict(
            type="rect", xref="x2 domain", yref="y2", x0=0, x1=1, y0=selected_row - 0.5,
            y1=selected_row + 0.5, line=dict(width=2, color="#ff7f0e"))],
    )


def overview_height(overview: Overview) -> int:
    """Pixels the overview's rows take."""
    return ROW_PX * max(min(len(overview.names), VISIBLE_ROWS), 6)


def _escape(text: str) -> str:
    import html

    return html.escape(text)
