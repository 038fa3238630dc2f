"""``TrainingPanel``: the live view of a :func:`hubwidgets.watch` callback.

Three plotly figures (:class:`~hubwidgets.widgets.figure.StatefulFigure`), created once and
updated in place while ``fit`` runs (each update is one state change per figure, which is
what a page reloaded after ``fit``, Voilà or a saved notebook draws too; a view draws once
plotly.js is ready, from the state as it is then, so no early update is lost):

- the loss and metric curves;
- the selected layer's weight distribution over time (a heatmap: intervals across, value
  bins down, counts as colour);
- the update-to-weight ratio ‖Δw‖/‖w‖ of every layer per interval, on a log scale (a layer
  whose ratio is exactly 0, a frozen one, is named in the legend, since log scales have no 0).

After ``fit`` the panel shows the audit of ``callback.diff``: frozen variables that changed
(with the reason) and trainable ones that did not move.
"""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from ..model import watch as watch_module
from ..model.session import ModelSession, existing_session, session_for
from .figure import StatefulFigure
from .keywords import KnownKeywords
from .session_view import SessionView

FIGURE_WIDTH = 440
HEATMAP_BINS = 48  # rows of the heatmap: each interval's histogram re-binned onto them


class TrainingPanel(KnownKeywords, SessionView, widgets.VBox):
    """The live training panel of a watcher (``hubwidgets.watch(model)``); ``refresh()``
    redraws from its history.  ``layer`` selects the heatmap's layer.

    It observes the watched model's session as every view does (``session``: that session,
    found from the callback's model when not given), redrawing at each "training" event of
    its own watcher; closed, it stops and holds neither the callback nor the model."""

    def __init__(self, callback: Any, session: ModelSession | None = None,
                 **kwargs: Any) -> None:
        self.callback = callback
        self.status = widgets.HTML(self._status_text())
        self.layer_picker = widgets.Dropdown(description="Layer", options=[],
                                             layout={"width": "420px"})
        self.layer_picker.observe(self._picked, "value")
        self._auto_pick = True  # follow the default layer until the user picks one
        self._picking = False
        margin = dict(l=50, r=10, t=30, b=30)
        self.curves = StatefulFigure(layout=dict(
            title="Loss and metrics", height=260, width=FIGURE_WIDTH, margin=margin,
            xaxis_title="interval", legend=dict(orientation="h", y=-0.2)))
        self.heatmap = StatefulFigure(layout=dict(
            title="Weight distribution over time", height=260, width=FIGURE_WIDTH,
            margin=margin, xaxis_title="interval", yaxis_title="value"))
        self.ratios = StatefulFigure(layout=dict(
            title="Update ratio ‖Δw‖/‖w‖ per layer", height=300, width=FIGURE_WIDTH,
            margin=margin, xaxis_title="interval", yaxis_type="log",
            legend=dict(font=dict(size=9))))
        self.audit = widgets.HTML("")
        self._last_draw = 0.0
        self._pending = False
        super().__init__([
            self.status,
            widgets.HBox([self.curves, self.ratios], layout={"flex_flow": "row wrap"}),
            self.layer_picker, self.heatmap, self.audit], **kwargs)
        session = session if session is not None else session_for(callback.watched_model)
        self.session = session
        self._stop_observing = session.observe(self._on_session_change, training=True)
        self.refresh()

    def close(self) -> None:
        """Close the panel and its figures; it stops following the session and holds the
        callback no longer, so the model is freed once the user's own references are gone."""
        if self.callback is not None:
            self.callback.forget_panel(self)  # explore() after this makes a new panel
        self.callback = None
        super().close()  # SessionView: stops observing, lets the session go, closes children

    # -- events from the session --------------------------------------------------------
    def _on_session_change(self, session: ModelSession, what: str) -> None:
        if what == "training" and session.training_event is not None:
            watcher, event = session.training_event
            if watcher is self.callback and watcher is not None:
                self._on_event(event)

    def _on_event(self, event: str) -> None:
        now = time.monotonic()
        if event == "interval" and now - self._last_draw < self.callback.min_refresh_s:
            self._pending = True  # drawn with the next interval, or at the end
            return
        self.refresh()

    def refresh(self) -> None:
        """Redraw every figure from the callback's history (in place)."""
        self._last_draw = time.monotonic()
        self._pending = False
        history = self.callback.history
        layers = list(history.layers)
        self._picking = True
        try:
            current = self.layer_picker.value
            if list(self.layer_picker.options) != layers:
                self.layer_picker.options = layers
            if layers and (self._auto_pick or current not in layers):
                self.layer_picker.value = _default_layer(history)
            elif current in layers:
                self.layer_picker.value = current
        finally:
            self._picking = False
        self.status.value = self._status_text()
        self._draw_curves()
        self._draw_ratios()
        self._draw_heatmap()
        for figure in (self.curves, self.ratios, self.heatmap):
            figure.keep_state()
        self.audit.value = audit_html(self.callback.diff) if not self.callback.running else ""

    def _picked(self, _change: Any) -> None:
        if not self._picking:
            self._auto_pick = False
            self._draw_heatmap()
            self.heatmap.keep_state()

    # -- figures -----------------------------------------------------------------------------
    def _draw_curves(self) -> None:
        logs = self.callback.history.logs_arrays()
        with self.curves.batch_update():
            _sync_traces(self.curves, list(logs), "scatter")
            for trace, (name, values) in zip(self.curves.data, logs.items(), strict=True):
                trace.x = np.arange(values.size)
                trace.y = values
                trace.name = html.escape(name)
                trace.mode = "lines+markers"

    def _draw_ratios(self) -> None:
        history = self.callback.history
        layers = list(history.layers)
        with self.ratios.batch_update():
            _sync_traces(self.ratios, layers, "scatter")
            for trace, path in zip(self.ratios.data, layers, strict=True):
                records = history.layer(path)
                ratios = np.array([r.update_ratio for r in records], dtype=float)
                zero = ratios.size > 0 and bool(np.all(ratios == 0))
                trace.x = [r.interval for r in records]
                trace.y = np.where(ratios > 0, ratios, np.nan)
                trace.name = html.escape(_short(path, history) + (" (0: no update)" if zero
                                                                  else ""))
                trace.mode = "lines+markers"

    def _draw_heatmap(self) -> None:
        path = self.layer_picker.value
        records = self.callback.history.layer(path) if path else []
        with self.heatmap.batch_update():
            _sync_traces(self.heatmap, ["heatmap"] if records else [], "heatmap")
            if not records:
                self.heatmap.layout.title = "Weight distribution over time"
                return
            z, centers = heatmap_grid(records, HEATMAP_BINS)
            trace = self.heatmap.data[0]
            trace.z = z
            trace.x = [r.interval for r in records]
            trace.y = centers
            trace.colorscale = "Viridis"
            self.heatmap.layout.title = f"{html.escape(path)}: weights over time"

    def _status_text(self) -> str:
        cb = self.callback
        history = cb.history
        state = "training" if cb.running else (
            "interrupted" if getattr(cb, "interrupted", False) else
            "done" if history.intervals else "waiting for fit")
        every = "epoch" if cb.every == "epoch" else f"{cb.every} steps"
        last = {k: v[-1] for k, v in history.logs.items() if v}
        shown = " · ".join(f"{html.escape(k)} {v:.4g}" for k, v in list(last.items())[:4])
        return (f"<b>Training</b> ({state}) · every {every} · {history.intervals} intervals · "
                f"{len(history.layers)} layers" + (f" · {shown}" if shown else ""))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self.callback)
        return bundle


