"""``watch`` during real ``fit`` runs: one record per interval per layer with weights, every
statistic equal to numpy on the weights at that moment, an update ratio of exactly 0 where the
layer is frozen, and the same in Keras 3, tf_keras, Hub layers, jit_compile and MirroredStrategy."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hubwidgets as hw
from figure_state import state_data


@pytest.fixture
def xy(tf):
    return (tf.random.stateless_normal((32, 4), seed=(1, 2)).numpy(),
            tf.random.stateless_normal((32, 2), seed=(3, 4)).numpy())


def k3_model(keras, name="net"):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="base"),
                             keras.layers.BatchNormalization(name="bn"),
                             keras.layers.Dense(2, name="head")], name=name)


class Oracle:
    """Host copies of every layer's weights at each record, taken by a plain callback that
    runs right after the watcher (same hook), for numpy to recompute every figure."""

    def __init__(self, K, model, every="epoch"):
        self.model, self.states = model, []
        hook = "on_epoch_end" if every == "epoch" else "on_train_batch_end"
        self.steps = 0

        def take(*_args, **_kwargs):
            self.steps += 1
            if every == "epoch" or self.steps % every == 0:
                self.states.append(hw.snapshot(model))

        self.callback = K.callbacks.LambdaCallback(**{hook: take})
        self.start = None
        self.begin = K.callbacks.LambdaCallback(
            on_train_begin=lambda logs=None: setattr(self, "start", hw.snapshot(model)))


def layer_weights(snap, layer, paths):
    return [snap[p].astype(np.float64).ravel() for p in paths if p.rsplit("/", 1)[0] == layer]


def check_records(cb, oracle, weight_paths):
    """Each record against numpy on the oracle's copies."""
    history = cb.history
    assert history.intervals == len(oracle.states)
    layers = history.layers
    assert len(history) == len(layers) * history.intervals
    for record in history.records:
        now = oracle.states[record.interval]
        prev = oracle.states[record.interval - 1] if record.interval else oracle.start
        values = np.concatenate(layer_weights(now, record.path, weight_paths))
        before = np.concatenate(layer_weights(prev, record.path, weight_paths))
        assert record.mean == pytest.approx(values.mean(), rel=1e-9, abs=1e-12)
        assert record.std == pytest.approx(values.std(), rel=1e-6, abs=1e-12)
        assert record.norm == pytest.approx(np.linalg.norm(values), rel=1e-9)
        assert (record.min, record.max) == (values.min(), values.max())
        assert record.counts.sum() == values.size
        np.testing.assert_array_equal(record.counts,
                                      np.histogram(values, bins=record.edges)[0])
        expected = np.linalg.norm(values - before) / np.linalg.norm(before)
        if np.array_equal(values, before):
            assert record.update_ratio == 0.0  # exactly, not approximately
        else:
            assert record.update_ratio == pytest.approx(expected, rel=1e-9)


def test_keras3_one_record_per_epoch_per_layer_and_zero_ratio_where_frozen(keras, tf, xy):
    model = k3_model(keras)
    model.get_layer("base").trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    cb = hw.watch(model)
    assert isinstance(cb, keras.callbacks.Callback)
    oracle = Oracle(keras, model)
    model.fit(*xy, epochs=3, batch_size=8, verbose=0, validation_data=xy,
              callbacks=[oracle.begin, cb, oracle.callback])
    assert cb.history.layers == ["net/base", "net/bn", "net/head"]
    assert [r.interval for r in cb.history.records] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    weights = ["net/base/kernel", "net/base/bias", "net/bn/gamma", "net/bn/beta",
               "net/head/kernel", "net/head/bias"]
    check_records(cb, oracle, weights)
    assert [r.update_ratio for r in cb.history.layer("net/base")] == [0.0, 0.0, 0.0]
    assert all(r.update_ratio > 0 for r in cb.history.layer("net/head"))
    logs = cb.history.logs_arrays()
    assert set(logs) == {"loss", "mae", "val_loss", "val_mae"} and logs["loss"].shape == (3,)
    assert cb.history.epochs == [1, 2, 3]
    # callback.diff: the start of fit to its end, as diff() of a snapshot says
    reference = hw.diff(oracle.start, model)
    assert cb.diff.changed == reference.changed
    assert [i.path for i in cb.diff.frozen_changed] == ["net/bn/moving_mean",
                                                        "net/bn/moving_variance"]
    assert all(not cb.diff[p].changed for p in ("net/base/kernel", "net/base/bias"))


