"""StatefulFigure: a plotly figure whose widget state is its JSON, with plotly.js in one shared
PlotlyBundle; clicks from the browser are checked before a callback sees them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from figure_state import state_data, state_layout

import hubwidgets as hw
from hubwidgets.widgets.figure import PlotlyBundle, StatefulFigure, figure_json

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


def _recorded(**kwargs) -> tuple[StatefulFigure, list[dict]]:
    """A figure, and the state of each update it sends from then on, as sent."""
    from recording_comm import recording_comms

    with recording_comms() as recorder:
        fig = StatefulFigure(**kwargs)
    recorder.clear()
    return fig, recorder.messages


def _states(messages: list[dict]) -> list[dict]:
    return [m["state"] for m in messages if m.get("method") == "update"]


def test_changes_reach_the_state_once_per_batch():
    fig, messages = _recorded(layout=dict(height=100))
    with fig.batch_update():
        fig.add_bar(x=[1, 2], y=[3, 4], name="a")
        fig.layout.title.text = "t"
    sent = _states(messages)
    assert len(sent) == 1 and [t["type"] for t in fig.drawn["data"]] == ["bar"]
    assert fig.drawn["layout"]["title"]["text"] == "t"
    fig.keep_state()  # nothing changed: nothing sent
    assert len(_states(messages)) == 1


def test_a_small_change_sends_only_itself_and_a_large_one_a_new_base():
    """A bar and a title over a large heatmap go as a patch (the heatmap is not sent again);
    a new heatmap goes as the new base; the state always draws the figure Python holds."""
    big = np.arange(200 * 40, dtype=np.uint8).reshape(200, 40)
    fig, messages = _recorded(data=[dict(type="heatmap", z=big)], layout=dict(height=300))
    heatmap_bytes = len(json.dumps(fig.figure["data"][0]))

    def check(kind: str) -> None:
        assert fig.drawn == figure_json(fig.to_figure())  # what every view draws
        message = _states(messages)[-1]
        assert len(json.dumps(message)) < heatmap_bytes if kind == "patch" else \
            message["figure"]["data"][0]["type"] == "heatmap" and message["patch"] == {}

    with fig.batch_update():
        fig.add_bar(x=[1.0, 2.0], y=[3, 4], name="a", xaxis="x", yaxis="y")
        fig.layout.title.text = "a"
    check("patch")
    assert list(_states(messages)[-1]) == ["patch"]
    assert _states(messages)[-1]["patch"]["data"][0] is None  # the heatmap: the base's
    with fig.batch_update():  # another selection: the patch is made again from the base
        fig.data = fig.data[:1]
        fig.add_bar(x=[1.0], y=[2], name="b")
        fig.layout.title.text = "b"
        fig.layout.height = None  # a key taken away
    check("patch")
    assert _states(messages)[-1]["patch"]["removed"] == ["height"]
    with fig.batch_update():  # the heatmap changes: a new base, in one message
        fig.data[0].z = big[::-1]
    check("base")
    assert len(_states(messages)) == 3
    with fig.batch_update():  # the bars go
        fig.data = fig.data[:1]
    check("patch")


def test_the_browser_cannot_change_the_figure():
    """Only clicks come from the views: a ``figure`` or ``patch`` sent from the browser is
    dropped, so the kernel's state stays the figure it holds."""
    fig = StatefulFigure(data=[dict(type="bar", x=[1], y=[2])])
    before = fig.drawn
    fig._handle_msg({"content": {"data": {"method": "update", "buffer_paths": [], "state": {
        "figure": {"data": 5}, "patch": {"data": [None, None, {"type": "x"}]}}}}, "buffers": []})
    assert fig.drawn == before == figure_json(fig.to_figure())


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
