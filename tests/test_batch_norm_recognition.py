"""One recogniser of BatchNormalization for the tree's notes and for ``diff``'s audit:
synchronized BatchNormalization (tf_keras ``SyncBatchNormalization``, Keras 3
``BatchNormalization(synchronized=True)``) gets the same explanation as the plain layer,
and what the note says (a frozen one runs in inference mode) is checked by a real fit."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.notes import FROZEN_BN_NOTE, MODULE_BN_NOTE, is_batch_norm_class

BN_FIX = {"Keras 3": "inference mode", "tf_keras": "training=False"}


def sync_bn_model(generation, keras, tf_keras):
    """Dense -> synchronized BatchNormalization -> Dense, built, compiled with SGD."""
    if generation == "Keras 3":
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="mid"),
                                  keras.layers.BatchNormalization(synchronized=True,
                                                                  name="sync_bn"),
                                  keras.layers.Dense(2, name="head")], name="net")
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    else:
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([
            tf_keras.layers.Dense(6, input_shape=(4,), name="mid"),
            tf_keras.layers.experimental.SyncBatchNormalization(name="sync_bn"),
            tf_keras.layers.Dense(2, name="head")], name="net")
        model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    return model


@pytest.fixture
def xy(tf):
    return (tf.random.stateless_normal((16, 4), seed=(1, 2)).numpy() * 3 + 1,
            tf.random.stateless_normal((16, 2), seed=(3, 4)).numpy())


def bn_values(model):
    layer = model.get_layer("sync_bn")
    return [np.array(w.numpy()) for w in layer.weights]


@pytest.mark.parametrize("generation", ["Keras 3", "tf_keras"])
def test_frozen_sync_batch_norm_is_noted_and_really_runs_in_inference_mode(
        generation, keras, tf_keras, xy):
    model = sync_bn_model(generation, keras, tf_keras)
    assert hw.inspect(model).find("sync_bn").notes == []  # trainable: nothing to say

    tree = hw.freeze(model, "sync_bn")
    assert FROZEN_BN_NOTE in tree.find("sync_bn").notes
    assert FROZEN_BN_NOTE in hw.inspect(model).find("sync_bn").notes
    for node in tree:  # the note is on the BatchNormalization node only
        if node.path != tree.find("sync_bn").path:
            assert FROZEN_BN_NOTE not in node.notes, node.path

    # what the note claims: a fit step leaves gamma, beta and the moving statistics alone
    model.compile(optimizer=model.optimizer.__class__(0.1), loss="mse")
    before = bn_values(model)
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)
    assert all(np.array_equal(b, a) for b, a in zip(before, bn_values(model), strict=True))

    hw.unfreeze(model, "sync_bn")
    assert FROZEN_BN_NOTE not in hw.inspect(model).find("sync_bn").notes


@pytest.mark.parametrize("generation", ["Keras 3", "tf_keras"])
def test_diff_explains_sync_batch_norm_statistics_after_a_training_step(
        generation, keras, tf_keras, xy):
    model = sync_bn_model(generation, keras, tf_keras)
    before = hw.snapshot(model)
    stats_before = {v.path: np.array(v.variable.numpy()) for v in hw.inspect(model).variables()
                    if not v.can_train}
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)  # training mode: statistics move
    d = hw.diff(before, model)

    live = {v.path: np.array(v.variable.numpy()) for v in hw.inspect(model).variables()}
    moved = sorted(p for p, x in stats_before.items() if not np.array_equal(x, live[p]))
    assert moved == ["net/sync_bn/moving_mean", "net/sync_bn/moving_variance"]
    assert sorted(i.path for i in d.frozen_changed) == moved
    for item in d.frozen_changed:
        assert "BatchNormalization moving statistics" in item.reason and item.certain
        assert BN_FIX[generation] in item.fix
    assert d.trainable_unchanged == []


@pytest.mark.parametrize("name", ["BatchNormalization", "SyncBatchNormalization",
                                  "BatchNormalizationV1", "BatchNormalizationV2"])
def test_batch_norm_class_names_are_recognised(name):
    assert is_batch_norm_class(name)


@pytest.mark.parametrize("name", ["LayerNormalization", "GroupNormalization", "Normalization",
                                  "UnitNormalization", "Dense", "", "batchnormalization"])
def test_other_normalizations_are_not_batch_norm(name):
    assert not is_batch_norm_class(name)


def test_a_subclass_of_sync_batch_norm_is_noted(tf_keras):
    class MySyncBN(tf_keras.layers.experimental.SyncBatchNormalization):
        pass

    model = tf_keras.Sequential([tf_keras.layers.Dense(3, input_shape=(2,)),
                                 MySyncBN(name="mine")])
    model.get_layer("mine").trainable = False
    assert FROZEN_BN_NOTE in hw.inspect(model).find("mine").notes


def test_sync_batch_norm_frozen_inside_a_training_hub_module_is_noted_and_still_trains(
        tf_keras, hub, tmp_path, xy):
    inner = sync_bn_model("tf_keras", None, tf_keras)
    inner.save(tmp_path / "saved", save_format="tf")
    outer = tf_keras.Sequential([hub.KerasLayer(str(tmp_path / "saved"), trainable=True,
                                                input_shape=(4,), name="hub")], name="outer")
    tree = hw.inspect(outer)
    sbn = next(n for n in tree if n.name == "sync_bn")
    assert sbn.class_name == "SyncBatchNormalization" and not sbn.keras_layer
    assert sbn.notes == []

    tree = hw.freeze(outer, sbn.path)  # gamma and beta frozen, the module still trains
    sbn = tree.find(sbn.path)
    assert sbn.notes == [MODULE_BN_NOTE]
    assert [n.path for n in tree if MODULE_BN_NOTE in n.notes] == [sbn.path]

    # what the note claims: a real fit step moves the statistics, not gamma and beta
    outer.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    variables = {v.name: v.variable for v in sbn.all_variables()}
    assert sorted(variables) == ["beta", "gamma", "moving_mean", "moving_variance"]
    before = {name: np.array(v.numpy()) for name, v in variables.items()}
    outer.fit(*xy, epochs=1, batch_size=8, verbose=0)
    moved = sorted(name for name, v in variables.items()
                   if not np.array_equal(before[name], v.numpy()))
    assert moved == ["moving_mean", "moving_variance"]
