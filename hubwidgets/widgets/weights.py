"""``WeightPlot``: plotly figures of weight distributions, updated in place.

Two ``FigureWidget`` s per panel, whatever the model's size: one for the selection (a
variable's histogram, or an overlay of a layer's variables) and one whole-model overview
(a box per layer, built from the histograms, so no raw weights cross to the browser).
"""

from __future__ import annotations

import html
import warnings
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import traitlets

from ..model.session import ModelSession, session_for
from ..model.stats import NonFiniteWeightsWarning, WeightStats, weight_stats
from ..model.tree import ModelTree, Node


OVERVIEW_BATCH = 32  # layers per statistics call while the overview's progress bar moves


def histogram_quantiles(stats: WeightStats, qs: tuple[float, ...] = (0.25, 0.5, 0.75)) -> list[float]:
    """Quantiles estimated from the histogram (linear inside a bin)."""
    counts = stats.counts.astype(float)
    total = counts.sum()
    if total == 0:
        return [0.0 for _ in qs]
    cdf = np.concatenate([[0.0], np.cumsum(counts) / total])
    return [float(np.interp(q, cdf, stats.edges)) for q in qs]


MAX_OVERLAY = 24  # histograms overlaid in the selection figure
FIGURE_WIDTH = 440  # fits beside the explorer in Notebook 7's narrow page

