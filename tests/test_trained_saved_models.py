"""Compiled, trained tf_keras models saved as SavedModels, the way TF 2.x models were
published: counted as Keras counts them on every path a user takes (a path, hub.load,
hub.KerasLayer), their optimizer and metric state shown apart, their Keras metadata read
from keras_metadata.pb or (TF 2.0-2.4 style) from the SavedModel proto itself."""

from __future__ import annotations

import json
import textwrap
import os
import shutil

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.adapters.trackable import TRAINING_STATE_NAME, is_training_state_node
from tree_invariants import assert_tree_consistent, oracle_of_restored

pytestmark = pytest.mark.slow

LAYERS = {  # name -> (class, output shape) of every layer of the trained model
    "dense_a": ("Dense", (None, 6)), "relu_b": ("ReLU", (None, 6)),
    "inner_block": ("Sequential", (None, 6)), "add": ("Add", (None, 6)),
    "concat": ("Concatenate", (None, 12)), "head": ("Dense", (None, 2))}


def _size(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def _saved_minus_model(path, model):
    """Training state by TensorFlow's own account: every tensor in the SavedModel's
    checkpoint (read by tf.train.list_variables) less the model's ``count_params()``."""
    import tensorflow as tf

    entries = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    saved = sum(int(np.prod(shape)) for name, shape in entries
                if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return saved - model.count_params()


@pytest.fixture(scope="module")
def trained(tf_keras, saved_dir):
    """A functional tf_keras model with a nested Sequential, weightless layers (ReLU, Add,
    Concatenate), compiled with Adam and a metric, trained one epoch, saved as a SavedModel."""
    K = tf_keras
    K.utils.set_random_seed(0)
    inp = K.Input((4,), name="x")
    a = K.layers.Dense(6, name="dense_a")(inp)
    b = K.layers.ReLU(name="relu_b")(a)
    inner = K.Sequential([K.layers.Dense(6, name="inner_dense", input_shape=(6,)),
                          K.layers.BatchNormalization(name="inner_bn")], name="inner_block")
    c = inner(b)
    d = K.layers.Add(name="add")([b, c])
    e = K.layers.Concatenate(name="concat")([d, a])
    model = K.Model(inp, K.layers.Dense(2, name="head")(e), name="trained")
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=1, verbose=0)
    path = str(saved_dir / "trained_tfk")
    model.save(path, save_format="tf")
    return model, path, _saved_minus_model(path, model)


@pytest.fixture(scope="module")
def legacy_trained(tf_keras, saved_dir):
    """The same kind of model trained with tf_keras' legacy (TF 2.0-2.10) Adam, whose slot
    variables are reachable only through the optimizer's ``variables()``."""
    K = tf_keras
    model = K.Sequential([K.layers.Dense(3, input_shape=(4,), name="d1"),
                          K.layers.Dense(1, name="d2")], name="legacy")
    optimizer = K.optimizers.legacy.Adam()
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=1, verbose=0)
    path = str(saved_dir / "legacy_tfk")
    model.save(path, save_format="tf")
    return model, path, _saved_minus_model(path, model)