def test_every_n_steps_with_jit_compile(keras, tf, xy):
    model = k3_model(keras)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", jit_compile=True)
    cb = hw.watch(model, every=3)
    oracle = Oracle(keras, model, every=3)
    model.fit(*xy, epochs=2, batch_size=8, verbose=0, callbacks=[oracle.begin, cb, oracle.callback])
    assert cb.history.steps == [3, 6]  # 8 steps, a record every 3
    check_records(cb, oracle, [v.path for v in hw.inspect(model).variables() if v.can_train])
    assert cb.history.logs_arrays()["loss"].shape == (2,)


def test_update_ratio_false_holds_no_copy(keras, tf, xy):
    model = k3_model(keras)
    model.compile(optimizer="sgd", loss="mse")
    cb = hw.watch(model, update_ratio=False, diff=False)
    held = []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *a: held.append((dict(cb._previous), cb._start)))
    model.fit(*xy, epochs=2, batch_size=16, verbose=0, callbacks=[cb, probe])
    assert held == [({}, None), ({}, None)] and cb.held_bytes == 0
    assert all(math.isnan(r.update_ratio) for r in cb.history.records)
    assert cb.diff is None and len(cb.history) == 6


def test_update_ratio_holds_exactly_one_copy_of_the_weights(keras, tf, xy):
    model = k3_model(keras)
    model.compile(optimizer="sgd", loss="mse")
    cb = hw.watch(model, diff=False)
    sizes = []
    probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda *a: sizes.append(cb.held_bytes))
    model.fit(*xy, epochs=2, batch_size=16, verbose=0, callbacks=[cb, probe])
    weights = sum(v.nbytes for v in hw.inspect(model).variables() if v.can_train)
    assert sizes == [weights, weights]


def test_history_as_arrays_and_dataframe(keras, tf, xy):
    pd = pytest.importorskip("pandas")
    model = k3_model(keras)
    model.compile(optimizer="sgd", loss="mse")
    cb = hw.watch(model, bins=8)
    model.fit(*xy, epochs=2, batch_size=16, verbose=0, callbacks=[cb])
    arrays = cb.history.to_arrays()
    assert arrays["counts"].shape == (6, 8) and arrays["edges"].shape == (6, 9)
    assert list(arrays["path"][:3]) == ["net/base", "net/bn", "net/head"]
    frame = cb.history.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 6
    np.testing.assert_array_equal(frame["update_ratio"].to_numpy(), arrays["update_ratio"])


def test_tf_keras_with_a_frozen_hub_keras_layer(hub_backbone, hub, tf_keras, tf, xy):
    layer = hub.KerasLayer(hub_backbone, trainable=False, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                 tf_keras.layers.Dense(2, name="head")], name="clf")
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    cb = hw.watch(model)
    assert isinstance(cb, tf_keras.callbacks.Callback)
    oracle = Oracle(tf_keras, model)
    model.fit(*xy, epochs=2, batch_size=8, verbose=0, callbacks=[oracle.begin, cb, oracle.callback])
    hub_layers = [p for p in cb.history.layers if p.startswith("clf/hub/")]
    assert len(hub_layers) == 3 and cb.history.layers[-1] == "clf/head"
    check_records(cb, oracle, [v.path for v in hw.inspect(model).variables() if v.can_train])
    assert all(r.update_ratio == 0.0 for p in hub_layers for r in cb.history.layer(p))
    assert all(r.update_ratio > 0 for r in cb.history.layer("clf/head"))
    assert cb.diff.changed == ["clf/head/kernel", "clf/head/bias"]


