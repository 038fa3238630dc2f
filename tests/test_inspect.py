"""hubwidgets.inspect on every kind of object: structure, counts, summaries, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hubwidgets as hw
from model_state import GENERATIONS, chain_model, repeated_names_model
from tree_invariants import assert_tree_consistent, oracle_of_restored


def paths(tree):
    return [node.path for node in tree]


def test_import_does_not_load_tensorflow():
    code = "import sys, hubwidgets; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_keras3_sequential_summary_is_exact(k3_sequential):
    expected = textwrap.dedent("""\
        Model: "seed_sequential" (Sequential, Keras 3)
        ------------------------------------------------------------------------------
        Name             Class       Output shape  Own params  Total params  Status
        ------------------------------------------------------------------------------
        seed_sequential  Sequential  (None, 5)              0         7,905  trainable
          dense_layer_1  Dense       (None, 10)         7,850         7,850  trainable
          dense_layer_2  Dense       (None, 5)             55            55  trainable
        ------------------------------------------------------------------------------
        Total params: 7,905 (30.88 KB)
        Trainable params: 7,905
        Non-trainable params: 0""")
    assert hw.inspect(k3_sequential).summary() == expected
    assert_tree_consistent(hw.inspect(k3_sequential), k3_sequential.count_params())


def test_keras3_sequential_variables(k3_sequential):
    tree = hw.inspect(k3_sequential)
    assert_tree_consistent(tree, k3_sequential.count_params())
    layer = tree.find("dense_layer_1")
    assert [(v.name, v.path, v.shape, v.dtype, v.nbytes) for v in layer.variables] == [
        ("kernel", "seed_sequential/dense_layer_1/kernel", (784, 10), "float32", 784 * 10 * 4),
        ("bias", "seed_sequential/dense_layer_1/bias", (10,), "float32", 40),
    ]
    assert layer.variables[0].variable is k3_sequential.get_layer("dense_layer_1").kernel
    assert "CPU" in layer.variables[0].device or "GPU" in layer.variables[0].device


def test_keras3_subclassed_nesting(k3_subclassed):
    tree = hw.inspect(k3_subclassed)
    assert_tree_consistent(tree, k3_subclassed.count_params())
    assert paths(tree) == [
        "larger_model", "larger_model/custom_module", "larger_model/custom_module/inner_dense1",
        "larger_model/custom_module/inner_dense2", "larger_model/outer_dense"]
    assert tree.root.params == k3_subclassed.count_params() == 10 * 12 + 12 + 12 * 8 + 8 + 8 * 4 + 4
    assert tree.find("inner_dense1").class_name == "Dense"
    assert tree.find("custom_module/inner_dense2").params == 12 * 8 + 8


def test_unbuilt_model_says_how_to_build_it(k3_unbuilt_subclassed):
    with pytest.raises(hw.UnbuiltModelError, match=r"Call it once .*model\.build\("):
        hw.inspect(k3_unbuilt_subclassed)


def test_shared_layer_counted_once(k3_nested_shared):
    tree = hw.inspect(k3_nested_shared)
    assert_tree_consistent(tree, k3_nested_shared.count_params())
    assert paths(tree) == [
        "nested_shared", "nested_shared/x", "nested_shared/shared_dense", "nested_shared/block",
        "nested_shared/block/inner_a", "nested_shared/block/inner_bn", "nested_shared/head"]
    assert tree.root.params == k3_nested_shared.count_params()
    assert tree.root.trainable_params == sum(int(v.numpy().size) for v in k3_nested_shared.trainable_weights)
    bn = tree.find("inner_bn")
    assert bn.trainable is True  # moving statistics never train, so they do not make it "mixed"
    assert bn.non_trainable_params == 12


def test_tf_keras_sequential(tfk_sequential):
    tree = hw.inspect(tfk_sequential)
    assert_tree_consistent(tree, tfk_sequential.count_params())
    assert tree.framework == "tf_keras"
    assert paths(tree) == ["tfk_sequential", "tfk_sequential/dense_layer_1", "tfk_sequential/bn",
                           "tfk_sequential/dense_layer_2"]
    assert tree.root.params == tfk_sequential.count_params()
    assert tree.root.non_trainable_params == 20
    assert tree.find("dense_layer_1").output_shape == (None, 10)


def test_restored_saved_model_uses_keras_metadata(tfk_saved_model, tf):
    tree = hw.inspect(tfk_saved_model)
    assert_tree_consistent(tree, *oracle_of_restored(tree.obj))
    assert paths(tree) == ["feature_extractor", "feature_extractor/features_1",
                           "feature_extractor/features_2"]
    assert [n.class_name for n in tree] == ["Sequential", "Dense", "Dense"]
    assert tree.root.params == 4 * 8 + 8 + 8 * 3 + 3
    [sig] = tree.root.signatures
    assert str(sig) == "serving_default(features_1_input: float32 (None, 4)) -> features_2: float32 (None, 3)"


def test_hub_load_without_path_recovers_names_from_scopes(tfk_saved_model, hub):
    module = hub.load(tfk_saved_model)
    tree = hw.inspect(module)
    assert_tree_consistent(tree, *oracle_of_restored(module))
    assert [n.name for n in tree.root.children] == ["features_1", "features_2"]
    assert [v.name for v in tree.find("features_1").variables] == ["kernel", "bias"]


def test_hub_keras_layer(tfk_saved_model, hub, tf_keras):
    layer = hub.KerasLayer(tfk_saved_model, trainable=False, name="hub_features")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer, tf_keras.layers.Dense(2, name="head")])
    tree = hw.inspect(model)
    assert_tree_consistent(tree, model.count_params())
    assert paths(tree)[1:] == [f"{model.name}/hub_features", f"{model.name}/hub_features/features_1",
                               f"{model.name}/hub_features/features_2", f"{model.name}/head"]
    assert tree.root.params == model.count_params()
    assert tree.find("hub_features").trainable is False
    assert tree.root.trainable_params == 3 * 2 + 2


def test_keras3_export_groups_by_name_scope(k3_export, k3_sequential):
    tree = hw.inspect(k3_export)
    assert_tree_consistent(tree, *oracle_of_restored(tree.obj))
    assert paths(tree) == ["seed_sequential", "seed_sequential/dense_layer_1",
                           "seed_sequential/dense_layer_2"]
    assert tree.root.params == k3_sequential.count_params()
    assert {s.name for s in tree.root.signatures} == {"serve", "serving_default"}


def test_tfsm_layer(k3_export, keras):
    layer = keras.layers.TFSMLayer(k3_export, call_endpoint="serve", name="tfsm")
    tree = hw.inspect(layer)
    assert_tree_consistent(tree, layer.count_params())
    assert [n.name for n in tree.root.children] == ["dense_layer_1", "dense_layer_2"]
    assert tree.root.params == layer.count_params() == 7905


def test_text_module_scopes_signature_and_census(text_module):
    tree = hw.inspect(text_module)
    assert_tree_consistent(tree, *oracle_of_restored(tree.obj, text_module))
    # the root object holds all three variables; their name scopes give the structure
    assert paths(tree) == ["text_embedder", "text_embedder/embedding", "text_embedder/projection"]
    assert [v.path for v in tree.variables()] == [
        "text_embedder/embedding/embeddings", "text_embedder/projection/kernel",
        "text_embedder/projection/bias"]
    assert tree.root.params == 32 * 8 + 8 * 4 + 4
    [sig] = tree.root.signatures
    assert sig.inputs[0].dtype == "string"
    census = tree.op_census()
    assert census["StringSplitV2"] == 1
    assert census["MatMul"] == 1
    assert list(census.values()) == sorted(census.values(), reverse=True)


def test_plain_tf_module(plain_module):
    tree = hw.inspect(plain_module)
    assert_tree_consistent(tree, *oracle_of_restored(plain_module))
    assert paths(tree) == ["net", "net/blocks.0", "net/blocks.1", "net/encoder"]
    assert [v.name for v in tree.root.variables] == ["scale"]
    assert tree.root.params == 1 + 3 * (6 + 1)
    assert tree.root.trainable_params == 1 + 3 * 6
    assert tree.find("encoder").trainable is True


def test_keras_file_and_h5_paths(k3_sequential, tfk_sequential, saved_dir):
    keras_path = str(saved_dir / "seed.keras")
    k3_sequential.save(keras_path)
    assert hw.inspect(keras_path).root.params == 7905
    assert_tree_consistent(hw.inspect(keras_path), 7905)
    h5_path = str(saved_dir / "tfk.h5")
    tfk_sequential.save(h5_path)
    tree = hw.inspect(h5_path)
    assert_tree_consistent(tree, tfk_sequential.count_params())
    assert tree.framework == "tf_keras"
    assert tree.root.params == tfk_sequential.count_params()


def test_find_names_closest_matches(k3_sequential):
    tree = hw.inspect(k3_sequential)
    assert_tree_consistent(tree)
    with pytest.raises(KeyError, match="Closest matches: 'dense_layer_1'"):
        tree.find("dense_layer_11")


def test_not_a_model(tf):
    with pytest.raises(hw.NotAModelError, match="not a TensorFlow model. Pass a Keras"):
        hw.inspect(tf.constant([1.0]))
    with pytest.raises(hw.NotAModelError, match="weight_stats"):
        hw.inspect([1, 2])


def test_missing_and_corrupt_paths(tmp_path):
    with pytest.raises(hw.ModelLoadError, match="No file or directory"):
        hw.inspect(str(tmp_path / "nope"))
    with pytest.raises(hw.ModelLoadError, match="not a SavedModel: it has no saved_model.pb"):
        hw.inspect(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(hw.ModelLoadError, match="corrupt or incomplete"):
        hw.inspect(str(tmp_path))
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(hw.ModelLoadError, match="is not a complete .keras file: it is not a readable zip"):
        hw.inspect(str(bad))


def test_hub_url_offline_says_to_use_a_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with pytest.raises(hw.ModelLoadError, match="offline .* pass its local directory"):
        hw.inspect("https://www.kaggle.com/models/google/no-such-model/TensorFlow2/x/1")


def test_inspect_changes_nothing(k3_nested_shared):
    before = [(v.path, v.trainable) for v in k3_nested_shared.weights]
    flags = [layer.trainable for layer in k3_nested_shared.layers]
    hw.inspect(k3_nested_shared).summary()
    assert_tree_consistent(hw.inspect(k3_nested_shared), k3_nested_shared.count_params())
    assert [(v.path, v.trainable) for v in k3_nested_shared.weights] == before
    assert [layer.trainable for layer in k3_nested_shared.layers] == flags


# -- Hostile names and inputs: layers that share a name, names like a path's suffix or with a slash,
#    Keras' name scopes, files and objects that are not models
@pytest.mark.parametrize("generation", GENERATIONS)
def test_repeated_names_get_distinct_nodes_and_paths(generation, request, tf):
    K = request.getfixturevalue(generation)
    model = repeated_names_model(K, tf)
    tree = hw.inspect(model)
    nodes = list(tree.root.children)
    assert [n.path for n in nodes] == ["m/hidden", "m/hidden[1]", "m/hidden[2]"]
    assert [n.obj for n in nodes] == model.h and len({id(n.obj) for n in nodes}) == 3
    assert [tree.find(p).obj for p in ("m/hidden", "m/hidden[1]", "m/hidden[2]")] == model.h
    assert all(n.parent is tree.root for n in nodes)
    assert tree.root.params == model.count_params() == 3 * (4 * 4 + 4)
    assert [v.path for v in tree.variables()] == [
        f"m/hidden{s}/{w}" for s in ("", "[1]", "[2]") for w in ("kernel", "bias")]
    assert len(model.trainable_weights) == 6  # nothing was frozen by looking


@pytest.mark.parametrize("generation", GENERATIONS)
def test_a_layer_literally_named_like_a_suffix_keeps_paths_unique(generation, request, tf):
    K = request.getfixturevalue(generation)
    model = chain_model(K, tf, ["hidden", "hidden[1]", "hidden"], 2)
    tree = hw.inspect(model)
    paths = [n.path for n in tree.root.children]
    assert len(set(paths)) == 3 and paths[:2] == ["m/hidden", "m/hidden[1]"]
    assert [tree.find(p).obj for p in paths] == model.h
    assert len(hw.weight_stats(model)) == 6
    explorer = hw.LayerExplorer(model)
    explorer.handle_action({"action": "set_trainable", "path": paths[2], "value": False})
    assert [layer.trainable for layer in model.h] == [True, True, False]


def test_hubwidgets_leaves_keras_name_scopes_as_it_found_them(keras, tf):
    """Looking at a model, its statistics, a freeze, an edit and a snapshot push no Keras
    name scope that stays (variables the user makes afterwards keep their own paths)."""
    from keras.src.backend.common import global_state

    def scopes():
        return [getattr(s, "name", s) for s in
                global_state.get_global_attribute("name_scope_stack") or []]

    model = chain_model(keras, tf, ["a", "b"], 2)
    before = scopes()
    hw.inspect(model)
    hw.weight_stats(model)
    explorer = hw.LayerExplorer(model)
    explorer.handle_action({"action": "set_trainable", "path": "m/b", "value": False})
    hw.scale_weights(model, "m/a", 1.0)
    hw.snapshot(model)
    assert scopes() == before
    assert keras.Variable(1.0, name="later").path == "/".join([*before, "later"])


def test_a_tf_keras_name_with_a_slash_is_one_layer(tf_keras):
    model = tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(2, name="a"),
                                 tf_keras.layers.Dense(2, name="a/b")], name="q")
    tree = hw.inspect(model)
    assert [n.path for n in tree] == ["q", "q/a", "q/a/b"]
    assert tree.find("q/a/b").obj is model.layers[1]
    explorer = hw.LayerExplorer(model)
    explorer.handle_action({"action": "set_trainable", "path": "q/a/b", "value": False})
    assert [layer.trainable for layer in model.layers] == [True, False]
    assert sorted(hw.weight_stats(model)) == sorted(v.path for v in tree.variables())


def test_a_truncated_keras_file_is_not_reported_as_missing(three_dense, tmp_path):
    path = tmp_path / "cut.keras"
    three_dense.save(tmp_path / "whole.keras")
    data = (tmp_path / "whole.keras").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(hw.ModelLoadError) as err:
        hw.inspect(str(path))
    assert "not found" not in str(err.value).lower()
    assert "corrupt" in str(err.value) or "truncated" in str(err.value)


def test_an_unbuilt_model_is_refused_everywhere_and_left_unbuilt(keras):
    model = keras.Sequential([keras.layers.Dense(2)])
    for call in (hw.inspect, hw.freeze, hw.unfreeze, hw.explore, hw.LayerExplorer):
        with pytest.raises(hw.UnbuiltModelError, match=r"model.build\(input_shape\)"):
            call(model)
    assert not model.built and model.trainable


@pytest.mark.parametrize("obj", [42, object(), np.zeros(3)])
def test_not_a_model_is_refused(obj):
    for call in (hw.inspect, hw.freeze, hw.explore):
        with pytest.raises(hw.NotAModelError, match="it is not a TensorFlow model"):
            call(obj)


def test_a_missing_path_says_check_the_path(tmp_path):
    with pytest.raises(hw.ModelLoadError, match="No file or directory at .* Check the path"):
        hw.inspect(str(tmp_path / "nope.keras"))
