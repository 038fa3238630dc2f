"""What each node says about LoRA and quantized layers: rank and mode read from the live
layer, notes on what trains, counts equal to Keras' count_params(), bytes what the variables
hold, and a quantized kernel's logical weight count."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from keras_hub_models import bert, gemma, vit

pytest.importorskip("keras_hub")
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")

BACKBONES = {"gemma": gemma, "bert": bert, "vit": vit}


@pytest.fixture(autouse=True)
def _tensorflow_set_up_first(tf):
    """TensorFlow's devices are configured by the session's ``tf`` fixture before use."""


def distinct_bytes(layer):
    seen, total = set(), 0
    for v in layer.weights:
        if id(v) not in seen:
            seen.add(id(v))
            total += np.asarray(v.numpy()).nbytes
    return total


@pytest.mark.parametrize("mode", [None, "int8", "int4", "float8"])
@pytest.mark.parametrize("kind", list(BACKBONES))
def test_every_node_counts_like_keras_and_says_rank_and_mode(kind, mode):
    model = BACKBONES[kind]()
    if mode:
        model.quantize(mode)
    if mode != "float8" or kind != "gemma":  # float8 leaves Gemma's embedding as it is
        model.enable_lora(2)
    tree = hw.inspect(model)
    lora, quantized = 0, 0
    for node in tree:
        if not node.keras_layer:
            continue
        layer = node.obj
        assert node.params == layer.count_params(), node.path
        assert node.nbytes == distinct_bytes(layer), node.path
        expected_rank = layer.lora_rank if getattr(layer, "lora_enabled", False) else None
        assert node.lora_rank == expected_rank
        assert node.quantization == getattr(layer, "quantization_mode", None)
        lora += node.lora_rank is not None
        quantized += node.quantization is not None
        if node.lora_rank is not None:
            [note] = [n for n in node.notes if n.startswith("LoRA")]
            assert f"rank {node.lora_rank}" in note and "base kernel stays frozen" in note
            assert "lora_kernel_a" in note or "lora_embeddings_a" in note
        if node.quantization in ("int8", "int4"):
            [note] = [n for n in node.notes if n.startswith("quantized")]
            assert "cannot train" in note and "no gradient changes an integer" in note
    keras_lora = [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", 0)]
    assert lora == len(keras_lora) and (lora > 0) == (mode != "float8" or kind != "gemma")
    assert (quantized > 0) == bool(mode)
    assert tree.root.params == model.count_params()


def test_int4_logical_weights_and_bytes(keras):
    dense = keras.layers.Dense(64, name="d")
    model = keras.Sequential([keras.Input((64,)), dense])
    model.quantize("int4")
    node = hw.inspect(model).find("d")
    assert node.quantization == "int4"
    assert node.logical_weights == 64 * 64
    assert node.params == dense.count_params()  # Keras counts stored elements: half of them
    assert any("4,096 weights in 2,048 bytes (int4)" in n for n in node.notes)
    kernel = next(v for v in node.variables if v.name == "kernel")
    assert kernel.nbytes == 2048 and kernel.dtype == "int8"


def test_int8_and_einsum_int4_logical_weights(keras):
    einsum = keras.layers.EinsumDense("ab,bcd->acd", output_shape=(3, 5), name="e")
    dense = keras.layers.Dense(6, name="d")
    model = keras.Sequential([keras.Input((4,)), einsum, keras.layers.Reshape((15,)), dense])
    model.quantize("int4")
    tree = hw.inspect(model)
    assert tree.find("e").logical_weights == 4 * 3 * 5
    assert tree.find("d").logical_weights == 15 * 6
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7, name="d8")])
    other.quantize("int8")
    node = hw.inspect(other).find("d8")
    assert node.logical_weights == 28
    assert any("28 weights in 28 bytes (int8)" in n for n in node.notes)
    assert hw.inspect(other).find("d8").lora_rank is None


def test_explorer_rows_badge_lora_rank_and_mode():
    model = gemma()
    model.quantize("int8")
    model.enable_lora(4)
    explorer = hw.LayerExplorer(model)
    block = hw.inspect(model).find("decoder_block_0").path
    opened = [explorer.tree.root.path, block, block + "/attention"]
    rows = {r["path"]: r for r in explorer.visible_rows(opened)}
    query = rows[block + "/attention/query"]
    assert "LoRA r4" in query["badges"] and "int8" in query["badges"]
    assert query["lora_rank"] == 4 and query["quantization"] == "int8"
    key = rows[block + "/attention/key"]
    assert "int8" in key["badges"] and not any(b.startswith("LoRA") for b in key["badges"])
    assert rows[block]["lora_rank"] is None and rows[block]["quantization"] is None


def test_quantized_variables_say_why_they_never_train(keras):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    model.quantize("int8")
    explorer = hw.LayerExplorer(model)
    opened = [explorer.tree.root.path, explorer.tree.find("d").path]
    row = next(r for r in explorer.visible_rows(opened) if r["path"].endswith("/d"))
    why = {v["name"]: v["not_trained_why"] for v in row["variables"]}
    assert "integer codes of a quantized layer" in why["kernel"]
    assert "quantization" in why["kernel_scale"] and "counter" not in why["kernel_scale"]
    assert why["bias"] == ""
