"""Freezing that training follows: one real SGD step, then frozen weights are bit-identical."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw


def nested_model(K, name):
    inner = K.Sequential([K.layers.Dense(3, name="i1"), K.layers.BatchNormalization(name="ibn"),
                          K.layers.Dense(3, name="i2")], name="inner")
    inp = K.Input((4,))
    x = K.layers.Dense(5, name="a")(inp)
    out = K.layers.Dense(2, name="b")(inner(x))
    return K.Model(inp, out, name=name)


def train_step_changes(model, tf):
    """Run one SGD step; return {weight path: changed?} for every trainable-capable weight."""
    x = tf.random.stateless_normal((8, 4), seed=(1, 2))
    y = tf.random.stateless_normal((8, 2), seed=(3, 4))
    before = {id(w): np.array(w.numpy()) for w in model.weights}
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    return {id(w): not np.array_equal(before[id(w)], w.numpy()) for w in model.weights}


@pytest.mark.parametrize("generation", ["keras", "tf_keras"])
def test_freeze_part_then_train(generation, request, tf):
    K = request.getfixturevalue(generation)
    model = nested_model(K, f"freeze_{generation}")
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    tree = hw.unfreeze(hw.freeze(model), "inner/i2")
    assert hw.needs_compile(model)
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    assert not hw.needs_compile(model)
    assert [n.path.split("/", 1)[-1] for n in tree if n.trainable is True and n.params] == ["inner/i2"]
    i2 = model.get_layer("inner").get_layer("i2")
    changed = train_step_changes(model, tf)
    trainable = {id(w) for w in i2.weights}
    assert {i for i, c in changed.items() if c} == trainable
    assert tree.root.trainable_params == 3 * 3 + 3


@pytest.mark.parametrize("generation", ["keras", "tf_keras"])
def test_freeze_up_to_and_patterns(generation, request):
    K = request.getfixturevalue(generation)
    model = nested_model(K, f"upto_{generation}")
    tree = hw.freeze_up_to(model, "inner")
    assert [l.trainable for l in model.layers if l.weights] == [False, False, True]
    assert model.get_layer("inner").get_layer("ibn").trainable is False
    assert any("inference mode" in n for n in tree.find("ibn").notes)
    hw.unfreeze(model)
    tree = hw.freeze(model, r"i\d")
    assert [n.name for n in tree if n.trainable is False and n.params] == ["i1", "i2"]
    with pytest.raises(KeyError, match="No layer or module 'nosuchlayer'"):
        hw.freeze(model, "nosuchlayer")


def test_hub_keras_layer_whole_module(tfk_saved_model, hub, tf_keras, tf):
    layer = hub.KerasLayer(tfk_saved_model, trainable=True, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer, tf_keras.layers.Dense(2, name="head")])
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    hw.set_trainable(model, "hub", False)
    assert hw.needs_compile(model)
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    changed = train_step_changes(model, tf)
    head = {id(w) for w in model.get_layer("head").weights}
    assert {i for i, c in changed.items() if c} == head


def test_tf_module_variables_say_what_to_do(plain_module):
    with pytest.raises(hw.FreezeError, match="fixed when it is created"):
        hw.freeze(plain_module, "encoder")