class WeightPlot(widgets.VBox):
    """Histograms of the selected variable or layer, and a whole-model overview.

    ``selected`` follows the model session's selection (what the explorer selects); the
    figures are drawn again when the session says the weights or the structure changed.
    """

    selected = traitlets.Unicode("")
    log_y = traitlets.Bool(False)
    shared_bins = traitlets.Bool(True)

    def __init__(self, model: Any, *, bins: int = 64, overview: bool = True, **kwargs: Any) -> None:
        unknown = set(kwargs) - {"layout", "selected"}
        if unknown:
            raise TypeError(f"WeightPlot got unexpected keyword arguments: {sorted(unknown)}")
        selected = kwargs.pop("selected", "")
        super().__init__(**kwargs)
        self.session: ModelSession = session_for(model)
        self.session.current_tree()
        self.bins = bins
        self.nonfinite: set[str] = set()  # variable paths with NaN/Inf, from the overview
        self.selection_figure = go.FigureWidget(layout=dict(
            height=300, width=FIGURE_WIDTH, margin=dict(l=40, r=10, t=30, b=30), barmode="overlay",
            legend=dict(orientation="h", yanchor="top", y=-0.12),
            title="Select a layer or variable"))
        self.overview_figure = go.FigureWidget(layout=dict(
            height=320, width=FIGURE_WIDTH, margin=dict(l=40, r=10, t=30, b=80),
            title="Weights by layer",
            showlegend=False))
        self.progress = widgets.IntProgress(min=0, max=1, description="Stats", layout={"width": "320px"})
        log_box = widgets.Checkbox(description="log y", value=False, indent=False)
        shared_box = widgets.Checkbox(description="shared bins", value=True, indent=False)
        widgets.link((log_box, "value"), (self, "log_y"))
        widgets.link((shared_box, "value"), (self, "shared_bins"))
        children: list[widgets.Widget] = [widgets.HBox([log_box, shared_box]), self.selection_figure]
        if overview:
            children += [self.progress, self.overview_figure]
        self.children = children
        self.show_overview = overview
        if overview:
            self.draw_overview()
        self.selected = selected or self.session.selection  # nothing drawn until a pick
        self._stop_observing = self.session.observe(self._on_session_change)

    def close(self) -> None:
        """Stop following the session and close the figures."""
        self._stop_observing()
        super().close()

    @property
    def tree(self) -> ModelTree:
        """The model's tree, as the session holds it now."""
        return self.session.tree

    def _on_session_change(self, session: ModelSession, what: str) -> None:
        if what == "selection":
            self.selected = session.selection
        elif what in ("values", "structure"):
            if self.show_overview:
                self.draw_overview()
            try:
                self.draw_selection()
            except KeyError:  # the selected layer is gone
                self.selected = ""

    # -- selection -------------------------------------------------------------------------
    @traitlets.observe("selected", "log_y", "shared_bins")
    def _redraw(self, _change: Any) -> None:
        try:
            self.draw_selection()
        except KeyError:  # not a layer or variable of this model (any more): draw nothing
            with self.selection_figure.batch_update():
                self.selection_figure.data = []
                self.selection_figure.layout.title = "Select a layer or variable"

    def _selection_stats(self) -> tuple[str, dict[str, WeightStats], int]:
        """(title, statistics of what the figure draws, how many variables were selected)."""
        path = self.selected
        try:
            var = self.tree.find_variable(path)
            return var.path, weight_stats(var, bins=self.bins), 1
        except KeyError:
            pass
        node: Node = self.tree.find(path)
        selected = node.all_variables()
        variables = selected[:MAX_OVERLAY]  # only what the figure draws
        if not variables:
            return node.path, {}, 0
        value_range = None
        if self.shared_bins and len(variables) > 1:
            with warnings.catch_warnings():  # the second pass below warns, once
                warnings.simplefilter("ignore", NonFiniteWeightsWarning)
                per_var = weight_stats(variables, bins=self.bins)
            lows = [s.min for s in per_var.values() if s.min is not None]
            highs = [s.max for s in per_var.values() if s.max is not None]
            if lows and highs and min(lows) < max(highs):
                value_range = (min(lows), max(highs))
            else:
                return node.path, per_var, len(selected)
        return (node.path, weight_stats(variables, bins=self.bins, value_range=value_range),
                len(selected))

    def draw_selection(self) -> None:
        """Redraw the selection figure in place (no new widget)."""
        fig = self.selection_figure
        if not self.selected:
            with fig.batch_update():
                fig.data = []
                fig.layout.title = "Select a layer or variable"
            return
        title, stats, total = self._selection_stats()
        with fig.batch_update():
            fig.data = []
            for path, s in list(stats.items())[:MAX_OVERLAY]:
                if s.counts.size == 0:
                    continue
                centers = (s.edges[:-1] + s.edges[1:]) / 2
                label = "/".join(path.split("/")[-2:])
                fig.add_bar(x=centers, y=s.counts, name=html.escape(label),
                            opacity=0.6 if len(stats) > 1 else 1.0,
                            width=float(s.edges[1] - s.edges[0]))
            title = html.escape(title)
            shown = f"first {len(stats)} of {total}" if total > len(stats) else f"{total}"
            fig.layout.title = f"{title}: {shown} variable(s)" if stats else f"{title}: no weights"
            fig.layout.yaxis.type = "log" if self.log_y else "linear"

    # -- overview --------------------------------------------------------------------------
    def draw_overview(self) -> None:
        """One box per layer with weights, in model order, from on-device histograms."""
        layers = [n for n in self.tree if n.variables]
        self.progress.max = max(len(layers), 1)
        self.progress.value = 0
        names, q1s, meds, q3s, lows, highs = [], [], [], [], [], []
        computed: dict[str, WeightStats] = {}
        for start in range(0, len(layers), OVERVIEW_BATCH):  # few calls: each reduces many
            batch = [v for node in layers[start:start + OVERVIEW_BATCH] for v in node.variables]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NonFiniteWeightsWarning)
                computed.update(weight_stats(batch, bins=self.bins))
            self.progress.value = min(start + OVERVIEW_BATCH, len(layers))
        self.nonfinite = {p for p, s in computed.items() if s.has_nonfinite}
        self.session.cache.setdefault(("weight_stats", self.bins), computed)
        for node in layers:
            stats = [computed[v.path] for v in node.variables if computed[v.path].counts.sum() > 0]
            if not stats:
                continue
            merged = max(stats, key=lambda s: s.count)  # the layer's main tensor (kernel)
            q1, med, q3 = histogram_quantiles(merged)
            # plotly reads "<...>" in labels as markup: names from a model are escaped text
            names.append(html.escape(node.path[len(self.tree.root.path) + 1:] or node.name))
            q1s.append(q1), meds.append(med), q3s.append(q3)
            lows.append(merged.min), highs.append(merged.max)
        with self.overview_figure.batch_update():
            self.overview_figure.data = []
            if names:
                self.overview_figure.add_box(x=names, q1=q1s, median=meds, q3=q3s,
                                             lowerfence=lows, upperfence=highs, name="weights")
        self.progress.layout.visibility = "hidden"

    def refresh(self) -> None:
        """Recompute after the weights changed (training, ``set_weights``): every view of
        the model follows."""
        self.session.refresh("values")
