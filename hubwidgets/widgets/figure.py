"""``StatefulFigure``: a plotly figure as a small anywidget of our own.

plotly's ``FigureWidget`` stores its whole 5 MB JavaScript bundle in every figure's widget
state (three dashboards saved with widget state: 15.5 MB), sends later changes as one-off
messages that a view still loading plotly.js can miss, and only kept its state through a
private plotly method.  Here the Python side is a plain ``go.Figure`` (the same API: ``data``,
``layout``, ``add_bar``, ``batch_update`` ...), the widget's state is the figure's JSON
(numpy arrays as plotly's base64 typed arrays), and plotly.js travels in one
:class:`PlotlyBundle` widget per kernel that every figure refers to: once in a page, once in
a saved notebook.  The view draws whatever the state is once plotly.js is ready.
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
    """The figure as plotly.js reads it: ``{"data": [...], "layout": {...}}``."""
    return json.loads(pio.to_json(figure, validate=False, engine="json"))


class StatefulFigure(KnownKeywords, anywidget.AnyWidget):
    """A plotly figure whose widget state is the figure (``figure``: data and layout JSON).

    Change it through the ``go.Figure`` API (``fig.data``, ``fig.layout``, ``fig.add_bar``,
    ``fig.add_trace``); :meth:`batch_update` and :meth:`keep_state` send the result as one
    state change, which also makes it what a saved notebook, Voilà or a later view draws.
    ``on_click(callback)`` is called as plotly's ``trace.on_click`` callbacks are.
    """

    _esm = STATIC / "figure.js"
    figure = traitlets.Dict().tag(sync=True)
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
        """Copy the figure into the widget state (sent only when it changed)."""
        self.figure = figure_json(self._figure)

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
