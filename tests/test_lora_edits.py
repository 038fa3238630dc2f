"""Edits mean what they say on LoRA and quantized layers: scaling a layer by f scales its
output by f (checked on the layer's real output), reset puts the adapters back to the base
weights, and what has no honest meaning is refused with the reason and nothing changed."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.errors import EditError
from keras_hub_models import bert

pytest.importorskip("keras_hub")
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")


@pytest.fixture(autouse=True)
def _tensorflow_set_up_first(tf):
    """TensorFlow's devices are configured by the session's ``tf`` fixture before use."""


def one_layer(keras, kind, mode=None, lora=True):
    """A model holding one layer ``d`` (Dense, EinsumDense or Embedding), quantized and/or
    with LoRA adapters whose B factor is non-zero (as after some training)."""
    if kind == "dense":
        layer, inp = keras.layers.Dense(6, name="d"), keras.Input((5,))
    elif kind == "einsum":
        layer = keras.layers.EinsumDense("ab,bc->ac", output_shape=6, bias_axes="c", name="d")
        inp = keras.Input((5,))
    else:
        layer, inp = keras.layers.Embedding(9, 6, name="d"), keras.Input((3,), dtype="int32")
    model = keras.Model(inp, layer(inp), name=f"{kind}_{mode}_{lora}")
    rng = np.random.default_rng(1)
    if getattr(layer, "bias", None) is not None:
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    if mode:
        model.quantize(mode)
    if lora:
        layer.enable_lora(2)
        b = layer.lora_kernel_b if hasattr(layer, "lora_kernel_b") else layer.lora_embeddings_b
        b.assign(rng.normal(size=b.shape).astype("float32"))
    return model, layer


def inputs_for(kind):
    rng = np.random.default_rng(2)
    if kind == "embedding":
        return rng.integers(0, 9, size=(4, 3)).astype("int32")
    return rng.normal(size=(4, 5)).astype("float32")


def values(model):
    return {v.path: np.array(v.numpy()) for v in model.weights}


@pytest.mark.parametrize("mode", [None, "int8"])
@pytest.mark.parametrize("kind", ["dense", "einsum", "embedding"])
def test_scaling_a_lora_layer_scales_its_output(keras, kind, mode):
    model, layer = one_layer(keras, kind, mode)
    x = inputs_for(kind)
    before = np.array(model(x))
    hw.scale_weights(model, "d", 2.0)
    after = np.array(model(x))
    np.testing.assert_allclose(after, 2.0 * before, rtol=2e-6, atol=1e-6)
    a = layer.lora_kernel_a if hasattr(layer, "lora_kernel_a") else layer.lora_embeddings_a
    hw.undo(model)
    np.testing.assert_array_equal(np.array(model(x)), before)
    assert a.trainable  # edits never change flags


def test_scaling_a_quantized_layer_without_adapters(keras):
    for mode, tol in (("int8", 2e-6), ("float8", 0.02)):
        model, _ = one_layer(keras, "dense", mode, lora=False)
        x = inputs_for("dense")
        before = np.array(model(x))
        hw.scale_weights(model, "d", 2.0)
        np.testing.assert_allclose(np.array(model(x)), 2.0 * before, rtol=tol, atol=tol)


def test_the_explorer_says_what_scaling_did_and_its_code_does_the_same(keras):
    model, layer = one_layer(keras, "dense", "int8")
    copy, _ = one_layer(keras, "dense", "int8")
    for v, w in zip(copy.weights, model.weights):
        v.assign(w)
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "scale_weights", "path": explorer.tree.find("d").path,
                            "factor": 3.0})
    assert "not lora_*_a" in explorer.message and "scale divided" in explorer.message
    plain = explorer.code.split("# the same in plain Keras / TensorFlow:\n")[1]
    exec(plain, {"model": copy})
    x = inputs_for("dense")
    np.testing.assert_allclose(np.array(copy(x)), np.array(model(x)), rtol=1e-6)


def test_int4_scaling_is_refused_and_changes_nothing(keras):
    model, _ = one_layer(keras, "dense", "int4")
    kept = values(model)
    with pytest.raises(EditError, match="int4 packs two per byte"):
        hw.scale_weights(model, "d", 2.0)
    assert all(np.array_equal(kept[p], v) for p, v in values(model).items())


@pytest.mark.parametrize("action,arg", [("prune_weights", 0.5), ("add_noise", 0.1)])
def test_prune_and_noise_on_a_whole_lora_layer_are_refused(keras, action, arg):
    model, layer = one_layer(keras, "dense")
    kept = values(model)
    with pytest.raises(EditError, match="no honest meaning") as err:
        getattr(hw, action)(model, "d", arg)
    assert "Hub" not in str(err.value) and "lora_kernel_b" in str(err.value)
    assert all(np.array_equal(kept[p], v) for p, v in values(model).items())
    # one named float variable: exactly that tensor
    getattr(hw, action)(model, hw.inspect(model).find("d").path + "/lora_kernel_b", arg)
    changed = {p for p, v in values(model).items() if not np.array_equal(kept[p], v)}
    assert changed == {layer.lora_kernel_b.path}


def test_reset_of_a_lora_layer_gives_back_its_base_output(keras):
    model, layer = one_layer(keras, "dense")
    x = inputs_for("dense")
    base_only = x @ np.array(layer._kernel.numpy()) + np.array(layer.bias.numpy())
    kernel = np.array(layer._kernel.numpy())
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "reset_weights", "path": explorer.tree.find("d").path})
    assert "lora_*_b went back to zeros" in explorer.message
    np.testing.assert_allclose(np.array(model(x)), base_only, rtol=1e-5, atol=1e-6)
    assert not np.any(layer.lora_kernel_b.numpy())
    np.testing.assert_array_equal(layer._kernel.numpy(), kernel)
    assert "np.zeros(layer.lora_kernel_b.shape" in explorer.code


def test_reset_refusals_say_the_real_reason(keras):
    model, layer = one_layer(keras, "dense", "int8", lora=False)
    kept = values(model)
    path = hw.inspect(model).find("d").path
    with pytest.raises(EditError, match="quantized \\(int8\\)") as err:
        hw.reset_weights(model, "d")
    assert "Hub" not in str(err.value)
    with pytest.raises(EditError, match="part of the layer's int8 quantization"):
        hw.reset_weights(model, path + "/kernel_scale")
    with pytest.raises(EditError, match="int8 codes of a quantized layer"):
        hw.prune_weights(model, path + "/kernel", 0.5)
    f8, f8_layer = one_layer(keras, "dense", "float8", lora=False)
    f8_path = hw.inspect(f8).find("d").path
    with pytest.raises(EditError, match="amax histories") as err:
        hw.reset_weights(f8, "d")
    assert "Hub" not in str(err.value)
    f8_layer.kernel.assign(np.full(f8_layer.kernel.shape, 9.0, "float32"))  # "trained"
    kernel = np.array(f8_layer.kernel.numpy())
    hw.reset_weights(f8, f8_path + "/kernel$")  # named: its kernel_initializer draws it again
    assert not np.array_equal(kernel, f8_layer.kernel.numpy())
    lora_model, _ = one_layer(keras, "dense")
    with pytest.raises(EditError, match="A factor of a LoRA adapter"):
        hw.reset_weights(lora_model, hw.inspect(lora_model).find("d").path + "/lora_kernel_a")
    assert all(np.array_equal(kept[p], v) for p, v in values(model).items())


def test_scaling_a_bert_attention_query_scales_its_output():
    model = bert()
    model.enable_lora(2)
    tree = hw.inspect(model)
    query = tree.find("query")
    layer = query.obj
    layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.3, "float32"))
    x = np.random.default_rng(3).normal(size=(2, 4, 8)).astype("float32")
    before = np.array(layer(x))
    hw.scale_weights(model, query.path, -1.5)
    np.testing.assert_allclose(np.array(layer(x)), -1.5 * before, rtol=2e-5, atol=1e-6)


def test_the_refusal_on_a_quantized_layer_without_lora_speaks_of_its_codes_only(keras):
    model, layer = one_layer(keras, "dense", mode="int8", lora=False)
    kept = values(model)
    with pytest.raises(EditError, match="no honest meaning") as err:
        hw.prune_weights(model, "d", 0.5)
    text = str(err.value)
    assert "integer codes times a scale" in text
    assert "alpha/rank" not in text and "lora_kernel_b" not in text  # it has no adapters
    assert f"{layer.bias.path.split('/')[-1]}" in text  # names a float variable it has
    assert all(np.array_equal(kept[p], v) for p, v in values(model).items())
