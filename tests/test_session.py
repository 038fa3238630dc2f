"""One ModelSession per live model: every view observes it, every action goes through it."""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.widgets.actions import action, actions_of
from model_state import GENERATIONS, model_state, sgd_step_changes


def small_model(keras, name):
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"),
                             keras.layers.Dense(2, name="b")], name=name)


def test_two_dashboards_of_one_model_share_one_session(keras):
    model = small_model(keras, "shared_view")
    first, second = hw.explore(model), hw.explore(model)
    assert first.session is second.session is hw.session_for(model)
    first.explorer.handle_action({"action": "set_trainable", "path": "shared_view/a",
                                  "value": False})
    assert model.get_layer("a").trainable is False
    rows = {r["path"]: r for r in second.explorer.visible_rows()}
    assert rows["shared_view/a"]["trainable"] == "frozen"
    assert second.explorer.totals["frozen"] == 3 * 4 + 4
    assert "16 trainable" not in second.header.value and "10 trainable" in second.header.value
    first.explorer.handle_action({"action": "select", "path": "shared_view/b"})
    assert second.explorer.selected == second.weights.selected == "shared_view/b"


def test_a_python_call_updates_every_open_view(keras):
    model = small_model(keras, "py_call")
    dashboard = hw.explore(model)
    hw.freeze(model, "b")
    assert {r["path"]: r["trainable"] for r in dashboard.explorer.visible_rows()}["py_call/b"] == "frozen"
    hw.unfreeze(model)
    assert dashboard.explorer.totals["frozen"] == 0


def test_refresh_after_pop_and_add_shows_the_new_structure(keras):
    model = small_model(keras, "grows")
    dashboard = hw.explore(model)
    before = hw.inspect(model)
    model.pop()
    model.add(keras.layers.Dense(5, name="c"))
    dashboard.refresh()
    assert [r["path"] for r in dashboard.explorer.visible_rows()] == ["grows", "grows/a", "grows/c"]
    assert dashboard.explorer.totals["params"] == model.count_params() == 3 * 4 + 4 + 4 * 5 + 5
    assert f"{model.count_params():,} params" in dashboard.header.value
    assert hw.inspect(model) is not before  # walked again: the structure changed
    assert [n.name for n in dashboard.weights.tree.root.children] == ["a", "c"]


def test_an_unchanged_model_is_not_walked_again_but_its_flags_are_reread(keras):
    """A freeze by hand reaches the kept tree's counts and notes on the next look (the
    nodes keep them until the trainable state is re-read), without a new walk."""
    from hubwidgets.model.notes import FROZEN_BN_NOTE

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"),
                              keras.layers.BatchNormalization(name="bn")], name="warm")
    tree = hw.inspect(model)
    bn = tree.find("bn")
    assert FROZEN_BN_NOTE not in bn.notes and bn.trainable is True
    model.get_layer("bn").trainable = False
    assert hw.inspect(model) is tree  # no walk
    assert FROZEN_BN_NOTE in bn.notes and bn.trainable is False
    assert tree.root.trainable_params == sum(int(np.prod(w.shape))
                                             for w in model.trainable_weights)


def test_new_weights_redraw_the_plots(keras):
    model = small_model(keras, "values")
    dashboard = hw.explore(model)
    dashboard.explorer.handle_action({"action": "select", "path": "values/a/kernel"})
    kernel = model.get_layer("a").kernel
    kernel.assign(np.full((3, 4), 7.0, dtype="float32"))
    dashboard.refresh()
    [bar] = dashboard.weights.selection_traces
    assert sum(bar.y) == 12 and max(bar.x) > 6.5  # every value sits in the bin at 7


def test_closed_views_stop_following_the_session(keras):
    model = small_model(keras, "closing")
    session = hw.session_for(model)
    dashboard = hw.explore(model)
    assert len(session._observers) == 4  # explorer, plots, header, the training-tab check
    dashboard.close()
    assert session._observers == []


def test_the_session_holds_views_weakly(keras):
    model = small_model(keras, "weak")
    session = hw.session_for(model)

    class View:
        def on_change(self, session, what):
            raise AssertionError("a dropped view was called")

    view = View()
    session.observe(view.on_change)
    del view
    gc.collect()
    session.update("flags")
    assert session._observers == []


