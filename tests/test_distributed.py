"""Models built under tf.distribute.MirroredStrategy (two logical CPUs): inspected, given
statistics on each replica's device, frozen, and trained."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hubwidgets as hw


def mirrored_model(K, mirrored, name):
    with mirrored.scope():
        model = K.Sequential([K.Input((4,)), K.layers.Dense(3, name="base"),
                              K.layers.Dense(2, name="head")], name=name)
        model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    return model


@pytest.mark.parametrize("generation", ["keras", "tf_keras"])
def test_mirrored_model_inspect_stats_freeze_train(generation, request, mirrored, tf):
    K = request.getfixturevalue(generation)
    model = mirrored_model(K, mirrored, f"mirrored_{generation}")

    tree = hw.inspect(model)
    kernel = tree.find_variable(f"mirrored_{generation}/base/kernel")
    assert tree.root.params == 4 * 3 + 3 + 3 * 2 + 2
    assert [d.rsplit("/", 1)[-1] for d in kernel.device.split(", ")] == [
        "device:CPU:0", "device:CPU:1"]

    stats = hw.weight_stats(kernel)[kernel.path]
    assert [s.device.rsplit("/", 1)[-1] for s in stats.replicas] == ["device:CPU:0", "device:CPU:1"]
    assert stats.replicas_agree
    values = kernel.variable.numpy()
    assert stats.mean == pytest.approx(float(np.mean(values.astype(np.float64))), abs=1e-12)

    with mirrored.scope():
        hw.freeze(model, "base")
        assert hw.needs_compile(model)
        model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    x = tf.random.stateless_normal((8, 4), seed=(1, 2))
    y = tf.random.stateless_normal((8, 2), seed=(3, 4))
    before = {w.path if hasattr(w, "path") else w.name: np.array(w.numpy()) for w in model.weights}
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    changed = sorted(k for k, w in zip(before, model.weights) if not np.array_equal(before[k], w.numpy()))
    assert [k.split("/")[-2] if "/" in k else k for k in changed] == ["head", "head"]


def test_replicas_that_disagree_are_reported(mirrored, keras):
    model = mirrored_model(keras, mirrored, "diverged")
    kernel = model.get_layer("base").kernel
    replica_1 = kernel.value.values[1]  # corrupt one replica's copy on purpose
    replica_1.assign(replica_1 + 1.0)
    with pytest.warns(hw.ReplicaDriftWarning, match="diverged/base/kernel"):
        stats = hw.weight_stats(model)["diverged/base/kernel"]
    assert not stats.replicas_agree
    assert stats.replicas[1].mean == pytest.approx(stats.replicas[0].mean + 1.0)


def test_sync_on_read_statistics_are_the_aggregate_without_a_drift_warning(mirrored, tf_keras):
    """tf_keras keeps BatchNormalization's moving statistics sync-on-read under
    MirroredStrategy: each replica updates its own from its own batches, and the variable
    reads as their mean (what the model uses and saves).  Their statistics are the mean's,
    not the first replica's, and neither weight_stats nor the watcher calls it drift."""
    K = tf_keras
    with mirrored.scope():
        model = K.Sequential([K.Input((4,)), K.layers.Dense(3, name="d"),
                              K.layers.BatchNormalization(name="bn"), K.layers.Dense(1)],
                             name="sync_on_read")
        model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32") * 3.0 + 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", hw.ReplicaDriftWarning)
        model.fit(x, x[:, :1], batch_size=16, epochs=1, verbose=0, callbacks=[hw.watch(model)])
        stats = hw.weight_stats(model)
    bn = model.get_layer("bn")
    for v in (bn.moving_mean, bn.moving_variance):
        first, second = (np.asarray(c.numpy()) for c in v.values)
        assert not np.array_equal(first, second)  # each replica saw its own batches
        aggregate = np.asarray(v.numpy())
        np.testing.assert_allclose(aggregate, (first + second) / 2, rtol=1e-6)
        name = v.name.split("/")[-1].split(":")[0]
        s = stats[f"sync_on_read/bn/{name}"]
        assert (s.min, s.max) == (float(aggregate.min()), float(aggregate.max()))
        assert s.mean == pytest.approx(float(aggregate.astype(np.float64).mean()), rel=1e-12)
        assert s.replicas_agree


def test_an_edit_of_a_sync_on_read_variable_starts_from_its_aggregate(mirrored, tf_keras):
    """Scaling tf_keras BatchNormalization's moving mean under MirroredStrategy scales the
    value the variable reads as (the replicas' mean), not the first replica's; undo gives
    that value back."""
    K = tf_keras
    with mirrored.scope():
        model = K.Sequential([K.Input((4,)), K.layers.BatchNormalization(name="bn")],
                             name="sync_edit")
        model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(1).standard_normal((64, 4)).astype("float32") * 2.0 + 3.0
    model.fit(x, x, batch_size=16, epochs=1, verbose=0)
    mean = model.get_layer("bn").moving_mean
    first, second = (np.asarray(c.numpy()) for c in mean.values)
    assert not np.array_equal(first, second)
    before = np.asarray(mean.numpy())
    hw.scale_weights(model, "sync_edit/bn", 2.0)
    np.testing.assert_allclose(mean.numpy(), before * 2.0, rtol=1e-6)
    hw.undo(model)
    np.testing.assert_allclose(mean.numpy(), before, rtol=1e-6)
