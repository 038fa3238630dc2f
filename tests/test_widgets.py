"""The widgets driven as the browser drives them, checked against the live model."""

from __future__ import annotations


import numpy as np

import pytest

import hubwidgets as hw
from recording_comm import recording_comms


@pytest.fixture
def explorer_of(keras):
    def make(model, **kwargs):
        return hw.LayerExplorer(model, **kwargs)
    return make


def test_explorer_expands_lazily_and_toggles_the_live_model(k3_nested_shared, explorer_of):
    explorer = explorer_of(k3_nested_shared)
    assert [r["path"] for r in explorer.visible_rows()] == [
        "nested_shared", "nested_shared/x", "nested_shared/shared_dense", "nested_shared/block",
        "nested_shared/head"]
    opened = ["nested_shared", "nested_shared/block"]
    rows = {r["path"]: r for r in explorer.visible_rows(opened)}
    assert "nested_shared/block/inner_bn" in rows
    assert [v["name"] for v in rows["nested_shared/block"]["variables"]] == []
    opened.append("nested_shared/block/inner_bn")
    bn = {r["path"]: r for r in explorer.visible_rows(opened)}["nested_shared/block/inner_bn"]
    assert [(v["name"], v["trainable"]) for v in bn["variables"]] == [
        ("gamma", True), ("beta", True), ("moving_mean", False), ("moving_variance", False)]
    why = [v["not_trained_why"] for v in bn["variables"]]  # the "not trained" badge's tooltip
    assert why[:2] == ["", ""]
    assert all(w.startswith("a BatchNormalization moving statistic") for w in why[2:])

    explorer.handle_action({"action": "set_trainable", "path": "nested_shared/block", "value": False})
    block = k3_nested_shared.get_layer("block")
    assert block.trainable is False
    assert all(id(w) not in {id(t) for t in k3_nested_shared.trainable_weights} for w in block.weights)
    assert explorer.totals["frozen"] == block.count_params()
    assert explorer.code == "model.get_layer('block').trainable = False"
    row = {r["path"]: r for r in explorer.visible_rows(opened)}["nested_shared/block"]
    assert row["trainable"] == "frozen" and "frozen" in row["badges"]

    explorer.handle_action({"action": "unfreeze_all"})
    assert explorer.totals["frozen"] == 12  # only BatchNorm's moving statistics
    assert explorer.code == "model.trainable = True"


def test_search_filters_by_regex_and_class(k3_nested_shared, explorer_of):
    explorer = explorer_of(k3_nested_shared)
    explorer.query = "inner_(a|bn)"
    assert [r["path"] for r in explorer.visible_rows()] == [
        "nested_shared", "nested_shared/block", "nested_shared/block/inner_a",
        "nested_shared/block/inner_bn"]
    explorer.query = "BatchNorm"
    assert explorer.visible_rows()[-1]["path"] == "nested_shared/block/inner_bn"
    explorer.query = "(["  # not a valid regex: searched as text, no error
    assert [r["path"] for r in explorer.visible_rows()] == []


def test_compiled_model_change_says_compile_again(keras, explorer_of):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="c")
    model.compile("sgd", "mse")
    explorer = explorer_of(model)
    explorer.handle_action({"action": "set_trainable", "path": "c/d", "value": False})
    assert "compile" in explorer.message
    assert "model.compile(...)" in explorer.code


def test_freeze_up_to_selected_and_by_pattern(k3_nested_shared, explorer_of):
    explorer = explorer_of(k3_nested_shared)
    explorer.handle_action({"action": "select", "path": "nested_shared/block"})
    explorer.handle_action({"action": "freeze_up_to"})
    assert [l.trainable for l in k3_nested_shared.layers] == [False, False, False, True]
    assert "model.layers[:3]" in explorer.code
    explorer.handle_action({"action": "unfreeze_all"})
    explorer.handle_action({"action": "freeze_pattern", "pattern": "head"})
    assert k3_nested_shared.get_layer("head").trainable is False
    explorer.handle_action({"action": "freeze_pattern", "pattern": "zzz"})
    assert explorer.message == "No layer matches 'zzz': nothing was frozen."
    explorer.handle_action({"action": "unfreeze_all"})


def test_names_are_text_not_html(keras, explorer_of):
    evil = "<img src=x onerror=alert(1)>"
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name=evil)], name="m")
    dashboard = hw.explore(model)
    assert dashboard.explorer.visible_rows()[1]["name"] == evil  # the view sets it with textContent
    assert evil not in dashboard.header.value
    from hubwidgets.widgets.explorer import STATIC

    source = (STATIC / "explorer.js").read_text()
    assert "innerHTML" not in source and "insertAdjacentHTML" not in source