def test_a_copied_model_gets_its_own_session(keras):
    model = small_model(keras, "copied")
    hw.explore(model)
    clone = copy.deepcopy(model)
    assert hw.session_for(clone) is not hw.session_for(model)
    assert hw.session_for(clone).tree.root.params == model.count_params()


def test_a_new_toolbar_action_is_one_method(keras):
    class ExplorerWithReset(hw.LayerExplorer):
        @action
        def select_first(self) -> None:
            """Select the first layer."""
            self.selected = self.tree.root.children[0].path

    assert set(actions_of(hw.LayerExplorer)) == {
        "select", "set_trainable", "freeze_all", "unfreeze_all",
        "freeze_up_to", "freeze_pattern", "scale_weights", "reset_weights", "prune_weights",
        "add_noise", "restore_snapshot", "undo", "redo", "enable_lora", "enable_lora_pattern"}
    explorer = ExplorerWithReset(small_model(keras, "custom_action"))
    assert explorer.handle_action({"action": "select_first"}) == {
        "ok": True, "message": "", "code": ""}
    assert explorer.selected == "custom_action/a" and explorer.message == ""
    explorer.handle_action({"action": "select_first", "path": "x"})
    assert explorer.message == "Action 'select_first' takes no field 'path'."


def test_an_edit_redraws_every_open_view(keras):
    model = small_model(keras, "edited")
    dashboard = hw.explore(model)
    dashboard.explorer.handle_action({"action": "select", "path": "edited/a/kernel"})
    before = list(dashboard.weights.selection_traces[0].x)
    hw.scale_weights(model, "edited/a", 100.0)
    after = list(dashboard.weights.selection_traces[0].x)
    assert max(after) > 50 * max(before)  # the histogram widened, drawn in place
    hw.undo(model)
    assert list(dashboard.weights.selection_traces[0].x) == before


def test_edits_from_the_explorer_with_undo_redo_and_restore(keras):
    model = small_model(keras, "row_menu")
    explorer = hw.LayerExplorer(model)
    kernel = model.get_layer("a").kernel
    original = kernel.numpy().copy()
    explorer.handle_action({"action": "scale_weights", "path": "row_menu/a", "factor": 2})
    assert np.array_equal(kernel.numpy(), original * np.float32(2))
    assert explorer.code.startswith("hubwidgets.scale_weights(model, 'row_menu/a', 2.0)")
    assert "layer.set_weights([w * 2.0 for w in layer.get_weights()])" in explorer.code
    assert explorer.totals["can_undo"] and not explorer.totals["can_redo"]
    explorer.handle_action({"action": "undo"})
    assert np.array_equal(kernel.numpy(), original) and explorer.totals["can_redo"]
    explorer.handle_action({"action": "redo"})
    assert np.array_equal(kernel.numpy(), original * np.float32(2))
    explorer.handle_action({"action": "prune_weights", "path": "row_menu/a/kernel",
                            "fraction": 0.5})
    assert int((kernel.numpy() == 0).sum()) == 6
    explorer.handle_action({"action": "restore_snapshot", "path": "row_menu/a"})
    assert np.array_equal(kernel.numpy(), original)
    assert model.get_layer("a").trainable is True  # edits never touch the flags
    for bad in ({"action": "scale_weights", "path": "row_menu/a", "factor": "2"},
                {"action": "scale_weights", "path": "row_menu/a", "factor": float("nan")},
                {"action": "prune_weights", "path": "row_menu/a", "fraction": 1.5},
                {"action": "scale_weights", "path": "row_menu/zzz", "factor": 2.0}):
        explorer.handle_action(bad)
        assert explorer.message and np.array_equal(kernel.numpy(), original)


def test_a_watched_model_shows_its_training_panel_as_a_tab(keras):
    model = small_model(keras, "watched")
    model.compile("sgd", "mse")
    dashboard = hw.explore(model)
    assert dashboard.training is None
    callback = hw.watch(model)
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert dashboard.training is callback.panel  # added when fit ended
    [tabs] = dashboard.children
    assert [tabs.get_title(i) for i in range(2)] == ["Model", "Training"]
    assert hw.explore(model).training is callback.panel  # a new dashboard opens with it
    closed = callback.panel
    dashboard.close()  # closes its Training tab (which held the watcher, and so the model)
    again = hw.explore(model).training
    assert again is callback.panel and again is not closed  # a new, live panel
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert "3 intervals" in again.status.value  # it draws the next fit


