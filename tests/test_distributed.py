"""Models built under tf.distribute.MirroredStrategy (two logical CPUs): inspected, given
statistics on each replica's device, frozen, and trained."""

from __future__ import annotations

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