def test_keras3_hub_layer_part_trains(hub_backbone, keras, tf, xy):
    layer = hw.HubLayer(hub_backbone, trainable=True, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")],
                             name="clf")
    hw.freeze(model, "hub/block1_dense")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    cb = hw.watch(model)
    model.fit(*xy, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    ratios = {p: [r.update_ratio for r in cb.history.layer(p)] for p in cb.history.layers}
    assert ratios["clf/hub/block1_dense"] == [0.0, 0.0]
    assert all(r > 0 for r in ratios["clf/hub/block2_dense"] + ratios["clf/head"])


@pytest.mark.parametrize("generation", ["keras", "tf_keras"])
def test_mirrored_strategy_reads_one_replica_and_checks_drift(generation, request, mirrored,
                                                              tf, xy):
    K = request.getfixturevalue(generation)
    with mirrored.scope():
        model = K.Sequential([K.Input((4,)), K.layers.Dense(3, name="base"),
                              K.layers.Dense(2, name="head")], name=f"m_{generation}")
        model.get_layer("base").trainable = False
        model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    cb = hw.watch(model)
    oracle = Oracle(K, model)
    model.fit(*xy, epochs=2, batch_size=8, verbose=0, callbacks=[oracle.begin, cb, oracle.callback])
    check_records(cb, oracle, [v.path for v in hw.inspect(model).variables()])
    assert [r.update_ratio for r in cb.history.layer(f"m_{generation}/base")] == [0.0, 0.0]
    assert cb.replica_drift == []
    # one replica corrupted on purpose: the watcher says so at the end of the next fit
    from hubwidgets.model.adapters.common import backing_variable

    replica = backing_variable(model.get_layer("base").kernel).values[1]
    replica.assign(replica + 1.0)
    with pytest.warns(hw.model.watch.ReplicaDriftWarning, match="drifted"):
        model.fit(*xy, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
    assert (2, f"m_{generation}/base") in cb.replica_drift


def test_bad_arguments_say_what_to_pass(keras, plain_module):
    model = k3_model(keras)
    with pytest.raises(ValueError, match="'epoch' or a number of steps"):
        hw.watch(model, every=0)
    with pytest.raises(hw.HubWidgetsError, match="Keras 3 or tf_keras model"):
        hw.watch(plain_module)
    unbuilt = keras.Sequential([keras.layers.Dense(2)], name="unbuilt")
    with pytest.raises(hw.UnbuiltModelError, match="Build it first"):
        hw.watch(unbuilt)


# -- the live panel ------------------------------------------------------------------------
def test_panel_updates_live_during_fit_through_the_comm(keras, tf, xy):
    from recording_comm import recording_comms

    model = k3_model(keras)
    model.get_layer("base").trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    with recording_comms() as recorder:
        cb = hw.watch(model, min_refresh_s=0)
        panel = cb.panel
        assert hw.training_panel_for(model) is panel and cb.panel is panel
        figures = [panel.curves, panel.heatmap, panel.ratios]
        during = []
        probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda *a: during.append(
            (len(recorder.sizes), len(panel.curves.data[0].y), panel.heatmap.data[0].z.shape,
             cb.running)))
        model.fit(*xy, epochs=3, batch_size=8, verbose=0, callbacks=[cb, probe])
    sent = [n for n, *_ in during]
    assert sent[0] < sent[1] < sent[2] < len(recorder.sizes)  # messages while fit ran
    assert [(points, shape, running) for _, points, shape, running in during] == [
        (1, (48, 1), True), (2, (48, 2), True), (3, (48, 3), True)]
    assert [panel.curves, panel.heatmap, panel.ratios] == figures  # updated in place
    assert [t.name for t in panel.curves.data] == ["loss", "mae"]
    assert [t.name for t in panel.ratios.data] == ["base (0: no update)", "bn", "head"]
    np.testing.assert_array_equal(panel.ratios.data[2].y,
                                  [r.update_ratio for r in cb.history.layer("net/head")])
    assert panel.layer_picker.value == "net/head"
    heat = np.asarray(panel.heatmap.data[0].z)
    np.testing.assert_allclose(heat.sum(axis=0), 18)  # every head weight, every interval
    assert "done" in panel.status.value
    assert "net/bn/moving_mean" in panel.audit.value
    assert "BatchNormalization moving statistics" in panel.audit.value


def test_panel_figures_live_in_widget_state_for_a_page_reloaded_after_fit(keras, tf, xy):
    """plotly sends updates as one-off messages; a page reloaded after fit (or Voila, or a
    saved notebook) reads the widget state, which must hold the figures as drawn."""
    model = k3_model(keras)
    model.compile(optimizer="sgd", loss="mse")
    cb = hw.watch(model, min_refresh_s=0)
    panel = cb.panel
    model.fit(*xy, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    [loss] = state_data(panel.curves)  # the trait the widget state is made of
    np.testing.assert_array_equal(loss["y"], cb.history.logs_arrays()["loss"])
    [heat] = state_data(panel.heatmap)
    assert heat["type"] == "heatmap" and np.asarray(heat["z"]).shape == (48, 2)
    ratios = state_data(panel.ratios)
    assert [t["name"] for t in ratios] == [t.name for t in panel.ratios.data]
    panel.layer_picker.value = panel.layer_picker.options[0]  # the user picks a layer
    [heat] = state_data(panel.heatmap)
    np.testing.assert_array_equal(heat["z"], panel.heatmap.data[0].z)


def test_panel_redraws_at_most_every_min_refresh_but_always_at_the_end(keras, tf, xy):
    model = k3_model(keras)
    model.compile(optimizer="sgd", loss="mse")
    cb = hw.watch(model, every=1, min_refresh_s=3600)
    panel = cb.panel
    model.fit(*xy, epochs=1, batch_size=4, verbose=0, callbacks=[cb])
    assert cb.history.intervals == 8
    assert len(panel.curves.data[0].y) == 8  # the end drew the last state


def test_callback_displays_as_the_panel_and_unwatched_models_have_none(keras, tf):
    from IPython.core.formatters import DisplayFormatter

    model = k3_model(keras, name="shown")
    assert hw.training_panel_for(model) is None
    cb = hw.watch(model)
    data, _ = DisplayFormatter().format(cb)  # what a cell ending in `cb` shows
    view = data["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == cb.panel.model_id
    assert data["text/plain"].startswith("<hubwidgets.watch every epoch")
    assert hw.training_panel_for(hw.inspect(model)) is cb.panel


def test_device_path_gives_the_host_paths_numbers(keras, tf):
    """The GPU path (reductions where the variables live) run on CPU variables: the same
    figures as the host path, and a ratio of exactly 0 for an unchanged layer."""
    from hubwidgets.model import watch as watch_module

    model = k3_model(keras)
    variables = model.get_layer("head").weights
    prev = [watch_module._copy(v) for v in variables]
    device = watch_module._device_stats(variables, [tf.constant(p) for p in prev], 16)
    host = watch_module._host_layer_stats([watch_module._host_flat(variables)], 16)[0]
    assert device.pop("ratio") == 0.0
    for key in ("mean", "std", "norm", "min", "max"):
        assert device[key] == pytest.approx(host[key], rel=1e-6), key
    np.testing.assert_array_equal(device["counts"], host["counts"])
    variables[0].assign(variables[0] * 2.0)
    moved = watch_module._device_stats(variables, [tf.constant(p) for p in prev], 16)["ratio"]
    flat_prev = np.concatenate([p.ravel() for p in prev]).astype(np.float64)
    delta = np.concatenate([np.asarray(v.numpy()).ravel() for v in variables]) - flat_prev
    assert moved == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(flat_prev), rel=1e-6)


@pytest.mark.parametrize("generation", ["keras", "tf_keras"])
def test_a_watched_model_still_saves_and_reloads(generation, request, tf, xy, tmp_path):
    K = request.getfixturevalue(generation)
    model = K.Sequential([K.Input((4,)), K.layers.Dense(2, name="head")], name="saved")
    model.compile(optimizer="sgd", loss="mse")
    cb = hw.watch(model)
    model.fit(*xy, epochs=1, batch_size=16, verbose=0, callbacks=[cb])
    path = str(tmp_path / ("m.keras" if generation == "keras" else "m_savedmodel"))
    model.save(path)
    d = hw.diff(path, model)
    assert d.changed == [] and len(d) == 2


def test_every_n_steps_counts_steps_not_calls_with_steps_per_execution(keras, tf, xy):
    model = k3_model(keras)
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    cb = hw.watch(model, every=3)
    model.fit(*xy, epochs=2, batch_size=4, verbose=0, callbacks=[cb])  # 16 steps, 8 calls
    assert cb.history.steps == [4, 6, 10, 12, 16]  # the first call at or past 3, 6, 9, 12, 15


# -- hostile cases (issue 27) ----------------------------------------------------------------
@pytest.mark.parametrize("raised", [KeyboardInterrupt, RuntimeError])
def test_a_fit_interrupted_by_a_callback_ends_the_run(keras, tf, xy, raised):
    from recording_comm import recording_comms

    model = k3_model(keras)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    with recording_comms():
        cb = hw.watch(model, min_refresh_s=0)
        panel = cb.panel

        def stop(batch, logs=None):
            if batch == 2:
                raise raised("stopped by the user")

        seen_running = []
        probe = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs=None: seen_running.append(cb.running))
        with pytest.raises(raised):
            model.fit(*xy, epochs=3, batch_size=8, verbose=0,
                      callbacks=[cb, probe, keras.callbacks.LambdaCallback(
                          on_train_batch_end=stop)])
        assert seen_running == [True, True, True]  # inside fit, it is running
        assert cb.running is False and cb.interrupted is True
        assert cb._start is None  # the start snapshot is released
        assert "interrupted" in panel.status.value and "(training)" not in panel.status.value
        assert cb.diff is not None and cb.diff.changed  # start of fit -> where it stopped
        # the next fit runs and ends as usual
        model.fit(*xy, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
        assert cb.running is False and cb.interrupted is False and "done" in panel.status.value


def test_a_watcher_never_fitted_is_not_running(keras, tf):
    model = k3_model(keras)
    model.build((None, 4))
    cb = hw.watch(model)
    assert cb.running is False and cb.interrupted is False