def test_the_training_panel_observes_the_session_like_every_view(keras):
    import hubwidgets.model.watch as backend_watch

    assert not hasattr(backend_watch, "PANEL_FACTORY")  # no import side effect plugs it in
    model = small_model(keras, "watched_session")
    model.compile("sgd", "mse")
    callback = backend_watch.watch(model)  # the backend's watcher: no widget asked for
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    dashboard = hw.explore(model)
    panel = dashboard.training  # the dashboard gives the watcher its panel
    assert panel is callback.panel and panel.session is dashboard.session
    assert dashboard.explorer.session is dashboard.weights.session is dashboard.session
    assert dashboard.header.session is dashboard.session
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert "(done)" in panel.status.value and "3 intervals" in panel.status.value
    assert len(panel.curves.data) == 1 and list(panel.curves.data[0].y) == pytest.approx(
        callback.history.logs["loss"])
    panel.close()  # a closed view stops following, as every view does
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback.history.intervals == 4 and "3 intervals" in panel.status.value


def test_explorer_edits_in_tf_keras_and_the_histogram_follows(tf_keras):
    model = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(4, name="a"),
                                 tf_keras.layers.Dense(2, name="head")], name="tk_edits")
    dashboard = hw.explore(model)
    explorer = dashboard.explorer
    kernel = model.get_layer("a").kernel
    original = kernel.numpy().copy()
    explorer.handle_action({"action": "select", "path": "tk_edits/a/kernel"})
    xs = dashboard.weights.selection_traces[0].x
    width = max(xs) - min(xs)
    explorer.handle_action({"action": "scale_weights", "path": "tk_edits/a", "factor": 2.0})
    assert np.array_equal(kernel.numpy(), original * np.float32(2))
    xs = dashboard.weights.selection_traces[0].x
    wider = max(xs) - min(xs)
    assert wider == pytest.approx(2 * width, rel=1e-5)  # the histogram widened, in place
    explorer.handle_action({"action": "undo"})
    assert kernel.numpy().tobytes() == original.tobytes()
    head = model.get_layer("head")
    first = head.kernel.numpy().copy()
    explorer.handle_action({"action": "scale_weights", "path": "tk_edits/head", "factor": 3.0})
    explorer.handle_action({"action": "reset_weights", "path": "tk_edits/head"})
    # tf_keras' unseeded initializers give their first values again: the head is as built
    assert head.kernel.numpy().tobytes() == first.tobytes()
    assert explorer.code.startswith("hubwidgets.reset_weights(model, 'tk_edits/head')")


@pytest.mark.parametrize("fixture", ["k3_nested_shared", "k3_subclassed", "tfk_sequential",
                                     "plain_module"])
def test_the_walk_records_the_fingerprint_a_later_check_computes(fixture, request):
    model = request.getfixturevalue(fixture)
    tree = hw.inspect(model)
    assert hw.inspect(model) is tree  # the structure check found no change: no second walk


