"""StatefulFigure: a plotly figure whose widget state is its JSON, with plotly.js in one shared
PlotlyBundle; clicks from the browser are checked before a callback sees them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from figure_state import state_data, state_layout

import hubwidgets as hw
from hubwidgets.widgets.figure import PlotlyBundle, StatefulFigure

MB = 1024 * 1024


def _state_bytes(widget) -> int:
    return len(json.dumps(widget.get_state(), default=str))


def test_the_state_is_the_figure_and_plotly_js_is_shared():
    from plotly.offline import get_plotlyjs

    one = StatefulFigure(data=[dict(type="heatmap", z=np.arange(6, dtype=np.uint8).reshape(2, 3))],
                         layout=dict(height=200, title=dict(text="<b>x")))
    two = StatefulFigure(layout=dict(height=100))
    [heat] = state_data(one)
    np.testing.assert_array_equal(heat["z"], np.arange(6).reshape(2, 3))
    assert state_layout(one)["title"]["text"] == "<b>x"
    bundle = PlotlyBundle.shared()
    assert one.get_state()["bundle"] == two.get_state()["bundle"] == f"anywidget:{bundle.model_id}"
    assert bundle.plotly_js == get_plotlyjs()
    assert _state_bytes(one) < 20_000 and _state_bytes(two) < 20_000  # no bundle inside


def test_changes_reach_the_state_once_per_batch():
    fig = StatefulFigure(layout=dict(height=100))
    sent = []
    fig.observe(lambda change: sent.append(change["new"]), "figure")
    with fig.batch_update():
        fig.add_bar(x=[1, 2], y=[3, 4], name="a")
        fig.layout.title.text = "t"
    assert len(sent) == 1 and [t["type"] for t in sent[0]["data"]] == ["bar"]
    fig.keep_state()  # nothing changed: nothing sent
    assert len(sent) == 1


def _click(fig, content) -> None:
    """A custom message, as the browser's view sends it."""
    fig._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                     "buffers": []})


@pytest.mark.parametrize("content", [
    "click", None, {"event": "click"}, {"event": "click", "points": []},
    {"event": "click", "points": [{"curve": 9, "x": 0, "y": "b"}]},
    {"event": "click", "points": [{"curve": True, "x": 0, "y": "b"}]},
    {"event": "click", "points": [{"curve": 0, "x": {"a": 1}, "y": "b"}]},
    {"event": "click", "points": [{"curve": 0, "x": 0, "y": ["b"]}]},
    {"event": "hover", "points": [{"curve": 0, "x": 0, "y": "b"}]},
    {"event": "click", "points": ["x"]},
])
def test_a_malformed_click_reaches_no_callback(content):
    fig = StatefulFigure(data=[dict(type="heatmap", z=[[1, 2]], y=["b"])])
    seen = []
    fig.on_click(lambda *args: seen.append(args))
    _click(fig, content)
    assert seen == []


def test_a_click_on_the_overview_selects_its_layer_everywhere(keras):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                              keras.layers.Dense(2, name="<b>")], name="clicks")
    dashboard = hw.explore(model)
    figure = dashboard.weights.figure
    _click(figure, {"event": "click", "points": [{"curve": 0, "index": [1, 3], "x": 0.1,
                                                  "y": "&lt;b&gt;"}]})
    assert dashboard.explorer.selected == "clicks/<b>"
    assert dashboard.session.selection == "clicks/<b>"
    # a click on the selection's bars is not a click on a layer
    _click(figure, {"event": "click", "points": [{"curve": 1, "x": 0.1, "y": 3}]})
    assert dashboard.explorer.selected == "clicks/<b>"
    dashboard.close()


def test_three_dashboards_hold_plotly_js_once(keras):
    """The widgets of three dashboards: one bundle (~4.8 MB), each figure some KB; before,
    each figure's state carried plotly's 5 MB bundle."""
    from ipywidgets import Widget

    keras.utils.set_random_seed(0)
    models = [keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name=f"d{i}"),
                                keras.layers.Dense(4)], name=f"m{i}") for i in range(3)]
    before = set(Widget.widgets)
    dashboards = [hw.explore(m) for m in models]
    PlotlyBundle.shared()
    made = {id(w): w for k, w in Widget.widgets.items() if k not in before}
    made[id(PlotlyBundle.shared())] = PlotlyBundle.shared()  # made by an earlier test, maybe
    total = sum(_state_bytes(w) for w in made.values())
    assert total < 5.5 * MB, total
    assert [w for w in made.values() if _state_bytes(w) > MB] == [PlotlyBundle.shared()]
    for d in dashboards:
        d.close()
