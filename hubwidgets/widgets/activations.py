"""``ActivationsPanel``: what a model does to one batch (a :class:`~hubwidgets.model.probe.Probe`).

Three plotly figures, each one ``FigureWidget`` updated in place and kept in its widget
state (see :class:`~hubwidgets.widgets.figure.StatefulFigure`):

- the layers' activation distributions, one heatmap row per layer (value bins across,
  colour = density), like the weights' overview; dead and saturated layers are marked on
  their row's label;
- with targets, the gradient norm per layer as bars; frozen layers are at zero, grey and
  marked ❄: the picture that proves a freeze;
- the feature maps of one sample for a selected convolution (or any layer whose output is
  ``(batch, height, width, channels)``), as a grid of channel images.

Only reduced figures cross to the browser, except the feature maps of the one sample shown.
A click on a row of the heatmap selects the layer for every view of the model.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets

from ..model.probe import MARKS_KEY, Probe, probe
from ..model.session import ModelSession, session_for
from . import overview as ov
from .figure import StatefulFigure
from .keywords import KnownKeywords
from .session_view import SessionView

ROW_PX = 16
MAX_ROWS_SHOWN = 40
HEAT_BINS = 40
MAX_MAPS = 32  # channels drawn in the feature-map grid
DEAD_MARK = "☠"
SATURATED_MARK = "◐"
FROZEN_MARK = "❄"
MARK_AT = 0.5  # a layer is marked when at least this share is dead or saturated
TRAINED_COLOUR = "#1f77b4"
FROZEN_COLOUR = "#9e9e9e"


def as_probe(model: Any, probe_or_batch: Any) -> Probe:
    """A :class:`Probe` from what ``explore(model, probe=...)`` accepts: a Probe, a batch
    ``x``, or ``(x, y)``."""
    if isinstance(probe_or_batch, Probe):
        return probe_or_batch
    if isinstance(probe_or_batch, tuple) and len(probe_or_batch) == 2:
        x, y = probe_or_batch
        return probe(model, x, y)
    return probe(model, probe_or_batch)


def row_label(name: str, stats: Any) -> str:
    """A heatmap row's label: the layer's name, with its dead and saturated marks (escaped)."""
    marks = []
    if stats.dead_fraction >= MARK_AT:
        marks.append(f"{DEAD_MARK} {stats.dead_fraction:.0%} dead")
    if stats.saturated_fraction is not None and stats.saturated_fraction >= MARK_AT:
        marks.append(f"{SATURATED_MARK} {stats.saturated_fraction:.0%} saturated")
    return html.escape(name) + (f"  {' · '.join(marks)}" if marks else "")


def activation_heatmap(result: Probe, root: str, bins: int = HEAT_BINS) -> dict[str, Any]:
    """Rows (layers, in the order they ran), shared value bins covering the 1st-99th
    percentile of every row, density per row scaled to 100 at its fullest bin."""
    paths = [p for p, s in result.layers.items() if p != root and s.counts.size]
    rows = [result.layers[p] for p in paths]
    low = high = 0.0
    for s in rows:
        lo, hi = ov._quantiles(s, (0.01, 0.99))
        low, high = min(low, lo), max(high, hi)
    if not high > low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    density = np.zeros((len(rows), bins), dtype=np.uint8)
    for i, s in enumerate(rows):
        row = ov.rebin(s, edges)
        if row.max() > 0:
            density[i] = np.round(100 * row / row.max()).astype(np.uint8)
    names = [p[len(root) + 1:] if p.startswith(root + "/") else p for p in paths]
    return {"paths": paths, "labels": [row_label(n, s) for n, s in zip(names, rows)],
            "centers": np.round((edges[:-1] + edges[1:]) / 2, 6), "density": density}


def gradient_bars(result: Probe, root: str) -> dict[str, Any]:
    """One bar per layer holding variables: its gradient norm (0 where frozen or none)."""
    if result.gradients is None:
        return {"labels": [], "norms": [], "colours": [], "texts": []}
    labels, norms, colours, texts = [], [], [], []
    for layer, (norm, frozen) in result.layer_gradients().items():
        name = layer[len(root) + 1:] if layer.startswith(root + "/") else layer
        labels.append(html.escape(name) + (f" {FROZEN_MARK}" if frozen else ""))
        norms.append(0.0 if norm is None or frozen else norm)
        colours.append(FROZEN_COLOUR if frozen else TRAINED_COLOUR)
        texts.append("frozen" if frozen else ("no gradient" if norm is None else f"{norm:.3g}"))
    return {"labels": labels, "norms": norms, "colours": colours, "texts": texts}


def feature_map_grid(value: np.ndarray, sample: int = 0,
                     max_maps: int = MAX_MAPS) -> tuple[np.ndarray, int, int]:
    """One sample's ``(height, width, channels)`` maps tiled in a grid (NaN between tiles):
    (image, columns, channels drawn)."""
    maps = value[sample]
    channels = min(maps.shape[-1], max_maps)
    columns = int(np.ceil(np.sqrt(channels)))
    rows = int(np.ceil(channels / columns))
    h, w = maps.shape[0], maps.shape[1]
    image = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan, dtype=np.float32)
    for c in range(channels):
        r, k = divmod(c, columns)
        image[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = maps[..., c]
    return image, columns, channels


class ActivationsPanel(KnownKeywords, SessionView, widgets.VBox):
    """The probe of a model on one batch: activation heatmap, gradient bars, feature maps.

    ``probe`` is a :class:`~hubwidgets.model.probe.Probe`, a batch ``x`` or ``(x, y)``.
    ``feature_layer`` is the layer whose feature maps are drawn (a convolution's path), and
    ``sample`` the sample of the batch.
    """

    feature_layer = traitlets.Unicode("")
    sample = traitlets.Int(0)

    def __init__(self, model: Any, probe: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hw-activations")
        self.session: ModelSession = session_for(model)
        self._probe = dataclasses.replace(as_probe(self.session.model, probe), model=None)
        self.session.cache.put(MARKS_KEY, self._probe.marks(MARK_AT), depends_on=["values"])
        self.root = self.session.tree.root.path
        self.heatmap = activation_heatmap(self.result, self.root)
        self.activations_figure = StatefulFigure(data=self._heatmap_traces(),
                                                 layout=self._heatmap_layout())
        self.activations_figure.on_click(self._on_row_click, trace_type="heatmap")
        self.bars = gradient_bars(self.result, self.root)
        self.gradients_figure = StatefulFigure(data=self._bar_traces(), layout=self._bar_layout())
        self.maps_figure = StatefulFigure(layout=dict(height=360, width=480,
                                                      margin=dict(l=10, r=10, t=40, b=10)))
        spatial = self.spatial_layers()
        self.layer_picker = widgets.Dropdown(
            options=[(p[len(self.root) + 1:] or p, p) for p in spatial], description="maps of",
            layout={"width": "360px"})
        batch = max(self.result.batch - 1, 0)
        self.sample_picker = widgets.BoundedIntText(value=0, min=0, max=batch,
                                                    description="sample",
                                                    layout={"width": "160px"})
        if spatial:  # an empty picker's value is None, which no path is
            widgets.link((self.layer_picker, "value"), (self, "feature_layer"))
        widgets.link((self.sample_picker, "value"), (self, "sample"))
        summary = widgets.HTML(f"<pre>{html.escape(self.result.summary())}</pre>",
                               layout={"max_height": "240px", "overflow": "auto"})
        parts: list[widgets.Widget] = [self.activations_figure]
        if self.result.gradients is not None:
            parts.append(self.gradients_figure)
        if spatial:
            parts += [widgets.HBox([self.layer_picker, self.sample_picker]), self.maps_figure]
        self.children = [widgets.HBox(parts[:2], layout={"flex_flow": "row wrap"}),
                         *parts[2:], summary]
        if spatial:
            self.feature_layer = spatial[0]
        self._follow(self.session)

    @property
    def result(self) -> Probe:
        """The probe this panel shows, bound to the live model.  The panel keeps it without
        the model (the session holds that, weakly once the panel is closed or cleared), so
        a panel never keeps a model alive on its own."""
        return dataclasses.replace(self._probe, model=self.session.model)

    def spatial_layers(self) -> list[str]:
        """Paths of the probed layers whose output is ``(batch, height, width, channels)``,
        convolutions first."""
        four_d = [p for p, s in self.result.layers.items() if len(s.shape) == 4 and p != self.root]
        convs = [p for p in four_d if "Conv" in type(self._layer(p)).__name__]
        return convs + [p for p in four_d if p not in convs]

    def _layer(self, path: str) -> Any:
        try:
            return self.session.tree.find(path).obj
        except KeyError:
            return None

    @property
    def figures(self) -> list[StatefulFigure]:
        """The panel's three figures."""
        return [self.activations_figure, self.gradients_figure, self.maps_figure]

    # -- heatmap ---------------------------------------------------------------------------
    def _heatmap_traces(self) -> list[dict[str, Any]]:
        h = self.heatmap
        if not h["paths"]:
            return []
        return [dict(type="heatmap", z=h["density"], x=h["centers"], y=h["labels"],
                     colorscale="Viridis", zmin=0, zmax=100, showscale=False, ygap=1,
                     name="activations",
                     hovertemplate="%{y}<br>activations near %{x:.3g}: %{z}% of the "
                                   "layer's peak<extra></extra>")]

    def _heatmap_layout(self) -> dict[str, Any]:
        n = len(self.heatmap["paths"])
        shown = min(max(n, 4), MAX_ROWS_SHOWN)
        return dict(height=ROW_PX * shown + 90, width=520, dragmode="pan",
                    margin=dict(l=10, r=10, t=40, b=50),
                    title=dict(text=f"Activations on a batch of {self.result.batch}",
                               font=dict(size=13)),
                    xaxis=dict(title=dict(text="activation value · colour: density per layer",
                                          font=dict(size=11)), fixedrange=True),
                    yaxis=dict(range=[shown - 0.5, -0.5], automargin=True, dtick=1,
                               tickfont=dict(size=10)))

    def _on_row_click(self, _trace: Any, points: Any, _state: Any) -> None:
        if not points.ys:
            return
        try:
            row = self.heatmap["labels"].index(points.ys[0])
        except ValueError:
            return
        self.session.select(self.heatmap["paths"][row])

    # -- gradients -------------------------------------------------------------------------
    def _bar_traces(self) -> list[dict[str, Any]]:
        b = self.bars
        if not b["labels"]:
            return []
        return [dict(type="bar", orientation="h", x=b["norms"], y=b["labels"],
                     marker=dict(color=b["colours"]), text=b["texts"],
                     textposition="outside", cliponaxis=False,  # "frozen" shows at zero
                     name="gradient norm",
                     hovertemplate="%{y}: %{text}<extra></extra>")]

    def _bar_layout(self) -> dict[str, Any]:
        n = len(self.bars["labels"])
        shown = min(max(n, 4), MAX_ROWS_SHOWN)
        loss = f" (loss {self.result.loss:.4g})" if self.result.loss is not None else ""
        return dict(height=ROW_PX * shown + 90, width=420, margin=dict(l=10, r=10, t=40, b=50),
                    title=dict(text=f"Gradient norm per layer{loss}", font=dict(size=13)),
                    xaxis=dict(title=dict(text=f"L2 norm · {FROZEN_MARK} frozen: zero",
                                          font=dict(size=11)), rangemode="tozero"),
                    yaxis=dict(range=[shown - 0.5, -0.5], automargin=True, dtick=1,
                               tickfont=dict(size=10)))

    # -- feature maps ----------------------------------------------------------------------
    @traitlets.observe("feature_layer", "sample")
    def _on_maps_change(self, _change: Any) -> None:
        self.draw_feature_maps()

    def draw_feature_maps(self) -> None:
        """Draw the feature maps of ``feature_layer`` for ``sample`` (the layer's output is
        computed again for this: one activation, never all of them)."""
        fig = self.maps_figure
        if not self.feature_layer:
            return
        value = self.result.activation(self.feature_layer)
        sample = min(max(self.sample, 0), value.shape[0] - 1)
        image, columns, channels = feature_map_grid(value, sample)
        name = html.escape(self.feature_layer[len(self.root) + 1:] or self.feature_layer)
        with fig.batch_update():
            fig.data = ()
            # the gaps between tiles are None (JSON has no NaN): plotly leaves them blank
            z = [[None if np.isnan(v) else float(v) for v in row] for row in image]
            fig.add_heatmap(z=z, colorscale="Gray", showscale=False, name="maps",
                            hovertemplate="%{z:.3g}<extra></extra>")
            fig.layout.title.text = (f"{name}: {channels} of {value.shape[-1]} channels, "
                                     f"sample {sample}")
            fig.layout.yaxis = dict(autorange="reversed", visible=False, scaleanchor="x")
            fig.layout.xaxis = dict(visible=False)
        fig.keep_state()

    def _on_session_change(self, session: ModelSession, what: str) -> None:
        if what == "selection":
            path = session.selection
            if path in self.spatial_layers() and path != self.feature_layer:
                self.feature_layer = path
