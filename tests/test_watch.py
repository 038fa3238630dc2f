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
    probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda *a: held.append(
        ([w.previous for layer in cb._layers for w in layer.weights], cb.held_bytes,
         cb._start)))
    model.fit(*xy, epochs=2, batch_size=16, verbose=0, callbacks=[cb, probe])
    assert held == [([None] * 6, 0, None)] * 2 and cb.held_bytes == 0
    assert all(math.isnan(r.update_ratio) for r in cb.history.records)
    assert {r.ratio_note for r in cb.history.records} == {"update_ratio=False: not recorded"}
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


def test_the_copy_held_is_of_the_weights_that_can_train_only(keras, tf, xy):
    """A frozen weight cannot move in fit: the watcher keeps no copy of it (on a LoRA
    fine-tune of a large model that copy would be most of the model)."""
    model = k3_model(keras)
    model.get_layer("base").trainable = False
    model.compile(optimizer="sgd", loss="mse")
    cb = hw.watch(model, diff=False)
    sizes = []
    probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda *a: sizes.append(cb.held_bytes))
    model.fit(*xy, epochs=2, batch_size=16, verbose=0, callbacks=[cb, probe])
    trainable = sum(np.asarray(v.numpy()).nbytes for v in model.trainable_weights)
    assert trainable == (8 + 8 + 8 * 2 + 2) * 4  # bn gamma, beta; head kernel, bias
    assert sizes == [trainable, trainable]
    assert [r.update_ratio for r in cb.history.layer("net/base")] == [0.0, 0.0]