def _tf24_copy(path, destination, edit=None):
    """A copy of the SavedModel at ``path`` as TF 2.0-2.4 wrote it: every Keras record moved
    into the proto's ``user_object.metadata`` (the field TF itself wrote), keras_metadata.pb
    deleted.  ``edit(identifier, text) -> text`` may change a record on the way."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    shutil.copytree(path, destination)
    meta = saved_metadata_pb2.SavedMetadata()
    with open(os.path.join(destination, "keras_metadata.pb"), "rb") as f:
        meta.ParseFromString(f.read())
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(destination, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    nodes = saved.meta_graphs[0].object_graph_def.nodes
    for record in meta.nodes:
        user_object = nodes[record.node_id].user_object
        assert user_object.identifier == record.identifier  # the same object, for sure
        user_object.metadata = edit(record.identifier, record.metadata) if edit else record.metadata
    with open(os.path.join(destination, "saved_model.pb"), "wb") as f:
        f.write(saved.SerializeToString())
    os.remove(os.path.join(destination, "keras_metadata.pb"))
    return str(destination)


def _state(tree):
    [state] = [n for n in tree.root.children if is_training_state_node(n)]
    return state


def _check_layers(tree, prefix):
    for name, (class_name, shape) in LAYERS.items():
        node = tree.find(f"{prefix}/{name}")
        assert (node.class_name, node.output_shape) == (class_name, shape), name


# -- counted right ----------------------------------------------------------------------------
def test_path_counts_exactly_what_keras_counts(trained):
    model, path, state_params = trained
    tree = hw.inspect(path)
    assert_tree_consistent(tree, model.count_params(),
                           sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    state = _state(tree)
    assert state.name == TRAINING_STATE_NAME
    assert state.params == state_params > 0  # every optimizer and metric variable, shown
    names = {v.path.split(TRAINING_STATE_NAME + "/", 1)[1] for v in state.all_variables()}
    assert {"optimizer/iteration", "optimizer/learning_rate", "optimizer/Adam/m/dense_a/kernel",
            "optimizer/Adam/v/head/bias", "loss/total", "mae/count"} <= names
    assert not any(v.trainable for v in state.all_variables())
    assert tree.root.params == sum(c.params for c in tree.root.children if c is not state)


def test_hub_load_counts_the_restored_variables(trained, hub):
    model, path, state_params = trained
    module = hub.load(path)
    tree = hw.inspect(module)
    assert_tree_consistent(tree, *oracle_of_restored(module))
    assert tree.root.params == model.count_params()
    assert _state(tree).params == state_params
    # without the directory, weightless layers are named after their restored functions
    assert {"dense_a", "relu_b", "inner_block", "add", "concat", "head"} <= \
        {c.name for c in tree.root.children}


def test_hub_keras_layer_total_is_the_sum_of_its_children(trained, hub, tf_keras):
    model, path, state_params = trained
    layer = hub.KerasLayer(path, trainable=True, name="hub_trained")
    outer = tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                 tf_keras.layers.Dense(1, name="top")], name="outer")
    tree = hw.inspect(outer)
    assert_tree_consistent(tree, outer.count_params(),
                           sum(int(np.prod(v.shape)) for v in outer.trainable_weights))
    hub_node = tree.find("hub_trained")
    assert hub_node.params == layer.count_params() == model.count_params()
    [state] = [n for n in hub_node.children if is_training_state_node(n)]
    assert state.params == state_params
    _check_layers(tree, "outer/hub_trained")


def test_legacy_optimizer_slots_are_shown_apart(legacy_trained, hub):
    model, path, state_params = legacy_trained
    tree = hw.inspect(path)
    assert_tree_consistent(tree, model.count_params())
    state = _state(tree)
    names = {v.name for v in state.all_variables()}
    assert {"iter", "beta_1", "learning_rate", "m", "v"} <= names
    assert state.params == state_params
    slots = sum(v.size for v in state.all_variables() if v.name in ("m", "v"))
    assert slots == 2 * model.count_params()
    assert_tree_consistent(hw.inspect(hub.load(path)), model.count_params())


def test_statistics_cover_every_weight(trained):
    model, path, _ = trained
    tree = hw.inspect(path)
    stats = hw.weight_stats(tree)
    counted = [v for v in tree.variables() if not v.path.startswith(_state(tree).path + "/")]
    assert sum(int(v.size) for v in counted) == model.count_params()
    for var in counted:
        values = var.numpy()
        assert stats[var.path].counts.sum() == values.size
        assert stats[var.path].mean == pytest.approx(float(values.mean()), abs=1e-6)


# -- named right ------------------------------------------------------------------------------
def test_keras_metadata_gives_names_classes_and_output_shapes(trained):
    _, path, _ = trained
    tree = hw.inspect(path)
    _check_layers(tree, "trained")
    assert tree.root.class_name == "Functional"
    assert tree.root.output_shape == (None, 2)
    assert tree.find("inner_block/inner_bn").output_shape == (None, 6)
    assert tree.find("inner_block/inner_dense").class_name == "Dense"


def test_tf24_style_metadata_in_the_proto(trained, tmp_path):
    model, path, _ = trained
    old = _tf24_copy(path, tmp_path / "tf24")
    assert not os.path.exists(os.path.join(old, "keras_metadata.pb"))
    tree = hw.inspect(old)
    assert_tree_consistent(tree, model.count_params())
    assert [c.name for c in tree.root.children] == [
        "x", "dense_a", "relu_b", "inner_block", "add", "concat", "head", TRAINING_STATE_NAME]
    _check_layers(tree, "trained")
    assert [n.class_name for n in tree.find("inner_block").children] == [
        "Dense", "BatchNormalization"]
    assert {c.name: c.class_name for c in _state(tree).children} == {
        "optimizer": "RestoredOptimizer", "loss": "Mean", "mae": "MeanMetricWrapper"}
    assert not tree.root.notes


# -- bad input --------------------------------------------------------------------------------
def test_malformed_metadata_still_shows_every_variable(trained, tmp_path):
    model, path, _ = trained

    def break_dense(identifier, text):
        return text[:-7] if '"name": "dense_a"' in text and identifier == "_tf_keras_layer" \
            else text

    tree = hw.inspect(_tf24_copy(path, tmp_path / "broken", break_dense))
    assert_tree_consistent(tree, model.count_params())
    dense = tree.find("trained/dense_a")  # named after its variables' scope instead
    assert dense.class_name == "RestoredObject"
    assert [v.name for v in dense.variables] == ["kernel", "bias"]
    assert any("1 object(s)" in n and "not valid JSON" in n for n in tree.root.notes)
    assert tree.find("trained/relu_b").class_name == "ReLU"


def test_unknown_class_keeps_its_name_and_says_what_is_missing(trained, tmp_path):
    model, path, _ = trained

    def rename_class(identifier, text):
        info = json.loads(text)
        if info.get("name") == "head":
            info["class_name"] = "SomeonesCustomDense"
        return json.dumps(info)

    tree = hw.inspect(_tf24_copy(path, tmp_path / "custom", rename_class))
    assert_tree_consistent(tree, model.count_params())
    head = tree.find("trained/head")
    assert (head.class_name, head.output_shape, head.params) == ("SomeonesCustomDense", None, 26)
    assert any("SomeonesCustomDense" in n and "not installed" in n for n in tree.root.notes)
    assert "note: Keras metadata: layer class(es) not installed here" in tree.summary()


def test_keras3_model_and_plain_modules_have_no_training_state(k3_export, text_module):
    for path in (k3_export, text_module):
        tree = hw.inspect(path)
        assert not any(is_training_state_node(n) for n in tree)
        assert not tree.root.notes


def test_explorer_shows_the_training_state_collapsed(trained):
    from hubwidgets.widgets.explorer import LayerExplorer

    model, path, state_params = trained
    explorer = LayerExplorer(path)
    rows = {row["path"]: row for row in explorer.visible_rows()}
    root = rows["trained"]
    assert root["expanded"] and root["params"] == model.count_params()
    state = rows[f"trained/{TRAINING_STATE_NAME}"]
    assert (state["expanded"], state["has_children"], state["params"]) == (
        False, True, state_params)
    assert not any(p.startswith(f"trained/{TRAINING_STATE_NAME}/") for p in rows)


def test_hubwidgets_hub_layer_wraps_only_the_weights(trained, keras):
    model, path, _ = trained
    layer = hw.HubLayer(path, trainable=True, name="hub")
    assert layer.count_params() == model.count_params()  # no optimizer slots among them
    outer = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(1, name="top")])
    tree = hw.inspect(outer)
    assert_tree_consistent(tree, outer.count_params())
    assert tree.find("hub").params == model.count_params()


@pytest.mark.parametrize("odd", [
    [], 7, "text", None, {"name": ["not", "a", "name"], "class_name": {"x": 1}},
    {"name": "a/b", "class_name": "Dense", "config": "not a dict", "build_input_shape": 3},
    {"name": "dense_a", "class_name": "Dense", "config": {"units": "many"},
     "build_input_shape": {"class_name": "TensorShape", "items": 5}},
])
def test_odd_metadata_values_never_raise(trained, tmp_path, odd):
    model, path, _ = trained

    def replace_dense_a(identifier, text):
        return json.dumps(odd) if json.loads(text).get("name") == "dense_a" else text

    tree = hw.inspect(_tf24_copy(path, tmp_path / "odd", replace_dense_a))
    assert_tree_consistent(tree, model.count_params())
    assert [v.name for v in tree.find("trained/dense_a").variables] == ["kernel", "bias"]
    assert tree.find("trained/relu_b").class_name == "ReLU"


def test_summary_of_a_trained_saved_model_is_exact(legacy_trained):
    model, path, _ = legacy_trained
    expected = textwrap.dedent("""\
        Model: "legacy" (Sequential, SavedModel)
        ----------------------------------------------------------------------------------------------------
        Name                            Class              Output shape  Own params  Total params  Status
        ----------------------------------------------------------------------------------------------------
        legacy                          Sequential         (None, 1)              0            19  trainable
          d1                            Dense              (None, 3)             15            15  trainable
          d2                            Dense              (None, 1)              4             4  trainable
          training state (not counted)  TrainingState      ?                      0            45  frozen
            note: optimizer and metric variables saved with the model: not parameters, so no count above this node includes them
            optimizer                   RestoredOptimizer  ?                      0            43  frozen
              Adam                      NameScope          ?                      5             5  frozen
              d1                        NameScope          ?                      0            30  frozen
                kernel                  NameScope          ?                     24            24  frozen
                bias                    NameScope          ?                      6             6  frozen
              d2                        NameScope          ?                      0             8  frozen
                kernel                  NameScope          ?                      6             6  frozen
                bias                    NameScope          ?                      2             2  frozen
            loss                        Mean               ?                      2             2  frozen
        ----------------------------------------------------------------------------------------------------
        Total params: 19 (76 B)
        Trainable params: 19
        Non-trainable params: 0
        Signatures:
          serving_default(d1_input: float32 (None, 4)) -> d2: float32 (None, 1)""")  # noqa: E501
    assert model.count_params() == 19
    assert hw.inspect(path).summary() == expected


def test_freezing_the_training_state_is_refused_and_changes_nothing(trained, hub, tf_keras):
    _, path, _ = trained
    layer = hub.KerasLayer(path, trainable=True, name="hub_state")
    outer = tf_keras.Sequential([tf_keras.Input((4,)), layer], name="outer_state")
    before = [v.name for v in outer.trainable_weights]
    for action in (hw.freeze, hw.unfreeze):
        with pytest.raises(hw.FreezeError, match="freeze or unfreeze 'outer_state/hub_state'"):
            action(outer, f"hub_state/{TRAINING_STATE_NAME}")
    assert [v.name for v in outer.trainable_weights] == before


@pytest.mark.parametrize("name", ["inner_bn", "dense_a", "head"])
def test_a_bare_name_finds_the_models_own_layer_not_the_optimizer_slot_group(trained, name):
    """Issue 27: Adam's slot groups under "training state (not counted)" reuse layer names."""
    _, path, _ = trained
    tree = hw.inspect(path)
    state = next(n for n in tree.root.children if not n.counted)
    slot_groups = [n for n in state.walk() if n.name == name]
    assert slot_groups  # the name is reused there: the case this test is about
    found = tree.find(name)
    assert found.counted and not found.path.startswith(state.path + "/")
    assert found.class_name == LAYERS.get(name, ("BatchNormalization",))[0]
    assert tree.find(slot_groups[0].path) is slot_groups[0]  # still reachable by full path
    assert tree.named(name) == [found]