def test_weight_plot_follows_the_selection(k3_sequential):
    dashboard = hw.explore(k3_sequential)
    plot = dashboard.weights
    dashboard.explorer.handle_action({"action": "select", "path": "seed_sequential/dense_layer_1/kernel"})
    assert plot.selected == "seed_sequential/dense_layer_1/kernel"
    [bar] = plot.selection_traces
    stats = hw.weight_stats(k3_sequential)["seed_sequential/dense_layer_1/kernel"]
    assert list(bar.y) == stats.counts.tolist()
    dashboard.explorer.handle_action({"action": "select", "path": "seed_sequential/dense_layer_1"})
    assert len(plot.selection_traces) == 2  # kernel and bias overlaid on shared bins
    plot.log_y = True
    assert plot.selection_figure.layout.yaxis.type == "log"
    [heatmap] = [t for t in plot.figure.data if t.type == "heatmap"]
    assert list(heatmap.y) == ["dense_layer_1", "dense_layer_2"]


def test_hub_keras_layer_in_tf_keras_model(tfk_saved_model, hub, tf_keras, explorer_of):
    layer = hub.KerasLayer(tfk_saved_model, trainable=True, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer, tf_keras.layers.Dense(2, name="head")],
                                name="with_hub")
    explorer = explorer_of(model)
    opened = ["with_hub", "with_hub/hub"]
    assert "with_hub/hub/features_1" in [r["path"] for r in explorer.visible_rows(opened)]
    explorer.handle_action({"action": "set_trainable", "path": "with_hub/hub", "value": False})
    assert layer.trainable is False and explorer.totals["trainable"] == 3 * 2 + 2
    # a toggle inside the frozen module unfreezes exactly that part
    explorer.handle_action({"action": "set_trainable", "path": "with_hub/hub/features_2", "value": True})
    assert layer.trainable is True
    assert explorer.totals["trainable"] == (8 * 3 + 3) + (3 * 2 + 2)
    rows = {r["path"]: r for r in explorer.visible_rows(opened)}
    assert rows["with_hub/hub"]["trainable"] == "mixed"
    assert "hubwidgets.set_trainable(model, 'with_hub/hub/features_2', True)" in explorer.code


def test_resnet50_bytes_to_browser(keras):
    with recording_comms() as recorder:
        model = keras.applications.ResNet50(weights=None)
        explorer = hw.LayerExplorer(model)
        first = recorder.bytes_sent()
        # the root, the first page of its 177 layers, and a "show more" row
        top = explorer._top_rows  # what the first paint draws, synced
        assert (len(top["children"]), top["total"]) == (100, 177)
        rows = explorer.visible_rows()
        assert len(rows) == 1 + 100 + 1 and rows[-1]["remaining"] == 77
        assert first < 100_000, first
        recorder.clear()
        explorer.handle_action({"action": "select", "path": "resnet50/conv2_block1_1_conv"})
        assert explorer.selected == "resnet50/conv2_block1_1_conv"
        assert recorder.bytes_sent() < 8_000, recorder.bytes_sent()


def test_long_layer_lists_come_in_pages(keras, explorer_of):
    model = keras.Sequential([keras.Input((2,))] + [keras.layers.Dense(2, name=f"d{i}")
                                                    for i in range(250)], name="long")
    explorer = explorer_of(model)
    assert [r["name"] for r in explorer.visible_rows()[-2:]] == ["d99", "150 more"]
    assert [r["name"] for r in explorer.visible_rows(shown={"long": 200})[-2:]] == [
        "d199", "50 more"]
    rows = explorer.visible_rows(shown={"long": 300})
    assert rows[-1]["name"] == "d249" and len(rows) == 251
    explorer.query = "d24"  # a search lists its matches, paged the same way
    assert [r["name"] for r in explorer.visible_rows()] == ["long", "d24"] + [
        f"d24{i}" for i in range(10)]


def test_dashboard_badges_nan_weights_from_its_overview(keras):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="ok"),
                              keras.layers.Dense(2, name="broken")], name="nan_model")
    kernel = model.get_layer("broken").kernel
    kernel.assign(np.where(np.eye(2, dtype=bool), np.nan, kernel.numpy()))
    dashboard = hw.explore(model)
    rows = {r["name"]: r for r in dashboard.explorer.visible_rows()}
    assert "NaN/Inf" in rows["broken"]["badges"] and "NaN/Inf" not in rows["ok"]["badges"]