def test_stats_of_the_dashboard_follow_training_and_a_new_layer(keras):
    """The session's statistics (and the drawn histogram) after an optimizer step and
    ``refresh("values")``, then after a layer is popped and another added: every variable
    of the model as it is now, each with numpy's figures, also through the new tree's Node
    and VariableInfo."""
    from hubwidgets.model.session_stats import every_variable_statistics

    model = small_model(keras, "follows")
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    dashboard = hw.explore(model)
    session = dashboard.session

    def weights_of(*layers):
        return {f"follows/{layer.name}/{w.name}": w for layer in layers for w in layer.weights}

    def assert_numpys(stats, expected):
        assert sorted(stats) == sorted(expected)
        for path, variable in expected.items():
            a = variable.numpy().astype(np.float64).ravel()
            counts, edges = np.histogram(a, bins=64)
            s = stats[path]
            assert (s.count, s.min, s.max) == (a.size, a.min(), a.max())
            assert s.mean == pytest.approx(a.mean(), rel=1e-12, abs=1e-12)
            assert s.std == pytest.approx(a.std(), rel=1e-9, abs=1e-12)
            np.testing.assert_array_equal(s.counts, counts)
            np.testing.assert_array_equal(s.edges, edges)

    def assert_drawn(path, variable):
        dashboard.explorer.handle_action({"action": "select", "path": path})
        [bar] = dashboard.weights.selection_traces
        counts, edges = np.histogram(variable.numpy().astype(np.float64),
                                     bins=dashboard.weights.bins)
        np.testing.assert_array_equal(np.asarray(bar.y), counts)
        np.testing.assert_allclose(np.asarray(bar.x), (edges[:-1] + edges[1:]) / 2)

    def assert_every_view_is_numpys():
        assert_numpys(every_variable_statistics(session), weights_of(*model.layers))
        assert_numpys(hw.weight_stats(model), weights_of(*model.layers))
        assert_numpys(hw.weight_stats(session.tree), weights_of(*model.layers))

    assert_every_view_is_numpys()
    before = model.get_layer("a").kernel.numpy().copy()
    model.fit(np.ones((4, 3), "float32"), np.full((4, 2), 5.0, "float32"), epochs=1, verbose=0)
    assert not np.array_equal(before, model.get_layer("a").kernel.numpy())
    session.update("values")
    assert_every_view_is_numpys()
    assert_drawn("follows/a/kernel", model.get_layer("a").kernel)

    model.pop()
    model.add(keras.layers.Dense(5, name="c"))
    model.get_layer("c").kernel.assign(np.arange(20, dtype="float32").reshape(4, 5) - 4.0)
    session.update("values")
    assert_every_view_is_numpys()
    tree = hw.inspect(model)
    c = model.get_layer("c")
    assert_numpys(hw.weight_stats(tree.find("follows/c")), weights_of(c))
    assert_numpys(hw.weight_stats(tree.find_variable("follows/c/kernel")),
                  {"follows/c/kernel": c.kernel})
    assert_drawn("follows/c/kernel", c.kernel)


# -- Structure changes under open views: layers popped and added, with and without refresh ---
@pytest.fixture(params=GENERATIONS)
def poppable(request):
    K = request.getfixturevalue(request.param)
    K.utils.set_random_seed(1)
    return K.Sequential([K.Input((4,)), K.layers.Dense(5, name="a"), K.layers.Dense(3, name="b"),
                         K.layers.Dense(2, name="c")], name="s")


def keras_of(model):
    """The Keras package (Keras 3 or tf_keras) ``model`` belongs to."""
    import keras
    import tf_keras

    return keras if isinstance(model, keras.Model) else tf_keras


def test_dashboard_refresh_after_pop_shows_the_new_structure(poppable):
    dash = hw.explore(poppable)
    dash.explorer.handle_action({"action": "select", "path": "s/c"})
    assert dash.weights.selected == "s/c"
    poppable.pop()
    dash.refresh()
    assert [n.path for n in dash.tree] == ["s", "s/a", "s/b"]
    assert dash.tree.root.params == poppable.count_params() == 4 * 5 + 5 + 5 * 3 + 3
    assert dash.explorer.totals["params"] == poppable.count_params()
    assert f"{poppable.count_params():,} params" in dash.header.value
    assert [r["path"] for r in dash.explorer.visible_rows()] == ["s", "s/a", "s/b"]
    [heatmap] = [t for t in dash.weights.overview_figure.data if t.type == "heatmap"]
    assert list(heatmap.y) == ["a", "b"]
    assert dash.explorer.selected == "" and dash.weights.selected == ""  # the removed pick


@pytest.mark.parametrize("message", [
    {"action": "select", "path": "s/c"},
    {"action": "set_trainable", "path": "s/c", "value": False},
    {"action": "freeze_up_to", "path": "s/c"},
    {"action": "freeze_pattern", "pattern": "^c$"},
])
def test_a_removed_layer_can_no_longer_be_selected_or_frozen(poppable, message):
    dash = hw.explore(poppable)
    poppable.pop()
    dash.refresh()
    before = model_state(poppable)
    dash.explorer.handle_action(message)
    assert model_state(poppable) == before
    text = dash.explorer.message
    assert text.startswith(("No layer", "No variable")) and ("'s/c'" in text or "'^c$'" in text)
    assert dash.explorer.selected == ""


