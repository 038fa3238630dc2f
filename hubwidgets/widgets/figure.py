"""``StatefulFigure``: a plotly figure as a small anywidget of our own.

plotly's ``FigureWidget`` stores its whole 5 MB JavaScript bundle in every figure's widget
state (three dashboards saved with widget state: 15.5 MB), sends later changes as one-off
messages that a view still loading plotly.js can miss, and only kept its state through a
private plotly method.  Here the Python side is a plain ``go.Figure`` (the same API: ``data``,
``layout``, ``add_bar``, ``batch_update`` ...), the widget's state is the figure's JSON
(numpy arrays as plotly's base64 typed arrays), and plotly.js travels in one
:class:`PlotlyBundle` widget per kernel that every figure refers to: once in a page, once in
a saved notebook.  The view draws whatever the state is once plotly.js is ready.

The state is two traits, so that a small change sends only itself: ``figure`` (a base:
data and layout) and ``patch`` (what differs from the base: replaced or added traces, changed
layout keys).  A change smaller than half the figure goes in ``patch`` alone (a weight plot's
new selection: its bars, title and frame, not the whole-model overview it sits on); a larger
one becomes the new base.  :func:`drawn_figure` is what a view draws from the two.

The state carries no colours of a theme: each view reads its page's theme (light or dark,
JupyterLab's CSS variables) and styles its own plotly layout, again when the theme changes,
so two views in different themes do not overwrite each other.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anywidget
import plotly.graph_objects as go
import plotly.io as pio
import traitlets

from .keywords import KnownKeywords

STATIC = Path(__file__).parent / "static"
ClickCallback = Callable[[Any, Any, Any], None]  # (trace, points, state), as plotly's on_click


class PlotlyBundle(KnownKeywords, anywidget.AnyWidget):
    """plotly.js itself, once per kernel: the figures' views evaluate it once per page."""

    _esm = "export default { render() {} };"
    plotly_js = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Unicode("").tag(sync=True)

    _shared: PlotlyBundle | None = None

    @classmethod
    def shared(cls) -> PlotlyBundle:
        """The kernel's one bundle (made again if it was closed)."""
        bundle = cls._shared
        if bundle is None or getattr(bundle, "comm", None) is None:
            from plotly.offline import get_plotlyjs, get_plotlyjs_version

            bundle = cls(plotly_js=get_plotlyjs(), version=get_plotlyjs_version())
            cls._shared = bundle
        return bundle


def figure_json(figure: go.Figure) -> dict[str, Any]:
    """The figure as plotly.js reads it: ``{"data": [...], "layout": {...}}``, without a
    template (each view applies its page's theme as the template)."""
    drawn = json.loads(pio.to_json(figure, validate=False, engine="json"))
    drawn.setdefault("data", [])
    drawn.setdefault("layout", {}).pop("template", None)
    return drawn