@pytest.mark.parametrize("bins", [64, 32])
def test_a_dashboard_computes_each_statistic_once_per_change(keras, reductions_counted, bins):
    """The weight plot's overview and the explorer's NaN scan share the session's statistics,
    whatever the bins: each variable is reduced once when the dashboard opens and once after
    its values change, and the NaN badge still appears."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"),
                              keras.layers.Dense(2, name="b")], name=f"once_{bins}")
    reduced = reductions_counted()
    dashboard = hw.explore(model, bins=bins)
    paths = [v.path for v in hw.inspect(model).variables()]
    assert sorted(reduced) == sorted(paths)
    reduced.clear()
    kernel = model.get_layer("b").kernel
    kernel.assign(np.where(np.eye(4, 2, dtype=bool), np.nan, kernel.numpy()))
    dashboard.session.update("values")
    assert sorted(reduced) == sorted(paths)
    rows = {r["name"]: r for r in dashboard.explorer.visible_rows()}
    assert "NaN/Inf" in rows["b"]["badges"] and "NaN/Inf" not in rows["a"]["badges"]


@pytest.mark.parametrize("action, fields", [
    ("set_trainable", {"value": False}), ("scale_weights", {"factor": 0.0}),
    ("reset_weights", {}), ("prune_weights", {"fraction": 1.0}), ("add_noise", {"std": 1.0})])
@pytest.mark.parametrize("path", ["", "/", " "])
def test_a_message_with_an_empty_path_acts_on_nothing(keras, explorer_of, action, fields, path):
    """Issue 27 (found by the protocol fuzzer): ``find("")`` is the root, so an empty path
    from the browser froze or edited the whole model."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
    explorer = explorer_of(model)
    before = [(w.numpy().tobytes(), w.trainable) for w in model.weights]
    explorer.handle_action({"action": action, "path": path, **fields})
    assert [(w.numpy().tobytes(), w.trainable) for w in model.weights] == before
    assert "No layer or variable path was given" in explorer.message


# -- Hostile names -------------------------------------------------------------------------
def test_a_layer_with_a_long_hostile_name_is_text_and_freezes(keras):
    name = "x" * 2000 + "<img src=x onerror=alert(1)>"
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name=name),
                              keras.layers.Dense(2, name="ok")], name="hostile")
    explorer = hw.LayerExplorer(model)
    assert explorer.visible_rows()[1]["name"] == name
    explorer.handle_action({"action": "set_trainable", "path": f"hostile/{name}", "value": False})
    assert explorer.message == ""
    assert [layer.trainable for layer in model.layers] == [False, True]
    dash = hw.explore(model)
    assert "<img" not in dash.header.value or "&lt;img" in dash.header.value


# -- keyword arguments: every widget refuses an unknown one, before it reads the model ---------
WIDGET_ARGUMENTS = {  # the positional arguments each public widget class is built with
    "Dashboard": lambda model, x: (model,),
    "LayerExplorer": lambda model, x: (model,),
    "WeightPlot": lambda model, x: (model,),
    "ActivationsPanel": lambda model, x: (model, x),
    "TrainingPanel": lambda model, x: (hw.watch(model),),
}


def test_every_public_widget_class_is_checked_for_keywords():
    import ipywidgets

    public = {name for name in hw.__all__ if isinstance(getattr(hw, name), type)
              and issubclass(getattr(hw, name), ipywidgets.Widget)}
    assert public == set(WIDGET_ARGUMENTS)


@pytest.mark.parametrize("name", sorted(WIDGET_ARGUMENTS))
def test_an_unknown_keyword_is_refused_before_the_model_is_read(name, keras):
    from hubwidgets.model.session import existing_session
    from hubwidgets.widgets.keywords import accepted_keywords

    cls = getattr(hw, name)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")],
                             name=f"kw_{name.lower()}")
    args = WIDGET_ARGUMENTS[name](model, np.ones((2, 3), np.float32))
    session = existing_session(model)
    with pytest.raises(hw.UnknownKeywordError) as err:
        cls(*args, colour="red", layot={"width": "321px"})
    assert isinstance(err.value, TypeError) and isinstance(err.value, hw.HubWidgetsError)
    text = str(err.value)
    assert text.startswith(f"{name} got unexpected keyword argument(s) 'colour', 'layot'; ")
    accepted = accepted_keywords(cls)
    assert "layout" in accepted and text.endswith(f"it takes: {', '.join(accepted)}.")
    assert existing_session(model) is session  # nothing was built or looked at
    widget = cls(*args, layout={"width": "321px"})  # a trait is a keyword it takes
    assert widget.layout.width == "321px"


def test_explore_refuses_an_unknown_keyword_as_the_dashboard_does(keras):
    from hubwidgets.model.session import existing_session

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="kw")
    with pytest.raises(hw.UnknownKeywordError, match=r"Dashboard got unexpected keyword "
                                                     r"argument\(s\) 'bin'; it takes: .*bins"):
        hw.explore(model, bin=32)
    assert existing_session(model) is None
    assert hw.explore(model, layout={"width": "500px"}).layout.width == "500px"
