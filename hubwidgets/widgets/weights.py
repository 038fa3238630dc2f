"""``WeightPlot``: plotly figures of weight distributions, updated in place.

One figure per panel (a :class:`~.figure.StatefulFigure`: plotly.js travels once per page,
whatever the number of figures), whatever the model's size: on top, the selection (a
variable's histogram, or an overlay of a layer's variables); below, the whole-model overview
(a heatmap, one row per layer, built from the on-device histograms, so no raw weights cross
to the browser; see :mod:`.overview`).

The figure's data also lives in its widget state, so Voilà, ``nbconvert --execute`` and a
notebook re-opened with saved widget state show it before any click.  The colours are each
view's own: the figure's view reads its page's theme (see :mod:`.figure`).
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets

from ..model.session import ModelSession, session_for
from ..model.session_stats import BackgroundStatistics, statistics_of
from ..model.stats import WeightStats, weight_stats
from ..model.tree import Node
from . import overview as ov
from .figure import StatefulFigure
from .keywords import KnownKeywords
from .session_view import SessionView

REDRAW_SECONDS = 0.5  # the overview is redrawn at most this often while it fills in


def histogram_quantiles(stats: WeightStats,
                        qs: tuple[float, ...] = (0.25, 0.5, 0.75)) -> list[float]:
    """Quantiles estimated from the histogram (linear inside a bin)."""
    counts = stats.counts.astype(float)
    total = counts.sum()
    if total == 0:
        return [0.0 for _ in qs]
    cdf = np.concatenate([[0.0], np.cumsum(counts) / total])
    return [float(np.interp(q, cdf, stats.edges)) for q in qs]


MAX_OVERLAY = 24  # histograms overlaid in the selection figure
MAX_LEGEND = 8  # legend entries shown (more overlap the overview)
FIGURE_WIDTH = 460  # fits beside the explorer, and in Notebook 7's narrow page
SELECTION_PX = 230  # the selection histogram's height
GAP_PX = 96  # between the two plots: x ticks, legend, the overview's title
MARGIN = dict(l=50, r=12, t=36, b=44)

class WeightPlot(KnownKeywords, SessionView, widgets.VBox):
    """Histograms of the selected variable or layer, and a whole-model overview.

    ``selected`` follows the model session's selection (what the explorer selects), and a
    click on a layer in the overview selects it for every view; the figures are drawn again
    when the session says the weights or the structure changed.
    """

    selected = traitlets.Unicode("")
    log_y = traitlets.Bool(False)
    shared_bins = traitlets.Bool(True)
    effective = traitlets.Bool(True)
    """Quantized and LoRA layers: plot the kernel they compute with (``effective_weights``),
    not their stored codes and base; False plots the stored variables."""

    def __init__(self, model: Any, *, bins: int = 64, overview: bool = True,
                 on_statistics: Any = None, **kwargs: Any) -> None:
        selected = kwargs.pop("selected", "")
        super().__init__(**kwargs)
        self.add_class("hw-weights")
        self.session = session_for(model)
        self.bins = bins
        self._draw_lock = threading.RLock()  # the background work redraws the overview
        self._drawn_at = 0.0
        self._on_statistics = on_statistics
        self.progress = widgets.IntProgress(min=0, max=1, description="Statistics",
                                            layout={"width": "320px"})
        if overview:  # a small model's statistics at once; a large one's in the background
            self.statistics_store().compute_if_small(self.tree.variables())
        self.overview: ov.Overview | None = self._compute_overview() if overview else None
        self.figure = StatefulFigure(data=self._overview_traces(), layout=self._base_layout())
        self.figure.on_click(self._on_overview_click, trace_type="heatmap")
        log_box = widgets.Checkbox(description="log y", value=False, indent=False)
        shared_box = widgets.Checkbox(description="shared bins", value=True, indent=False)
        widgets.link((log_box, "value"), (self, "log_y"))
        widgets.link((shared_box, "value"), (self, "shared_bins"))
        effective_box = widgets.Checkbox(description="effective weights", value=True,
                                         indent=False)  # quantized / LoRA: not the codes
        widgets.link((effective_box, "value"), (self, "effective"))
        self.children = [widgets.HBox([log_box, shared_box, effective_box, self.progress]),
                         self.figure]
        self.selected = selected or self.session.selection  # nothing drawn until a pick
        self._follow(self.session)
        self.statistics_work: BackgroundStatistics | None = None
        """The thread that fills in the overview's statistics (None without an overview)."""
        if overview:
            self.statistics_work = BackgroundStatistics(self.session, bins, self._on_progress,
                                                        self._overview_effective())
            self._on_progress(*self._progress_now())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every layer's statistics are computed and drawn (or ``timeout``
        seconds passed); True when they are."""
        work = self.statistics_work
        if work is None:
            return True
        done = work.wait(timeout)
        if work.error is not None:
            raise work.error
        if done:
            self.draw_overview()
            self._on_progress(*self._progress_now())
        return done

    def _work_on_the_shown_store(self) -> None:
        """The background work fills the store the overview shows (which changes with the
        "effective weights" box, and when a layer is quantized or gets LoRA adapters)."""
        work = self.statistics_work
        if work is None or work.store is self.statistics_store():
            return
        work.stop()
        self.statistics_work = BackgroundStatistics(self.session, self.bins, self._on_progress,
                                                    self._overview_effective())

    @traitlets.observe("effective")
    def _on_effective(self, _change: Any) -> None:
        if self.statistics_work is None:
            return
        self._work_on_the_shown_store()
        self.statistics_store().compute_if_small(self.tree.variables())
        self.draw_overview()
        self._on_progress(*self._progress_now())

    def _overview_effective(self) -> bool:
        """Whether the overview reads effective weights: asked for, and the model has a
        quantized or LoRA layer (else they are the stored ones: one store serves both)."""
        from ..model.effective import has_special_layers

        return bool(self.effective) and has_special_layers(self.tree)

    def statistics_store(self) -> Any:
        """The session's kept statistics the overview draws (stored or effective weights)."""
        return statistics_of(self.session, self.bins, self._overview_effective())

    def statistics_pending(self) -> bool:
        """Whether some variable's statistics are still to be computed."""
        done, total = self._progress_now()
        return done < total

    def _progress_now(self) -> tuple[int, int]:
        variables = self.tree.variables()
        missing = self.statistics_store().missing(variables)
        return len(variables) - len(missing), len(variables)

    def _on_progress(self, done: int, total: int) -> None:
        """After each step of the background work (its thread): the bar, and the overview
        at most every :data:`REDRAW_SECONDS`."""
        self.progress.max = max(total, 1)
        self.progress.value = min(done, total)
        self.progress.layout.visibility = "hidden" if done >= total else "visible"
        now = time.monotonic()
        if done >= total or now - self._drawn_at >= REDRAW_SECONDS:
            self._drawn_at = now
            self.draw_overview()
        if self._on_statistics is not None:
            self._on_statistics()

    def _on_session_change(self, session: ModelSession, what: str) -> None:
        if what == "selection":
            self.selected = session.selection
        elif what in ("values", "structure"):
            self._work_on_the_shown_store()
            if self.statistics_work is not None:  # a few layers (an edit): computed now
                if self.statistics_store().compute_if_small(session.tree.variables()) \
                        and self._on_statistics is not None:
                    self._on_statistics()
            self.draw_overview()
            try:
                self.draw_selection()
            except KeyError:  # the selected layer is gone
                self.selected = ""

    # the figure, by the names the two parts had when they were two figures
    @property
    def selection_figure(self) -> StatefulFigure:
        return self.figure

    @property
    def overview_figure(self) -> StatefulFigure:
        return self.figure

    @property
    def selection_traces(self) -> tuple:
        """The histogram bars of the selection (the overview heatmap left out)."""
        return tuple(t for t in self.figure.data if t.type == "bar")

    # -- layout ----------------------------------------------------------------------------
    def _base_layout(self) -> dict[str, Any]:
        overview_px = ov.overview_height(self.overview) if self.overview is not None else 0
        gap = GAP_PX if overview_px else 0
        plot_px = SELECTION_PX + gap + overview_px
        layout: dict[str, Any] = dict(
            height=plot_px + MARGIN["t"] + MARGIN["b"], width=FIGURE_WIDTH, margin=MARGIN,
            barmode="overlay", dragmode="pan",
            title=dict(text="Select a layer or variable", font=dict(size=13)),
            legend=dict(orientation="h", yanchor="top", x=0,
                        y=(overview_px + gap - 26) / plot_px if overview_px else -0.15),
            xaxis=dict(anchor="y", fixedrange=True),
            yaxis=dict(domain=[(overview_px + gap) / plot_px, 1], fixedrange=True),
        )
        if overview_px:
            layout.update(ov.overview_layout(self.overview))
            layout["xaxis2"]["anchor"] = "y2"
            layout["yaxis2"]["domain"] = [0, overview_px / plot_px]
            layout["yaxis2"]["anchor"] = "x2"
            layout["annotations"] = [dict(
                text=ov.OVERVIEW_TITLE, xref="paper", yref="paper", x=0, xanchor="left",
                y=overview_px / plot_px, yshift=6, yanchor="bottom", showarrow=False,
                font=dict(size=12))]
        return layout

    # -- selection -------------------------------------------------------------------------
    @traitlets.observe("selected", "log_y", "shared_bins", "effective")
    def _redraw(self, change: Any) -> None:
        try:
            self.draw_selection(mark=change["name"] == "selected")
        except KeyError:  # not a layer or variable of this model (any more): draw nothing
            self.selected = ""
            return
        if change["name"] == "selected":  # e.g. a click in the overview: every view follows
            self.session.select(change["new"])

    def _selection_stats(self) -> tuple[str, dict[str, WeightStats], int]:
        """(title, statistics of what the figure draws, how many variables were selected)."""
        path = self.selected
        kept = self.statistics_store()  # each variable's own bins: kept until it changes
        try:
            var = self.tree.find_variable(path)
            return var.path, kept.of([var]), 1
        except KeyError:
            pass
        node: Node = self.tree.find(path)
        selected = node.all_variables()
        variables = selected[:MAX_OVERLAY]  # only what the figure draws
        if not variables:
            return node.path, {}, 0
        per_var = kept.of(variables)
        if not self.shared_bins or len(variables) == 1:
            return node.path, per_var, len(selected)
        lows = [s.min for s in per_var.values() if s.min is not None]
        highs = [s.max for s in per_var.values() if s.max is not None]
        if not (lows and highs and min(lows) < max(highs)):
            return node.path, per_var, len(selected)
        value_range = (min(lows), max(highs))  # one shared range: a second pass, over them only
        try:
            shared = weight_stats(variables, bins=self.bins, value_range=value_range,
                                  effective=self.effective)
        except ValueError:  # a range float64 edges cannot split: each variable's own bins
            return node.path, per_var, len(selected)
        return node.path, shared, len(selected)

    def draw_selection(self, mark: bool = True) -> None:
        """Redraw the selection histogram in place (no new widget); with ``mark``, also frame
        the selected layer in the overview and bring it into view."""
        with self._draw_lock:
            self._draw_selection(mark)

    def _draw_selection(self, mark: bool) -> None:
        fig = self.figure
        keep = tuple(t for t in fig.data if t.type != "bar")  # the overview heatmap
        if not self.selected:
            with fig.batch_update():
                fig.data = keep
                fig.layout.title.text = "Select a layer or variable"
            fig.keep_state()
            return
        title, stats, total = self._selection_stats()
        with fig.batch_update():
            fig.data = keep
            drawn = [(p, s) for p, s in list(stats.items())[:MAX_OVERLAY] if s.counts.size]
            for path, s in drawn:
                centers = (s.edges[:-1] + s.edges[1:]) / 2
                label = "/".join(path.split("/")[-2:])
                fig.add_bar(x=centers, y=s.counts, name=html.escape(label),
                            opacity=0.6 if len(stats) > 1 else 1.0, xaxis="x", yaxis="y",
                            width=float(s.edges[1] - s.edges[0]),
                            showlegend=len(drawn) <= MAX_LEGEND)
            title = html.escape(title)
            shown = f"first {len(stats)} of {total}" if total > len(stats) else f"{total}"
            fig.layout.title.text = (f"{title}: {shown} variable(s)" if stats
                                     else f"{title}: no weights")
            fig.layout.yaxis.type = "log" if self.log_y else "linear"
            if mark and self.overview is not None and self.overview.names:
                row = self.overview.row_of(self.selected)
                marked = ov.overview_layout(self.overview, row)
                fig.layout.shapes = marked["shapes"]
                if row is not None:
                    fig.layout.yaxis2.range = marked["yaxis2"]["range"]
        fig.keep_state()

    # -- overview --------------------------------------------------------------------------
    def _compute_overview(self) -> ov.Overview:
        """The heatmap's rows from the statistics known now (the background work fills in
        the rest, and each step redraws): no weight is read here."""
        known = self.statistics_store().known(self.tree.variables())
        return ov.build_overview(self.tree, known, bins=min(self.bins, ov.OVERVIEW_BINS))

    def _overview_traces(self) -> list[dict[str, Any]]:
        if self.overview is None or not self.overview.names:
            return []
        return [ov.heatmap_trace(self.overview)]

    def _on_overview_click(self, _trace: Any, points: Any, _state: Any) -> None:
        """A click on a layer's row selects that layer (the explorer follows)."""
        if self.overview is None or not points.ys:
            return
        labels = [html.escape(n) for n in self.overview.names]
        try:
            row = labels.index(points.ys[0])
        except ValueError:
            return
        self.selected = self.overview.paths[row]

    def draw_overview(self) -> None:
        """Redraw the overview in place from the statistics known now."""
        if self.overview is None:
            return
        with self._draw_lock:
            self.overview = self._compute_overview()
            trace = ov.heatmap_trace(self.overview)
            heatmaps = [t for t in self.figure.data if t.type == "heatmap"]
            with self.figure.batch_update():
                if heatmaps:
                    heatmaps[0].update(z=trace["z"], x=trace["x"], y=trace["y"])
            self.figure.keep_state()

    def refresh(self) -> None:
        """Recompute after the weights changed (training, ``set_weights``): every view of
        the model follows."""
        self.session.update("values")
