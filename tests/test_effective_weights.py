"""``hw.effective_weights``: the kernel a quantized or LoRA layer computes with, checked
against the layer's own output on an identity input (int8, int4, float8, LoRA), and
``weight_stats(..., effective=True)`` against numpy on that kernel."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.errors import HubWidgetsError
from keras_hub_models import gemma

pytest.importorskip("keras_hub")
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")


@pytest.fixture(autouse=True)
def _tensorflow_set_up_first(tf):
    """TensorFlow's devices are configured by the session's ``tf`` fixture before use."""


def build(keras, kind, mode, lora):
    rng = np.random.default_rng(4)
    if kind == "dense":
        layer, inp = keras.layers.Dense(6, name="d"), keras.Input((5,))
    elif kind == "einsum3d":
        layer = keras.layers.EinsumDense("ab,bcd->acd", output_shape=(2, 3), name="d")
        inp = keras.Input((5,))
    else:
        layer, inp = keras.layers.Embedding(9, 6, name="d"), keras.Input((3,), dtype="int32")
    model = keras.Model(inp, layer(inp), name=f"eff_{kind}_{mode}_{lora}")
    base = layer.kernel if kind != "embedding" else layer.embeddings
    base.assign(rng.normal(size=base.shape).astype("float32"))
    if mode:
        model.quantize(mode)
    if lora:
        layer.enable_lora(2)
        b = layer.lora_kernel_b if kind != "embedding" else layer.lora_embeddings_b
        b.assign(rng.normal(size=b.shape).astype("float32") * 0.3)
    return model, layer


def output_on_identity(layer, kind):
    """What the layer computes for each basis vector (each token id): its kernel."""
    if kind == "embedding":
        return np.array(layer(np.arange(9, dtype="int32")))
    out = np.array(layer(np.eye(5, dtype="float32")))
    bias = getattr(layer, "bias", None)
    return out - (np.array(bias.numpy()) if bias is not None else 0)


CASES = [(k, m, lora) for k in ("dense", "einsum3d", "embedding")
         for m in (None, "int8", "int4", "float8") for lora in (False, True)
         if not (m == "float8" and (lora or k == "embedding")) and (m or lora)]


@pytest.mark.parametrize("kind,mode,lora", CASES)
def test_effective_kernel_is_what_the_layer_computes(keras, kind, mode, lora):
    model, layer = build(keras, kind, mode, lora)
    effective = hw.effective_weights(model, "d")
    assert effective.dtype == np.float32
    expected = output_on_identity(layer, kind)
    assert effective.shape == expected.shape
    np.testing.assert_allclose(effective, expected, rtol=1e-5, atol=1e-5)
    if mode in ("int8", "int4"):  # the codes are not the weights
        codes = np.array(layer._kernel.numpy() if kind != "embedding" else layer._embeddings.numpy())
        assert codes.dtype == np.int8 and np.abs(codes).max() > np.abs(effective).max()


def test_a_variable_path_names_its_layer_and_a_layer_without_kernel_is_refused(keras):
    model, layer = build(keras, "dense", "int8", True)
    path = hw.inspect(model).find("d").path
    np.testing.assert_array_equal(hw.effective_weights(model, path + "/kernel"),
                                  hw.effective_weights(model, "d"))
    with pytest.raises(HubWidgetsError, match="no kernel or embedding table"):
        hw.effective_weights(model, hw.inspect(model).root.children[0].path)
    with pytest.raises(HubWidgetsError, match="No layer or variable"):
        hw.effective_weights(model, "nope/kernel")


def test_weight_stats_effective_describes_the_kernel_not_the_codes(keras):
    model, layer = build(keras, "dense", "int8", True)
    tree = hw.inspect(model)
    path = tree.find("d").path + "/kernel"
    stored = hw.weight_stats(model)[path]
    assert stored.dtype == "int8" and stored.max > 50  # codes up to 127
    stats = hw.weight_stats(model, bins=16, effective=True)
    effective = hw.effective_weights(model, "d").astype(np.float64)
    s = stats[path]
    assert s.path == path and s.shape == effective.shape
    np.testing.assert_allclose([s.mean, s.min, s.max], [effective.mean(), effective.min(),
                                                        effective.max()], rtol=1e-6)
    counts, edges = np.histogram(effective, bins=16)
    np.testing.assert_array_equal(s.counts, counts)
    np.testing.assert_allclose(s.edges, edges, rtol=1e-6)
    assert set(stats) == set(hw.weight_stats(model))  # scales and adapters listed as they are


def test_gemma_backbone_int8_with_lora_has_an_effective_query_kernel():
    model = gemma()
    model.quantize("int8")
    model.enable_lora(2)
    tree = hw.inspect(model)
    query = tree.find(tree.find("decoder_block_0").path + "/attention/query")
    layer = query.obj
    layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.1, "float32"))
    effective = hw.effective_weights(model, query.path)
    assert effective.shape == tuple(layer._kernel.shape) == (2, 16, 8)
    # the layer's own output on the identity over its 16 inputs: (16, 2, 8) = kernel
    out = np.array(layer(np.eye(16, dtype="float32")[:, None, :]))[:, 0]
    np.testing.assert_allclose(np.transpose(effective, (1, 0, 2)), out, rtol=1e-4, atol=1e-4)


def test_weight_plot_draws_effective_weights_with_a_toggle_back(keras):
    model, layer = build(keras, "dense", "int8", True)
    plot = hw.explore(model).weights
    path = hw.inspect(model).find("d").path + "/kernel"
    plot.selected = path
    [bar] = plot.selection_traces
    effective = hw.effective_weights(model, "d")
    assert min(bar.x) > effective.min() - 1 and max(bar.x) < effective.max() + 1  # not codes
    assert sum(bar.y) == effective.size
    plot.effective = False  # the stored int8 codes
    [bar] = plot.selection_traces
    assert max(bar.x) > 50


def test_weight_stats_effective_on_a_node_and_a_variable(keras):
    model, layer = build(keras, "einsum3d", "int4", True)
    tree = hw.inspect(model)
    node = tree.find("d")
    kernel = next(v for v in node.variables if v.name == "kernel")
    effective = hw.effective_weights(model, "d")
    for target in (node, kernel, [kernel]):
        s = hw.weight_stats(target, effective=True)[kernel.path]
        assert s.shape == effective.shape == (5, 2, 3)
        np.testing.assert_allclose([s.min, s.max], [effective.min(), effective.max()], rtol=1e-6)


def test_the_overview_draws_effective_weights_with_the_toggle_back(keras):
    """The whole-model overview, like the selection, shows the kernel a quantized layer
    computes with, not its int8 codes; the box switches it to the stored codes."""
    model, layer = build(keras, "dense", "int8", True)
    dashboard = hw.explore(model)
    assert dashboard.wait(timeout=60)
    plot = dashboard.weights
    path = hw.inspect(model).find("d").path + "/kernel"
    shown = plot.statistics_store().known(dashboard.tree.variables())[path]
    effective = hw.effective_weights(model, "d").astype(np.float64)
    np.testing.assert_allclose([shown.min, shown.max], [effective.min(), effective.max()],
                               rtol=1e-6)
    assert abs(plot.overview.centers).max() < 50  # the heatmap's value axis: weights, not codes
    plot.effective = False
    assert dashboard.wait(timeout=60)
    shown = plot.statistics_store().known(dashboard.tree.variables())[path]
    assert shown.dtype == "int8" and shown.max > 50
    dashboard.close()
