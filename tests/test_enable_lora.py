"""``hw.enable_lora(model, pattern, rank)`` and the explorer's "LoRA…": Keras' own
``layer.enable_lora(rank)`` on every matching layer that supports it, base frozen, said to be
final before and after; refusals change nothing."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.errors import HubWidgetsError
from keras_hub_models import bert, sgd_step, trainable_paths

pytest.importorskip("keras_hub")
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")


@pytest.fixture(autouse=True)
def _tensorflow_set_up_first(tf):
    """TensorFlow's devices are configured by the session's ``tf`` fixture before use."""


def two_dense(keras, name):
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="a"),
                             keras.layers.Dense(3, name="b")], name=name)


def test_adapters_on_one_layer_train_while_its_base_stays(keras):
    model = two_dense(keras, "lora_one")
    tree = hw.enable_lora(model, "a", 4)
    a = model.get_layer("a")
    assert a.lora_enabled and a.lora_rank == 4 and tree.find("a").lora_rank == 4
    assert tree.find("b").lora_rank is None
    assert a._kernel.path not in trainable_paths(model)
    assert tree.root.params == model.count_params() == 5 * 4 + 4 + 4 * 3 + 3 + 5 * 4 + 4 * 4
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    changed = sgd_step(model, x)
    assert not changed[a._kernel.path] and changed[a.lora_kernel_b.path]
    assert changed[model.get_layer("b").kernel.path]


def test_a_pattern_gives_what_keras_hub_gives(keras):
    ours, theirs = bert("bert_ours"), bert("bert_theirs")
    hw.enable_lora(ours, "query|value", 2)
    theirs.enable_lora(2)  # KerasHub's own: query and value layers (and it freezes the rest)
    def lora(m):
        return sorted(l.name for l in m._flatten_layers() if getattr(l, "lora_enabled", 0))

    assert lora(ours) == lora(theirs) == ["query", "value"]
    assert ours.count_params() == theirs.count_params() == hw.inspect(ours).root.params


def test_refusals_change_nothing(keras):
    model = two_dense(keras, "lora_refused")
    hw.enable_lora(model, "a", 2)
    before = [v.path for v in model.weights]
    with pytest.raises(HubWidgetsError, match="already has rank-2 adapters"):
        hw.enable_lora(model, "a", 8)
    with pytest.raises(HubWidgetsError, match="matches no layer"):
        hw.enable_lora(model, "nosuchlayer", 2)
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(HubWidgetsError, match="whole number of 1 or more"):
            hw.enable_lora(model, "b", bad)
    assert [v.path for v in model.weights] == before
    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="f8")])
    other.quantize("float8")
    with pytest.raises(HubWidgetsError, match="float8 layers do not run LoRA"):
        hw.enable_lora(other, "f8", 2)


def test_explorer_lora_action_says_it_is_final_and_shows_keras_code(keras):
    model = two_dense(keras, "model")
    copy = two_dense(keras, "model_copy")
    explorer = hw.LayerExplorer(model, var_name="model")
    explorer.handle_action({"action": "enable_lora", "path": explorer.tree.find("a").path,
                            "rank": 3})
    assert "cannot be undone" in explorer.message
    assert explorer.code.splitlines()[0] == "model.get_layer('a').enable_lora(3)"
    exec(explorer.code, {"model": copy})
    assert copy.get_layer("a").lora_rank == 3 and copy.count_params() == model.count_params()
    rows = {r["path"]: r for r in explorer.visible_rows()}
    assert "LoRA r3" in rows[explorer.tree.find("a").path]["badges"]
    explorer.handle_action({"action": "enable_lora_pattern", "pattern": "^b$", "rank": 2})
    assert model.get_layer("b").lora_rank == 2
    explorer.handle_action({"action": "enable_lora", "path": explorer.tree.find("a").path,
                            "rank": 2})
    assert "already has rank-3 adapters" in explorer.message
    assert model.get_layer("a").lora_rank == 3
