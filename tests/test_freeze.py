"""Freezing that training follows: one real SGD step, then frozen weights are bit-identical."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from model_state import (GENERATIONS, UNDO_FREEZES, model_state, repeated_names_model,
                         sgd_step_changes, undo_freezes)


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


# -- Hostile freezes: a repeated name, unfreezing part freezes, tf_keras variables, arguments of the
#    wrong kind (each refused with the model unchanged)
@pytest.mark.parametrize("generation", GENERATIONS)
def test_a_repeated_name_in_the_python_api_is_not_silently_the_first_layer(generation, request,
                                                                          tf):
    K = request.getfixturevalue(generation)
    model = repeated_names_model(K, tf)
    before = model_state(model)
    try:
        hw.freeze(model, "hidden")
    except KeyError as exc:  # refused as ambiguous: fine, if it names the paths
        assert "m/hidden[2]" in exc.args[0]
        assert model_state(model) == before
    else:
        assert [layer.trainable for layer in model.h] == [False, False, False]


@pytest.mark.parametrize("generation", GENERATIONS)
def test_a_variable_of_the_third_repeated_layer_is_the_third_layers(generation, request, tf):
    K = request.getfixturevalue(generation)
    model = repeated_names_model(K, tf)
    if generation == "tf_keras":
        with pytest.raises(hw.FreezeError, match=r"Freeze the layer 'm/hidden\[2\]' instead"):
            hw.freeze(model, "m/hidden[2]/kernel")
        assert all(layer.trainable for layer in model.h)
        return
    hw.freeze(model, "m/hidden[2]/kernel")
    assert [id(w) for w in model.weights if not w.trainable] == [id(model.h[2].kernel)]


@pytest.mark.parametrize("how", UNDO_FREEZES)
def test_unfreeze_undoes_a_keras3_kernel_freeze(how, keras, tf):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
    tree = hw.freeze(model, "m/d/kernel")
    assert [(v.path, v.trainable) for v in tree.variables()] == [
        ("m/d/kernel", False), ("m/d/bias", True)]
    assert len(model.trainable_weights) == 1
    undo_freezes(model, how)
    tree = hw.inspect(model)
    assert all(v.trainable for v in tree.variables())
    assert len(model.trainable_weights) == 2 and tree.root.trainable_params == 8
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    assert sgd_step_changes(model, tf, 3, 2) == {id(w) for w in model.weights}


def tfk_model(tf_keras):
    tf_keras.utils.set_random_seed(2)
    return tf_keras.Sequential([
        tf_keras.layers.Dense(3, input_shape=(4,), name="a"),
        tf_keras.layers.BatchNormalization(name="bn"),
        tf_keras.layers.Dense(2, name="b"),
    ], name="tm")


@pytest.mark.parametrize("via", ["hw.freeze", "hw.unfreeze", "hw.set_trainable", "explorer"])
@pytest.mark.parametrize("variable", ["tm/a/kernel", "tm/bn/gamma", "tm/b/bias"])
def test_tf_keras_per_variable_freeze_is_refused(tf_keras, variable, via):
    model = tfk_model(tf_keras)
    if via == "hw.unfreeze":
        hw.freeze(model, variable.rsplit("/", 1)[0])
    before = model_state(model)
    layer = variable.split("/")[1]
    if via == "explorer":  # variable rows have no toggle; a forged message is refused
        explorer = hw.LayerExplorer(model)
        explorer.handle_action({"action": "set_trainable", "path": variable, "value": False})
        assert explorer.message.startswith(f"No layer or module '{variable}'")
    elif via != "hw.set_trainable":
        with pytest.raises(hw.FreezeError) as err:
            if via == "hw.freeze":
                hw.freeze(model, variable)
            else:
                hw.unfreeze(model, variable)
        text = str(err.value)
        assert "tf_keras" in text and f"Freeze the layer 'tm/{layer}' instead" in text
    else:  # set_trainable takes layers only
        with pytest.raises(KeyError, match=f"No layer or module '{variable}'"):
            hw.set_trainable(model, variable, False)
    assert model_state(model) == before


@pytest.mark.parametrize("frozen", [["a"], ["bn"], ["b"], ["a", "bn"], ["a", "bn", "b"]])
def test_tf_keras_h5_round_trip_after_whole_layer_freezes(tf_keras, tmp_path, frozen, tf):
    model = tfk_model(tf_keras)
    hw.freeze(model, *frozen)
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    sgd_step_changes(model, tf, 4, 2)  # values that differ from a fresh model's
    path = str(tmp_path / "w.h5")
    model.save_weights(path)
    fresh = tfk_model(tf_keras)
    fresh.load_weights(path)
    assert [w.name for w in fresh.weights] == [w.name for w in model.weights]
    for saved, loaded in zip(model.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
    assert {layer.name for layer in model.layers if not layer.trainable} == set(frozen)


def test_an_invalid_regex_in_the_python_api_is_said_to_be_invalid(three_dense):
    before = model_state(three_dense)
    with pytest.raises(KeyError) as err:
        hw.freeze(three_dense, "d[")
    assert "nor a valid regular expression" in err.value.args[0]
    assert model_state(three_dense) == before


@pytest.mark.parametrize("via", ["explorer", "hw.freeze_up_to"])
def test_the_model_itself_keeps_its_quote(three_dense, via):
    before = model_state(three_dense)
    if via == "explorer":
        explorer = hw.LayerExplorer(three_dense)
        explorer.handle_action({"action": "freeze_up_to", "path": "m"})
        text = explorer.message
    else:
        with pytest.raises(hw.FreezeError) as err:
            hw.freeze_up_to(three_dense, "m")
        text = str(err.value)
    assert text == "'m' is the model itself; pick one of its layers."
    assert model_state(three_dense) == before


@pytest.mark.parametrize("call", ["freeze", "unfreeze"])
@pytest.mark.parametrize("empty", ["", "   ", "\n"])
def test_an_empty_pattern_is_refused(three_dense, call, empty):
    before = model_state(three_dense)
    with pytest.raises(ValueError, match="An empty pattern matches nothing"):
        getattr(hw, call)(three_dense, empty)
    assert model_state(three_dense) == before


@pytest.mark.parametrize("call", ["freeze", "unfreeze", "freeze_up_to", "set_trainable"])
def test_a_path_is_refused_with_load_it_first(three_dense, tmp_path, call):
    path = tmp_path / "m.keras"
    three_dense.save(path)
    on_disk = path.read_bytes()
    args = {"freeze": (), "unfreeze": (), "freeze_up_to": ("d1",),
            "set_trainable": ("d1", False)}[call]
    for target in (str(path), path):
        with pytest.raises(hw.FreezeError, match="Load the model first"):
            getattr(hw, call)(target, *args)
    assert path.read_bytes() == on_disk


@pytest.mark.parametrize("bad", [["d1"], None, 3, ("d1",), b"d1", {"d1"}])
@pytest.mark.parametrize("call", ["freeze", "unfreeze"])
def test_a_pattern_that_is_not_a_string_is_a_clear_type_error(three_dense, call, bad):
    before = model_state(three_dense)
    with pytest.raises(TypeError, match="Layers are named by strings .* Pass them as separate "
                                        "arguments"):
        getattr(hw, call)(three_dense, bad)
    assert model_state(three_dense) == before


@pytest.mark.parametrize("flag", ["false", 0, 1, None, "True"])
def test_set_trainable_flag_must_be_a_bool(three_dense, flag):
    before = model_state(three_dense)
    with pytest.raises(TypeError, match="flag must be True or False"):
        hw.set_trainable(three_dense, "d1", flag)
    assert model_state(three_dense) == before


@pytest.mark.parametrize("entries", [
    ("d1", "nosuch"), ("d1", None), ("d1", ""), ("d1", ["d2"]), ("d1", "m/d2/kernel", "zz"),
])
@pytest.mark.parametrize("call", ["freeze", "unfreeze"])
def test_one_bad_entry_among_good_ones_changes_nothing(three_dense, call, entries):
    if call == "unfreeze":
        hw.freeze(three_dense)
    before = model_state(three_dense)
    with pytest.raises((KeyError, TypeError, ValueError)):
        getattr(hw, call)(three_dense, *entries)
    assert model_state(three_dense) == before


@pytest.mark.parametrize("include", ["false", "no", 1, None])
def test_freeze_up_to_include_must_be_a_bool(three_dense, include):
    before = model_state(three_dense)
    with pytest.raises(TypeError, match="True or False"):
        hw.freeze_up_to(three_dense, "d2", include=include)
    assert model_state(three_dense) == before


def test_a_name_that_matches_nothing_is_a_hubwidgets_error_naming_a_layer(keras):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense_a")],
                             name="nf")
    for call in (lambda: hw.freeze(model, "dense_b"), lambda: hw.freeze_up_to(model, "dense_b"),
                 lambda: hw.unfreeze(model, "(a*)*c")):
        with pytest.raises(hw.NotFoundError, match="No layer or module") as caught:
            call()
        assert isinstance(caught.value, hw.HubWidgetsError) and isinstance(caught.value, KeyError)
        assert not str(caught.value).startswith(("'", '"'))  # not KeyError's quoted text
    assert model.layers[0].trainable