def figure_patch(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What turns ``base`` into ``new``: ``data`` (``new``'s traces, ``None`` where the
    base's trace at that index is the same), ``layout`` (the top-level keys whose value
    changed) and ``removed`` (the layout keys ``new`` no longer has); empty when equal."""
    patch: dict[str, Any] = {}
    old_data, data = base.get("data", []), new.get("data", [])
    if data != old_data:
        patch["data"] = [None if i < len(old_data) and trace == old_data[i] else trace
                         for i, trace in enumerate(data)]
    old_layout, layout = base.get("layout", {}), new.get("layout", {})
    changed = {k: v for k, v in layout.items() if k not in old_layout or old_layout[k] != v}
    if changed:
        patch["layout"] = changed
    removed = [k for k in old_layout if k not in layout]
    if removed:
        patch["removed"] = removed
    return patch


def drawn_figure(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The figure a view draws from the ``figure`` and ``patch`` traits (figure.js does the
    same)."""
    data = list(base.get("data", []))
    if isinstance(patch.get("data"), list):
        data = [trace if trace is not None else data[i]
                for i, trace in enumerate(patch["data"]) if trace is not None or i < len(data)]
    layout = {k: v for k, v in base.get("layout", {}).items()
              if k not in patch.get("removed", ())}
    layout.update(patch.get("layout", {}))
    return {"data": data, "layout": layout}


class StatefulFigure(KnownKeywords, anywidget.AnyWidget):
    """A plotly figure whose widget state is the figure (``figure``, a base of data and
    layout JSON, and ``patch``, what changed since: see :func:`drawn_figure`).

    Change it through the ``go.Figure`` API (``fig.data``, ``fig.layout``, ``fig.add_bar``,
    ``fig.add_trace``); :meth:`batch_update` and :meth:`keep_state` send the result as one
    state change, which also makes it what a saved notebook, Voilà or a later view draws.
    ``on_click(callback)`` is called as plotly's ``trace.on_click`` callbacks are.
    """

    _esm = STATIC / "figure.js"
    figure = traitlets.Dict().tag(sync=True)
    patch = traitlets.Dict().tag(sync=True)
    bundle = anywidget.WidgetTrait().tag(sync=True)

    def __init__(self, data: Any = None, layout: Any = None, **kwargs: Any) -> None:
        self._figure = go.Figure(data=data, layout=layout)
        self._click: list[tuple[ClickCallback, str | None]] = []
        # the figure travels in the widget's opening message: no update to miss
        super().__init__(figure=figure_json(self._figure), bundle=PlotlyBundle.shared(),
                         **kwargs)
        self.on_msg(self._on_front_end_message)

    # -- the go.Figure API --------------------------------------------------------------------
    @property
    def data(self) -> tuple:
        return self._figure.data

    @data.setter
    def data(self, traces: Any) -> None:
        self._figure.data = traces

    @property
    def layout(self) -> go.Layout:
        return self._figure.layout

    @layout.setter
    def layout(self, layout: Any) -> None:
        self._figure.layout = layout

    def add_trace(self, trace: Any, **kwargs: Any) -> Any:
        return self._figure.add_trace(trace, **kwargs)

    def add_bar(self, **kwargs: Any) -> Any:
        return self._figure.add_bar(**kwargs)

    def add_heatmap(self, **kwargs: Any) -> Any:
        return self._figure.add_heatmap(**kwargs)

    def update_layout(self, *args: Any, **kwargs: Any) -> Any:
        return self._figure.update_layout(*args, **kwargs)

    @contextmanager
    def batch_update(self) -> Iterator[None]:
        """Changes made inside reach the browser as one state change, at the end."""
        with self._figure.batch_update():
            yield
        self.keep_state()

    def keep_state(self) -> None:
        """Copy the figure into the widget state (sent only when it changed): as a patch
        when the change is smaller than half the figure, else as a new base."""
        new = figure_json(self._figure)
        patch = figure_patch(self.figure, new)
        if len(json.dumps(patch)) * 2 <= len(json.dumps(new)):
            self.patch = patch
            return
        with self.hold_sync():  # one message: the new base, and no patch over it
            self.figure = new
            self.patch = {}

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """State from the front end: the figure is the kernel's to send, never the
        browser's (its views send clicks), so ``figure`` and ``patch`` from there are
        dropped."""
        super().set_state({k: v for k, v in sync_data.items() if k not in ("figure", "patch")})

    @property
    def drawn(self) -> dict[str, Any]:
        """The figure its views draw now (``figure`` with ``patch`` applied)."""
        return drawn_figure(self.figure, self.patch)

    def to_figure(self) -> go.Figure:
        """A copy of the figure as a plain ``go.Figure``."""
        return go.Figure(self._figure)

    # -- clicks -------------------------------------------------------------------------------
    def on_click(self, callback: ClickCallback, trace_type: str | None = None) -> None:
        """Call ``callback(trace, points, state)`` when a point is clicked in the browser
        (only on traces of ``trace_type``, e.g. "heatmap", when given)."""
        self._click.append((callback, trace_type))

    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """A click, checked before anything reads it: known trace, scalar coordinates."""
        from plotly.callbacks import Points

        if not isinstance(content, dict) or content.get("event") != "click":
            return
        points = content.get("points")
        if not isinstance(points, list) or not points or len(points) > 10_000:
            return
        first = points[0]
        if not isinstance(first, dict):
            return
        curve = first.get("curve")
        if not isinstance(curve, int) or isinstance(curve, bool) or not 0 <= curve < len(self.data):
            return
        scalar = (str, numbers.Real)
        picked = [p for p in points if isinstance(p, dict) and p.get("curve") == curve
                  and isinstance(p.get("x"), scalar) and isinstance(p.get("y"), scalar)]
        if not picked:
            return
        trace = self.data[curve]
        hit = Points(point_inds=[p.get("index") for p in picked], xs=[p["x"] for p in picked],
                     ys=[p["y"] for p in picked], trace_name=getattr(trace, "name", None),
                     trace_index=curve)
        for callback, trace_type in list(self._click):
            if trace_type is None or trace.type == trace_type:
                callback(trace, hit, None)