def test_ratios_with_frozen_weights_equal_numpy_and_a_frozen_weight_that_moved_is_unknown(
        keras, tf, xy):
    """A layer with a frozen kernel and a trainable bias: its ratio is numpy's ‖Δw‖/‖w‖
    over both (the kernel's part of ‖w‖ without a copy of it).  A frozen layer written by a
    callback during fit: NaN with the reason (no copy was kept to say how far it moved),
    then exactly 0 again once it stays put."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="base"),
                              keras.layers.Dense(8, name="mid"),
                              keras.layers.Dense(2, name="head")], name="net")
    hw.freeze(model, "net/base/kernel", "net/mid")
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    cb = hw.watch(model, diff=False)
    oracle = Oracle(keras, model)
    mid = model.get_layer("mid").kernel

    def write(epoch, logs=None):
        if epoch == 1:
            mid.assign(mid * 1.5)

    writer = keras.callbacks.LambdaCallback(on_epoch_end=write)
    model.fit(*xy, epochs=3, batch_size=8, verbose=0,
              callbacks=[oracle.begin, writer, cb, oracle.callback])
    assert cb.held_bytes == (8 + 8 * 2 + 2) * 4  # base's bias, head's kernel and bias
    weights = [v.path for v in hw.inspect(model).variables()]
    for path in ("net/base", "net/head"):
        for record in cb.history.layer(path):
            now = np.concatenate(layer_weights(oracle.states[record.interval], path, weights))
            before = np.concatenate(layer_weights(
                oracle.states[record.interval - 1] if record.interval else oracle.start,
                path, weights))
            assert record.update_ratio == pytest.approx(
                np.linalg.norm(now - before) / np.linalg.norm(before), rel=1e-9)
            assert record.update_ratio > 0 and record.ratio_note == ""
    ratios = [r.update_ratio for r in cb.history.layer("net/mid")]
    assert ratios[0] == 0.0 and math.isnan(ratios[1]) and ratios[2] == 0.0
    assert "frozen when fit began changed" in cb.history.layer("net/mid")[1].ratio_note
    check_records_but_ratios = [r for r in cb.history.layer("net/mid")]
    for record in check_records_but_ratios:  # its statistics are still numpy's
        values = np.concatenate(layer_weights(oracle.states[record.interval], "net/mid",
                                              weights))
        assert record.norm == pytest.approx(np.linalg.norm(values), rel=1e-9)
        assert (record.min, record.max) == (values.min(), values.max())
        np.testing.assert_array_equal(record.counts, np.histogram(values, bins=record.edges)[0])


def test_a_record_holds_no_host_copy_of_the_model(keras, tf, monkeypatch):
    """Every record reads the weights in place, a few layers at a time: the host memory it
    allocates (tracemalloc traces numpy's) stays under a quarter of one layer, on a model of
    64 MB with two frozen layers and two that train."""
    import tracemalloc

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2048,))] + [
        keras.layers.Dense(2048, name=f"d{i}") for i in range(4)], name="wide")
    model.get_layer("d0").trainable = model.get_layer("d1").trainable = False
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 2048)).astype("float32")
    cb = hw.watch(model, diff=False)
    peaks = []
    before = keras.callbacks.LambdaCallback(on_epoch_end=lambda *a: tracemalloc.reset_peak())
    after = keras.callbacks.LambdaCallback(on_epoch_end=lambda *a: peaks.append(
        tracemalloc.get_traced_memory()[1] - start[0]))
    start = [0]
    tracemalloc.start()
    try:
        probe = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda *a: start.__setitem__(0, tracemalloc.get_traced_memory()[0]))
        model.fit(x, x, epochs=2, batch_size=8, verbose=0, callbacks=[probe, before, cb, after])
    finally:
        tracemalloc.stop()
    layer_bytes = 2048 * 2048 * 4
    assert cb.held_bytes == 2 * (layer_bytes + 2048 * 4)  # d2 and d3
    assert len(peaks) == 2 and max(peaks) < layer_bytes / 4, peaks
    assert [r.update_ratio for r in cb.history.layer("wide/d0")] == [0.0, 0.0]
    assert all(r.update_ratio > 0 for r in cb.history.layer("wide/d3"))


def test_a_copy_of_the_trainable_weights_that_would_not_fit_is_refused_before_fit(
        keras, tf, xy, monkeypatch):
    from hubwidgets.model import memory_guard

    model = k3_model(keras)
    model.get_layer("base").trainable = False
    model.compile(optimizer="sgd", loss="mse")
    start = [np.array(v.numpy()) for v in model.weights]
    trainable = sum(np.asarray(v.numpy()).nbytes for v in model.trainable_weights)
    monkeypatch.setattr(memory_guard, "SMALL_BYTES", 0)
    monkeypatch.setattr(memory_guard, "available_bytes",
                        lambda: memory_guard.HEADROOM_BYTES + trainable - 1)
    cb = hw.watch(model, diff=False)
    with pytest.raises(hw.InsufficientMemoryError) as refused:
        model.fit(*xy, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
    message = str(refused.value)
    assert "update_ratio=False" in message and "layers=[" in message
    assert "nothing was allocated" in message
    assert cb.held_bytes == 0 and not cb.running
    for value, kept in zip(model.weights, start):  # fit never began
        np.testing.assert_array_equal(value.numpy(), kept)
    # exactly the trainable weights fit: the frozen layer needs no room
    monkeypatch.setattr(memory_guard, "available_bytes",
                        lambda: memory_guard.HEADROOM_BYTES + trainable)
    model.fit(*xy, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
    assert cb.held_bytes == trainable
    # and update_ratio=False needs none at all
    monkeypatch.setattr(memory_guard, "available_bytes", lambda: 0)
    quiet = hw.watch(model, diff=False, update_ratio=False)
    model.fit(*xy, epochs=1, batch_size=8, verbose=0, callbacks=[quiet])
    assert len(quiet.history) == 3


@pytest.mark.parametrize("case", ["bias inside", "bias outside", "nan and inf", "bfloat16",
                                  "float16 beside float32", "an empty part", "constant"])
def test_a_layer_of_several_variables_is_reduced_without_concatenating_them(case):
    """A layer's figures from its variables' own reductions (combined, and binned again on
    the layer's range where a variable's own edges differ) equal numpy's on the layer's
    values concatenated (NaN and Inf left out and counted)."""
    from hubwidgets.model import watch_reductions as reduce
    from hubwidgets.model.host_stats import BFLOAT16

    rng = np.random.default_rng(7)
    kernel = rng.normal(size=3000).astype(np.float32)
    bias = rng.normal(size=40).astype(np.float32) * 0.1
    parts = {"bias inside": [kernel, bias], "bias outside": [kernel, bias + 10.0],
             "nan and inf": [np.append(kernel, [np.nan, np.inf]), np.append(bias, -np.inf)],
             "bfloat16": [kernel.astype(BFLOAT16), bias.astype(BFLOAT16) - 5],
             "float16 beside float32": [kernel.astype(np.float16), bias * 50],
             "an empty part": [kernel, np.zeros(0, np.float32)],
             "constant": [np.full(10, 2.0, np.float32), np.full(3, 2.0, np.float32)]}[case]
    [stats] = reduce.layer_stats([parts], 16)
    values = np.concatenate([p.astype(np.float64) for p in parts])
    finite = values[np.isfinite(values)]
    assert stats["nonfinite"] == values.size - finite.size
    assert stats["mean"] == pytest.approx(finite.mean(), rel=1e-12, abs=1e-15)
    assert stats["std"] == pytest.approx(finite.std(), rel=1e-9, abs=1e-15)
    assert stats["norm"] == pytest.approx(np.linalg.norm(finite), rel=1e-12)
    assert (stats["min"], stats["max"]) == (finite.min(), finite.max())
    counts, edges = np.histogram(finite, bins=16)
    np.testing.assert_array_equal(stats["edges"], edges)
    np.testing.assert_array_equal(stats["counts"], counts)


def test_the_copy_is_updated_in_place_and_an_unchanged_block_adds_exactly_zero():
    from hubwidgets.model import watch_reductions as reduce

    rng = np.random.default_rng(3)
    before = rng.normal(size=3 * reduce.RATIO_BLOCK + 5).astype(np.float32)
    now = before.copy()
    now[-3:] += 1e-3  # only the last block moves
    held = before.copy()
    address = held.__array_interface__["data"][0]
    delta_sq, before_sq = reduce.moved_and_kept(now, held)
    wide = before.astype(np.float64)
    assert delta_sq == pytest.approx(np.sum((now - wide) ** 2), rel=1e-12)
    assert before_sq == pytest.approx(np.sum(wide ** 2), rel=1e-12)
    np.testing.assert_array_equal(held, now)  # the copy now holds this record's values
    assert held.__array_interface__["data"][0] == address  # no new allocation
    assert reduce.moved_and_kept(now, held)[0] == 0.0  # exactly
    assert reduce.digest(now) != reduce.digest(before)
    assert reduce.digest(now) == reduce.digest(held)


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


def test_tf_keras_with_a_frozen_hub_keras_layer(frozen_hub_classifier, tf_keras, tf, xy):
    model = frozen_hub_classifier
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
    with pytest.raises(hw.ArgumentError, match="'epoch' or a number of steps"):
        hw.watch(model, every=0)
    with pytest.raises(hw.ArgumentError, match="histogram bins >= 1"):
        hw.watch(model, bins=0)  # a HubWidgetsError (and still a ValueError)
    with pytest.raises(hw.HubWidgetsError, match="Keras 3 or tf_keras model"):
        hw.watch(plain_module)
    with pytest.raises(hw.HubWidgetsError, match=r"No layer or module 'nope'.*layers=None"):
        hw.watch(model, layers=["nope"])  # said now, not as a KeyError when fit begins
    with pytest.raises(hw.HubWidgetsError, match=r"a list of layer paths"):
        hw.watch(model, layers="head")
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
    figures as the host path, the same digest, and a ratio of exactly 0 for an unchanged
    layer."""
    from hubwidgets.model import watch_reductions as reduce

    model = k3_model(keras)
    layer = model.get_layer("head")
    weights = [reduce.watched_weight(v) for v in hw.inspect(model).find("head").variables]
    reads = [w.read for w in weights]
    prev = [reduce.device_copy(r) for r in reads]
    device = reduce.device_stats(reads, 16)
    [host] = reduce.layer_stats([reduce.host_views(weights)], 16)
    for key in ("mean", "std", "norm", "min", "max"):
        assert device[key] == pytest.approx(host[key], rel=1e-6), key
    np.testing.assert_array_equal(device["counts"], host["counts"])
    assert [reduce.device_moved(r, tf.constant(p))[0] for r, p in zip(reads, prev)] == [0, 0]
    assert [reduce.device_digest(r) for r in reads] == [
        reduce.digest(v) for v in reduce.host_views(weights)]
    layer.kernel.assign(layer.kernel * 2.0)
    moved = [reduce.device_moved(r, tf.constant(p)) for r, p in zip(reads, prev)]
    flat_prev = np.concatenate([p.ravel() for p in prev]).astype(np.float64)
    delta = np.concatenate([np.asarray(v.numpy()).ravel() for v in reads]) - flat_prev
    assert reduce.ratio(sum(d for d, _ in moved), sum(b for _, b in moved)) == \
        pytest.approx(np.linalg.norm(delta) / np.linalg.norm(flat_prev), rel=1e-6)
    assert reduce.device_sum_of_squares(reads[0]) == pytest.approx(
        float(np.sum(np.asarray(reads[0].numpy(), np.float64) ** 2)), rel=1e-12)


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


def test_in_ipython_the_run_ends_when_the_interrupted_cell_ends(keras, tf, xy):
    """Nobody needs to ask: the panel stops saying "training" when the cell is over."""
    from IPython.core.interactiveshell import InteractiveShell
    from recording_comm import recording_comms

    shell = InteractiveShell.instance()
    model = k3_model(keras)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")

    def stop(batch, logs=None):
        if batch == 1:
            raise KeyboardInterrupt

    with recording_comms():
        cb = hw.watch(model, min_refresh_s=0)
        panel = cb.panel
        shell.user_ns.update(model=model, cb=cb, xy=xy,
                             stop=keras.callbacks.LambdaCallback(on_train_batch_end=stop))
        result = shell.run_cell("model.fit(*xy, epochs=2, batch_size=8, verbose=0, "
                                "callbacks=[cb, stop])")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert cb._running is False and cb._start is None  # ended by the cell's end, not by a read
    assert "interrupted" in panel.status.value


def test_a_start_of_fit_too_large_for_memory_is_streamed_to_a_file_and_removed(
        keras, tf, xy, monkeypatch, tmp_path):
    import tempfile

    from hubwidgets.model import memory_guard

    model = k3_model(keras)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    reference_model = k3_model(keras, name="net")
    reference_model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    reference = hw.watch(reference_model, update_ratio=False)
    reference_model.fit(*xy, epochs=1, batch_size=8, verbose=0, callbacks=[reference])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(memory_guard, "SMALL_BYTES", 0)
    monkeypatch.setattr(memory_guard, "available_bytes", lambda: 1024)
    with pytest.raises(hw.InsufficientMemoryError):
        hw.snapshot(model)  # in memory: refused
    cb = hw.watch(model, update_ratio=False)
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: seen.append(sorted(p.name for p in tmp_path.iterdir())))
    model.fit(*xy, epochs=1, batch_size=8, verbose=0, callbacks=[cb, probe])
    assert len(seen[0]) == 1 and seen[0][0].startswith("hubwidgets-watch-")  # during fit
    assert list(tmp_path.iterdir()) == []  # removed at its end
    assert cb.diff.changed == reference.diff.changed
    for p in cb.diff:
        assert cb.diff[p].rel_change == reference.diff[p].rel_change
