"""Freezing keeps LoRA semantics: every freeze path, then one real gradient step, moves exactly
the adapters (and what the user unfroze); every LoRA base kernel stays bit-identical unless
the user named it; quantized integer codes never train."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.errors import FreezeError
from keras_hub_models import bert, gemma, sgd_step, trainable_paths, vit

pytest.importorskip("keras_hub")
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")

BACKBONES = {"gemma": gemma, "bert": bert, "vit": vit}


@pytest.fixture(autouse=True)
def _tensorflow_set_up_first(tf):
    """TensorFlow's devices are configured by the session's ``tf`` fixture before use."""


def lora_model(kind, quantize=None):
    model = BACKBONES[kind]()
    if quantize:
        model.quantize(quantize)
    model.enable_lora(2)
    return model


def lora_layers(model):
    return [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)]


def base_paths(model):
    return {(layer._kernel if hasattr(layer, "_kernel") else layer._embeddings).path
            for layer in lora_layers(model)}


def adapter_paths(model):
    return {v.path for layer in lora_layers(model) for v in layer.weights if "lora_" in v.path}


def assert_step_follows_flags(model, named_bases=()):
    """One SGD step: what moved is exactly what Keras trains; no LoRA base moved unless named;
    every trainable B factor moved (A gets no gradient while B is zero)."""
    trains = trainable_paths(model)
    assert not (base_paths(model) - set(named_bases)) & trains
    changed = sgd_step(model)
    moved = {p for p, c in changed.items() if c}
    assert moved <= trains
    bases = base_paths(model) - set(named_bases)
    assert not moved & bases, "a LoRA base kernel changed"
    b_factors = {p for p in adapter_paths(model) & trains if p.endswith("_b")}
    assert b_factors and b_factors <= moved
    return moved


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_unfreeze_whole_model_keeps_lora_bases_frozen(kind):
    model = lora_model(kind)
    before = model.count_params()
    hw.unfreeze(model)
    trains = trainable_paths(model)
    assert not base_paths(model) & trains
    # everything else that can train does: the user unfroze it
    assert trains == {v.path for v in model.weights if v.path not in base_paths(model)
                      and v.dtype != "int8"} - _never_trainable(model)
    moved = assert_step_follows_flags(model)
    assert adapter_paths(model) & moved
    assert model.count_params() == before


def _never_trainable(model):
    return {v.path for layer in model._flatten_layers() for v in layer.non_trainable_weights
            if v not in layer._trainable_variables}


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_freeze_then_unfreeze_of_any_scope_is_an_identity(kind):
    """Any scope where something trains: freeze, unfreeze, and the same variables train."""
    model = lora_model(kind)
    tree = hw.inspect(model)
    lora_only = trainable_paths(model)
    scopes = [tree.root] + [n for n in tree.root.walk() if n.params and n is not tree.root][:12]
    tried = 0
    for node in scopes:
        if not node.trainable_params:  # frozen already: unfreezing it must unfreeze it
            continue
        hw.freeze(model, node.path)
        hw.unfreeze(model, node.path)
        assert trainable_paths(model) == lora_only, node.path
        tried += 1
    assert tried >= 4
    moved = assert_step_follows_flags(model)
    assert moved <= adapter_paths(model) | {p for p in lora_only if p.endswith("bias")}


def test_unfreeze_all_button_and_its_code_keep_bases_frozen():
    model = lora_model("gemma")
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "unfreeze_all"})
    assert "LoRA" in explorer.message and "stay frozen" in explorer.message
    assert not base_paths(model) & trainable_paths(model)
    assert "base.trainable = False" in explorer.code
    # the code shown does the same on a fresh copy
    other = lora_model("gemma", )
    exec(explorer.code.split("\nmodel.compile")[0], {"model": other, "hubwidgets": hw})
    assert trainable_paths(other) == trainable_paths(model)
    assert_step_follows_flags(model)


def test_freeze_all_then_unfreeze_all_buttons_give_back_lora_only():
    model = lora_model("bert")
    lora_only = trainable_paths(model)
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "freeze_all"})
    assert trainable_paths(model) == set()
    explorer.handle_action({"action": "unfreeze_all"})
    assert trainable_paths(model) == lora_only
    assert "Gave back" in explorer.message
    assert explorer.code.startswith("hubwidgets.unfreeze(model,")
    assert_step_follows_flags(model)


def test_block_toggle_round_trip_in_the_explorer():
    model = lora_model("gemma")
    lora_only = trainable_paths(model)
    explorer = hw.LayerExplorer(model, var_name="model")
    path = hw.inspect(model).find("decoder_block_0").path
    explorer.handle_action({"action": "set_trainable", "path": path, "value": False})
    explorer.handle_action({"action": "set_trainable", "path": path, "value": True})
    assert trainable_paths(model) == lora_only
    assert_step_follows_flags(model)


def test_freeze_up_to_keeps_bases_frozen_and_says_so():
    model = lora_model("gemma")
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "freeze_up_to", "path": "decoder_block_0"})
    trains = trainable_paths(model)
    assert trains and all(p.startswith(("decoder_block_1", "final_normalization")) for p in trains)
    assert not base_paths(model) & trains
    assert "LoRA" in explorer.message
    other = lora_model("gemma")
    exec(explorer.code.split("\nmodel.compile")[0], {"model": other})
    assert trainable_paths(other) == trains
    assert_step_follows_flags(model)


def test_pattern_and_search_paths_keep_bases_frozen():
    model = lora_model("vit")
    hw.freeze(model)
    hw.unfreeze(model, r"transformer_block_\d")  # a regular expression
    trains = trainable_paths(model)
    assert trains and not base_paths(model) & trains
    assert_step_follows_flags(model)
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "freeze_pattern", "pattern": "query"})
    assert not any("/query/" in p for p in trainable_paths(model))
    assert_step_follows_flags(model)


def test_unfreeze_one_lora_layer_inside_a_frozen_model():
    model = lora_model("bert")
    hw.freeze(model)
    query = hw.inspect(model).find("query")
    hw.set_trainable(model, query.path, True)
    trains = trainable_paths(model)
    layer = query.obj
    assert trains == {layer.lora_kernel_a.path, layer.lora_kernel_b.path, layer.bias.path}
    moved = assert_step_follows_flags(model)
    assert layer.lora_kernel_b.path in moved


def test_a_base_kernel_named_explicitly_trains_and_survives_round_trips():
    model = lora_model("gemma")
    layer = model.get_layer("decoder_block_0").attention.query_dense
    tree = hw.inspect(model)
    kernel = next(v for v in tree.find(tree.find("decoder_block_0").path + "/attention/query")
                  .variables if v.name == "kernel")
    hw.unfreeze(model, kernel.path)
    assert layer._kernel.path in trainable_paths(model)
    block = tree.find("decoder_block_0").path
    before = trainable_paths(model)
    hw.freeze(model, block)
    hw.unfreeze(model, block)
    assert trainable_paths(model) == before
    hw.unfreeze(model)  # still named: it keeps training
    assert layer._kernel.path in trainable_paths(model)
    moved = assert_step_follows_flags(model, named_bases={layer._kernel.path})
    assert layer._kernel.path in moved
    hw.freeze(model, kernel.path)  # named again: frozen, and layer toggles keep it frozen
    hw.unfreeze(model)
    assert layer._kernel.path not in trainable_paths(model)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_codes_never_train(mode):
    model = lora_model("gemma", quantize=mode)
    hw.unfreeze(model)
    trains = trainable_paths(model)
    codes = {v.path for v in model.weights if v.dtype == "int8"}
    assert codes and not codes & trains
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "unfreeze_all"})
    assert "integer codes frozen" in explorer.message
    query = hw.inspect(model).find(hw.inspect(model).find("decoder_block_0").path
                                   + "/attention/query")
    code_var = next(v for v in query.variables if v.name == "kernel")
    flags = {v.path: v.trainable for v in model.weights}
    with pytest.raises(FreezeError, match=f"{mode} codes of a quantized layer"):
        hw.unfreeze(model, code_var.path)
    assert {v.path: v.trainable for v in model.weights} == flags
    values = {v.path: np.array(v.numpy()) for v in model.weights if v.path in codes}
    assert_step_follows_flags(model)
    assert all(np.array_equal(values[p], v.numpy()) for v in model.weights
               if v.path in codes for p in [v.path])