def heatmap_grid(records: list[Any], bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Each interval's histogram (its own edges) re-binned onto one grid spanning them all,
    assuming values spread evenly inside a bin: returns (bins x intervals counts, centers)."""
    lo = min(float(r.edges[0]) for r in records)
    hi = max(float(r.edges[-1]) for r in records)
    grid = np.linspace(lo, hi if hi > lo else lo + 1e-12, bins + 1)
    columns = []
    for r in records:
        cumulative = np.concatenate([[0.0], np.cumsum(r.counts, dtype=np.float64)])
        columns.append(np.diff(np.interp(grid, r.edges, cumulative)))
    return np.array(columns).T, (grid[:-1] + grid[1:]) / 2


def audit_html(d: Any) -> str:
    """The audit of a WeightDiff as HTML (escaped): what changed that should not have, what
    did not move that should have, and why."""
    if d is None:
        return ""
    parts = [f"<b>After fit</b>: {len(d.changed)} of {len(d)} variables changed."]
    frozen = [r for r in d.values() if r.frozen]
    if frozen:
        still = sum(not r.changed for r in frozen)
        parts.append(f"Frozen variables unchanged bit for bit: {still} of {len(frozen)}.")
    for title, items in (("Frozen or non-trainable variables that changed", d.frozen_changed),
                         ("Trainable variables that did not move", d.trainable_unchanged),
                         ("Frozen by design, unchanged bit for bit",
                          getattr(d, "frozen_by_design", []))):
        if items:
            rows = "".join(f"<li><code>{html.escape(i.path)}</code>: {html.escape(i.reason)}"
                           + (f" <i>To stop it:</i> {html.escape(i.fix)}" if i.fix else "")
                           + "</li>" for i in items[:20])
            more = f"<li>... and {len(items) - 20} more</li>" if len(items) > 20 else ""
            parts.append(f"<b>{title} ({len(items)})</b><ul>{rows}{more}</ul>")
    return "<div style='font-size:12px'>" + "<br>".join(parts) + "</div>"


def training_panel_for(model: Any) -> TrainingPanel | None:
    """The training panel of a watched model (its latest ``hubwidgets.watch``), or None when
    the model was never watched.  ``model``: the model, its tree or its session.  The
    dashboard adds it as a "Training" tab."""
    session = model if isinstance(model, ModelSession) else existing_session(model)
    callback = session.watcher if session is not None else None
    if callback is None:
        return None
    if callback.panel_factory is None:  # made by hubwidgets.model.watch.watch
        callback.panel_factory = TrainingPanel
    return callback.panel


def _default_layer(history: Any) -> str:
    """The last layer whose update ratio is not all zero (a head in fine-tuning), else the
    first layer."""
    for path in reversed(history.layers):
        if any(r.update_ratio > 0 for r in history.layer(path)):
            return path
    return history.layers[0]


def _short(path: str, history: Any) -> str:
    root = path.split("/", 1)[0]
    return path[len(root) + 1:] if all(p.startswith(root + "/") for p in history.layers) else path


def _sync_traces(fig: StatefulFigure, names: list[str], kind: str) -> None:
    """Exactly one trace per name, added or dropped at the end (never all recreated)."""
    have = len(fig.data)
    if have > len(names):
        fig.data = fig.data[:len(names)]
    for _ in range(have, len(names)):
        fig.add_trace(go.Heatmap() if kind == "heatmap" else go.Scatter())


def watch(model: Any, every: str | int = "epoch", **options: Any) -> Any:
    """See :func:`hubwidgets.model.watch.watch` (this is it, with the panel that displays the
    callback loaded)."""
    callback = watch_module.watch(model, every, **options)
    callback.panel_factory = TrainingPanel  # displayed (the cell's last value): its panel
    return callback


watch.__doc__ = watch_module.watch.__doc__