def test_dashboard_refresh_after_add_shows_and_freezes_the_new_layer(poppable, tf):
    keras = keras_of(poppable)
    dash = hw.explore(poppable)
    poppable.pop()
    poppable.add(keras.layers.Dense(7, name="e"))
    dash.refresh()
    assert [n.path for n in dash.tree] == ["s", "s/a", "s/b", "s/e"]
    assert dash.tree.root.params == poppable.count_params() == 43 + 3 * 7 + 7
    dash.explorer.handle_action({"action": "set_trainable", "path": "s/e", "value": False})
    assert dash.explorer.message == ""
    assert dash.explorer.code == "model.get_layer('e').trainable = False"
    assert poppable.get_layer("e").trainable is False
    assert dash.explorer.totals["frozen"] == 3 * 7 + 7
    poppable.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = sgd_step_changes(poppable, tf, 4, 7)
    assert changed == {id(w) for name in "ab" for w in poppable.get_layer(name).weights}


def test_generated_code_after_pop_names_only_existing_layers(poppable):
    keras = keras_of(poppable)
    dash = hw.explore(poppable, var_name="net")
    poppable.pop()
    dash.refresh()
    dash.explorer.handle_action({"action": "select", "path": "s/b"})
    dash.explorer.handle_action({"action": "freeze_up_to"})
    assert dash.explorer.message == ""
    assert "'c'" not in dash.explorer.code and "[2]" not in dash.explorer.code
    assert [layer.trainable for layer in poppable.layers] == [False, False]
    twin = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="a"),
                             keras.layers.Dense(3, name="b")])
    exec(dash.explorer.code, {"net": twin})
    assert [layer.trainable for layer in twin.layers] == [False, False]


def test_two_dashboards_of_one_model_both_follow_a_pop(poppable):
    first, second = hw.explore(poppable), hw.explore(poppable)
    poppable.pop()
    first.refresh()
    for dash in (first, second):
        assert dash.explorer.totals["params"] == poppable.count_params()
        assert [r["path"] for r in dash.explorer.visible_rows()] == ["s", "s/a", "s/b"]


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("message", [
    pytest.param({"action": "set_trainable", "path": "s/c", "value": False},
                 id="toggle"),
    pytest.param({"action": "select", "path": "s/c"}, id="select"),
])
def test_a_stale_row_of_a_removed_layer_is_refused_without_refresh(generation, request,
                                                                   message):
    K = request.getfixturevalue(generation)
    model = K.Sequential([K.Input((4,)), K.layers.Dense(5, name="a"), K.layers.Dense(3, name="b"),
                          K.layers.Dense(2, name="c")], name="s")
    dash = hw.explore(model)
    removed = model.layers[-1]
    model.pop()  # no dash.refresh(): the page still shows the row s/c
    before = model_state(model)
    dash.explorer.handle_action(message)
    assert model_state(model) == before and removed.trainable
    assert "'s/c'" in dash.explorer.message and dash.explorer.code == ""
    assert dash.explorer.selected == ""
    assert dash.explorer.totals["params"] == model.count_params()


@pytest.mark.parametrize("generation", GENERATIONS)
def test_an_action_after_add_without_refresh_covers_the_new_layer(generation, request):
    K = request.getfixturevalue(generation)
    model = K.Sequential([K.Input((4,)), K.layers.Dense(5, name="a")], name="s")
    dash = hw.explore(model)
    model.add(K.layers.Dense(7, name="e"))  # no refresh
    dash.explorer.handle_action({"action": "freeze_all"})
    assert [layer.trainable for layer in model.layers] == [False, False]
    assert dash.explorer.totals == {**dash.explorer.totals, "params": model.count_params(),
                                    "trainable": 0, "frozen": model.count_params()}
    assert [r["path"] for r in dash.explorer.visible_rows()] == ["s", "s/a", "s/e"]
    assert f"{model.count_params():,} params" in dash.header.value
