"""Hub modules, whole or in part, in tf_keras (hub.KerasLayer) and Keras 3 (hubwidgets.HubLayer).

Every case ends with a real SGD step: exactly the variables shown as trainable change, and
every frozen variable stays bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from model_state import (UNDO_FREEZES, moving_statistic_ids, sgd_step_changes,
                         trainable_weight_ids, undo_freezes)


def one_step(model, x, y):
    """One SGD step; returns the set of weight ids whose value changed."""
    before = {id(w): np.array(w.numpy()) for w in model.weights}
    model.fit(x, y, epochs=1, batch_size=len(y), verbose=0)
    return {id(w) for w in model.weights if not np.array_equal(before[id(w)], w.numpy())}


def trainable_ids(tree, model):
    """Ids of the model's weights (as the model lists them) that the tree shows trainable."""
    keys = {v.key for v in tree.variables() if v.trainable}
    from hubwidgets.model.adapters.common import variable_key

    return {id(w) for w in model.weights if variable_key(w) in keys}


@pytest.fixture
def xy(tf):
    return (tf.random.stateless_normal((8, 4), seed=(1, 2)),
            tf.random.stateless_normal((8, 2), seed=(3, 4)))


def moving_stat_ids(model):
    return {id(w) for w in model.weights if "moving" in w.name}


# -- tf_keras: hub.KerasLayer ---------------------------------------------------------------
def test_part_of_a_hub_keras_layer_trains_alone(hub_backbone, hub, tf_keras, xy):
    layer = hub.KerasLayer(hub_backbone, trainable=False, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                 tf_keras.layers.Dense(2, name="head")])
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")

    tree = hw.unfreeze(model, "hub/block2_dense")
    assert hw.needs_compile(model)
    assert [(n.name, n.trainable) for n in tree.find("hub").children] == [
        ("block1_dense", False), ("block1_bn", False), ("block2_dense", True)]
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    assert not hw.needs_compile(model)

    changed = one_step(model, *xy)
    block2_and_head = {id(w) for w in layer.weights if "block2" in w.name} | \
        {id(w) for w in model.get_layer("head").weights}
    assert changed - moving_stat_ids(model) == block2_and_head == trainable_ids(tree, model)


def test_freeze_a_part_of_a_trainable_hub_keras_layer(hub_backbone, hub, tf_keras, xy):
    layer = hub.KerasLayer(hub_backbone, trainable=True, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                 tf_keras.layers.Dense(2, name="head")])
    tree = hw.freeze(model, "hub/block1_.*")
    assert tree.find("hub").trainable == "mixed"
    assert tree.root.trainable_params == 6 * 8 + 6 + 6 * 2 + 2
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    changed = one_step(model, *xy)
    assert changed - moving_stat_ids(model) == trainable_ids(tree, model)
    assert not changed & {id(w) for w in layer.weights if "block1_dense" in w.name}
    # a whole-module toggle clears the part freeze
    tree = hw.set_trainable(model, "hub", True)
    assert tree.find("hub").trainable is True


def test_hub_keras_layer_saves_in_its_own_order_once_parts_are_unfrozen_again(
        hub_backbone, hub, tf_keras, tmp_path):
    """tf_keras writes a layer's weights by position (trainable first): after a part is frozen
    and unfrozen again, the layer lists them as it did before, so a saved file loads into a
    fresh model with every value in its place."""
    layer = hub.KerasLayer(hub_backbone, trainable=True, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer])
    first_order = [w.name for w in model.weights]
    hw.freeze(model, "hub/block1_dense")
    hw.unfreeze(model, "hub/block1_dense")
    assert [w.name for w in model.weights] == first_order
    for w in model.weights:  # values a swap would show
        w.assign(w + np.arange(w.shape.num_elements(), dtype="float32").reshape(w.shape))
    model.save_weights(tmp_path / "weights.h5")
    fresh = tf_keras.Sequential([tf_keras.Input((4,)),
                                 hub.KerasLayer(hub_backbone, trainable=True)])
    fresh.load_weights(tmp_path / "weights.h5")
    for saved, loaded in zip(model.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())


def test_signature_layer_and_tf1_module_cannot_be_unfrozen(hub_backbone, tf1_hub_module, hub,
                                                           tf_keras):
    by_signature = hub.KerasLayer(hub_backbone, signature="serving_default",
                                  output_key="block2_dense", name="sig")
    tf1 = hub.KerasLayer(tf1_hub_module, name="tf1")
    inp = tf_keras.Input((4,))
    model = tf_keras.Model(inp, [by_signature(inp), tf1(inp)])
    with pytest.raises(hw.FreezeError, match="signature 'serving_default'"):
        hw.unfreeze(model, "sig")
    with pytest.raises(hw.FreezeError, match="TF1 Hub format"):
        hw.unfreeze(model, "tf1")
    with pytest.warns(UserWarning, match="Left frozen"):
        hw.unfreeze(model)
    assert (by_signature.trainable, tf1.trainable) == (False, False)


# -- hub.KerasLayer trains its module's trainable_variables list, as HubLayer does ----------------
@pytest.fixture(scope="module")
def listed_module(tf, tmp_path_factory):
    """A tiny tf.Module saved as TF Hub's reusable SavedModel: ``kernel`` is in its
    trainable_variables list; ``stat`` was created with trainable=False (a moving statistic);
    ``left_out`` is a trainable tf.Variable the module leaves out of its trainable list (what a
    frozen sub-layer looks like: tf_keras restores its variables with trainable=True)."""

    class Scaler(tf.Module):
        def __init__(self):
            super().__init__(name="scaler")
            with self.name_scope:  # the explorer groups the module's variables by scope
                self.kernel = tf.Variable(tf.fill((4, 2), 0.5), name="kernel")
                self.stat = tf.Variable(tf.fill((2,), 2.0), trainable=False, name="stat")
                self.left_out = tf.Variable(tf.fill((2,), 0.25), name="left_out")

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
        def __call__(self, x):
            return tf.matmul(x, self.kernel) * self.stat + self.left_out

    module = Scaler()
    obj = tf.train.Checkpoint(scaler=module)  # hub.KerasLayer reads .variables and
    obj.__call__ = module.__call__  # .trainable_variables; the explorer shows .scaler
    obj.variables = [module.kernel, module.stat, module.left_out]
    obj.trainable_variables = [module.kernel]
    path = str(tmp_path_factory.mktemp("listed_module") / "scaler")
    tf.saved_model.save(obj, path)
    return path


def hub_keras_model(hub, tf_keras, handle, trainable=True):
    tf_keras.utils.set_random_seed(4)
    layer = hub.KerasLayer(handle, trainable=trainable, name="hub")
    return layer, tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                       tf_keras.layers.Dense(2, name="head")], name="model")


def sgd_step(model, tf_keras, xy):
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    return one_step(model, *xy)


def state_of(model):
    """What a refused change must leave alone: each weight's list, flag and value."""
    return ([w.name for w in model.trainable_weights], [w.name for w in model.weights],
            [w.trainable for w in model.weights], [w.numpy().tobytes() for w in model.weights])


@pytest.mark.parametrize("outside", ["left_out", "stat"])
@pytest.mark.parametrize("trainable", [True, False])
def test_hub_keras_layer_refuses_to_unfreeze_a_variable_outside_the_modules_trainable_list(
        listed_module, hub, tf_keras, xy, outside, trainable):
    from hubwidgets.model.adapters.common import variable_key
    from hubwidgets.model.variable_flags import set_variables_trainable

    layer, model = hub_keras_model(hub, tf_keras, listed_module, trainable)
    before = state_of(model)
    for change in (lambda: hw.unfreeze(model, f"hub/scaler/{outside}"),
                   lambda: hw.unfreeze(model, f"model/hub/scaler/{outside}"),
                   lambda: hw.unfreeze(model, f"scaler/{outside}$")):
        with pytest.raises(hw.FreezeError, match="not in the trainable set|none of the variab"
                           ) as refused:
            change()
        message = str(refused.value)
        assert f"'model/hub/scaler/{outside}'" in message and "trainable_variables list" in message
        assert "Unfreeze another part" in message
        assert state_of(model) == before  # nothing changed on the way
    weight = next(w for w in layer.weights if w.name.startswith(f"scaler/{outside}"))
    with pytest.raises(hw.FreezeError, match="trainable set"):  # straight to the flags, too
        set_variables_trainable(layer, {variable_key(weight)}, True)
    assert state_of(model) == before

    changed = sgd_step(model, tf_keras, xy)
    head = {id(w) for w in model.get_layer("head").weights}
    kernel = {id(w) for w in layer.weights if w.name.startswith("scaler/kernel")}
    assert changed == (kernel | head if trainable else head) == trainable_ids(hw.inspect(model),
                                                                                model)
    assert id(weight) not in changed  # bit-identical


def test_whole_hub_keras_layer_unfreeze_trains_exactly_the_modules_trainable_list(
        listed_module, hub, tf_keras, xy):
    layer, model = hub_keras_model(hub, tf_keras, listed_module, trainable=False)
    kernel_and_head = {id(w) for w in layer.weights if w.name == "scaler/kernel:0"} | {
        id(w) for w in model.get_layer("head").weights}
    for unfreeze in (lambda: hw.unfreeze(model, "hub"), lambda: hw.unfreeze(model),
                     lambda: hw.set_trainable(model, "model/hub", True)):
        hw.freeze(model, "hub")
        assert layer.trainable_weights == []
        tree = unfreeze()
        assert [w.name for w in layer.trainable_weights] == ["scaler/kernel:0"]
        assert_tree_matches_training(tree, model)
        assert sgd_step(model, tf_keras, xy) == kernel_and_head == trainable_ids(tree, model)
    hw.freeze(model, "hub/scaler/kernel")  # a part freeze, then the whole layer again
    hw.unfreeze(model, "hub")
    assert [w.name for w in layer.trainable_weights] == ["scaler/kernel:0"]


def test_explorer_shows_what_a_hub_keras_layer_cannot_train_and_why(listed_module, hub,
                                                                    tf_keras):
    layer, model = hub_keras_model(hub, tf_keras, listed_module)
    tree = hw.inspect(model)
    assert_tree_matches_training(tree, model)  # on every node
    assert {v.name: v.can_train for v in tree.find("model/hub/scaler").variables} == {
        "kernel": True, "stat": False, "left_out": False}
    assert tree.find("model/hub").trainable_params == 4 * 2
    assert tree.find("model/hub").trainable is True  # all it can train, trains

    explorer = hw.LayerExplorer(model)
    explorer.handle_action({"action": "set_trainable", "path": "model/hub", "value": False})
    explorer.handle_action({"action": "set_trainable", "path": "model/hub/scaler",
                            "value": True})  # the module's part: only its list trains
    assert [w.name for w in layer.trainable_weights] == ["scaler/kernel:0"]
    assert explorer.totals["trainable"] == 4 * 2 + (2 * 2 + 2)
    rows = {r["path"]: r for r in explorer.visible_rows(["model", "model/hub", "model/hub/scaler"])}
    assert rows["model/hub/scaler"]["trainable"] == rows["model/hub"]["trainable"] == "trainable"
    shown = {v["name"]: (v["can_train"], v["trainable"])
             for v in rows["model/hub/scaler"]["variables"]}  # can_train False: "not trained"
    assert shown == {"kernel": (True, True), "stat": (False, False), "left_out": (False, False)}
    why = {v["name"]: v["not_trained_why"] for v in rows["model/hub/scaler"]["variables"]}
    assert why["kernel"] == ""  # the explorer's "not trained" badge says which reason applies
    assert why["stat"].startswith("created with trainable=False")
    assert why["left_out"].startswith("left out of its Hub module's trainable_variables list")
    assert_tree_matches_training(explorer.tree, model)

    with pytest.raises(hw.FreezeError) as refused:  # the reason, as the explorer's API says it
        hw.unfreeze(explorer.tree, "model/hub/scaler/left_out")
    assert "none of the variables of 'model/hub/scaler/left_out' (Variable) is in the " \
        "trainable set of the Hub layer 'hub' (the module's trainable_variables list)" \
        in str(refused.value)


# -- Keras 3: hubwidgets.HubLayer -------------------------------------------------------------
def test_hub_layer_fits_in_keras3_and_shows_the_module_inside(hub_backbone, keras):
    layer = hw.HubLayer(hub_backbone, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")])
    tree = hw.inspect(model)
    hub_node = tree.find("hub")
    assert [c.name for c in hub_node.children] == ["block1_dense", "block1_bn", "block2_dense"]
    assert hub_node.trainable is False and hub_node.params == 126
    assert [v.name for v in tree.find("hub/block1_bn").variables] == [
        "gamma", "beta", "moving_mean", "moving_variance"]


def test_transfer_learning_recipe_with_hub_layer(hub_backbone, keras, xy):
    """The seeds' recipe in Keras 3: frozen feature extractor + new head, then fine-tune the
    top block; what changes is exactly what the explorer shows as trainable."""
    keras.utils.set_random_seed(1)
    layer = hw.HubLayer(hub_backbone, trainable=False, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")

    tree = hw.inspect(model)
    assert layer.frozen_variables == []  # frozen as a whole, not in parts
    changed = one_step(model, *xy)  # stage 1: the head trains, the module is untouched
    assert changed == trainable_ids(tree, model) == {id(w) for w in model.get_layer("head").weights}

    tree = hw.unfreeze(model, "hub/block2_dense")  # stage 2: fine-tune the top block
    assert hw.needs_compile(model)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    assert not hw.needs_compile(model)
    changed = one_step(model, *xy)
    top = {id(w) for w in layer.weights if w.name.startswith("block2_dense")}
    assert changed - moving_stat_ids(model) == trainable_ids(tree, model)
    assert trainable_ids(tree, model) == top | {id(w) for w in model.get_layer("head").weights}
    assert layer.frozen_variables == ["block1_dense__kernel", "block1_dense__bias",
                                      "block1_bn__gamma", "block1_bn__beta"]
    assert any("still runs in training mode" in n for n in tree.find("hub/block1_bn").notes)
    fresh = hw.inspect(model)  # a new look at the model tells the same
    assert any("still runs in training mode" in n for n in fresh.find("hub/block1_bn").notes)
    assert not fresh.find("hub/block2_dense").notes


def test_hub_layer_passes_training_to_the_module(hub_backbone, keras, xy):
    layer = hw.HubLayer(hub_backbone, trainable=True, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = one_step(model, *xy)
    assert moving_stat_ids(model) <= changed  # BatchNorm ran in training mode
    x = xy[0]
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


def test_hub_layer_takes_strings(text_module, keras, tf):
    sentences = tf.constant(["a tiny model", "strings go in", "vectors come out", "x"])
    layer = hw.HubLayer(text_module, trainable=True, name="embed")
    model = keras.Sequential([keras.Input((), dtype="string"), layer,
                              keras.layers.Dense(1, name="score")])
    assert model(sentences).shape == (4, 1)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    tree = hw.freeze(model, "embed/embedding")  # a name scope inside the module
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = {id(w): np.array(w.numpy()) for w in model.weights}
    model.fit(sentences, tf.ones((4, 1)), epochs=1, batch_size=4, verbose=0)
    changed = {id(w) for w in model.weights if not np.array_equal(before[id(w)], w.numpy())}
    assert changed == trainable_ids(tree, model)
    assert [v.path.split("/", 1)[1] for v in tree.variables() if v.trainable] == [
        "embed/projection/kernel", "embed/projection/bias", "score/kernel", "score/bias"]


def test_hub_layer_saves_and_loads_with_the_model(hub_backbone, keras, xy, tmp_path):
    layer = hw.HubLayer(hub_backbone, trainable=True, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    hw.freeze(model, "hub/block1_dense")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    one_step(model, *xy)  # the fine-tuned values differ from the module on disk
    path = str(tmp_path / "with_hub.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for saved, back in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), back.numpy())
    assert loaded.get_layer("hub").frozen_variables == ["block1_dense__kernel",
                                                        "block1_dense__bias"]
    np.testing.assert_allclose(model(xy[0]), loaded(xy[0]), rtol=1e-6)


def test_hub_layer_refuses_to_train_what_cannot(hub_backbone, tf1_hub_module, keras):
    with pytest.raises(hw.FreezeError, match="TF1 Hub format"):
        hw.HubLayer(tf1_hub_module, trainable=True, signature="default", output_key="default")
    frozen_tf1 = hw.HubLayer(tf1_hub_module, signature="default", output_key="default",
                             name="tf1")
    assert frozen_tf1(np.ones((2, 4), "float32")).shape == (2, 3)
    with pytest.raises(hw.FreezeError, match="signature 'serving_default'"):
        hw.HubLayer(hub_backbone, trainable=True, signature="serving_default")
    model = keras.Sequential([keras.Input((4,)), frozen_tf1])
    with pytest.raises(hw.FreezeError, match="TF1 Hub format"):
        hw.unfreeze(model, "tf1")
    with pytest.raises(ValueError, match="no signature 'nope'"):
        hw.HubLayer(hub_backbone, signature="nope")
    with pytest.raises(hw.ModelLoadError, match="No SavedModel directory"):
        hw.HubLayer("/no/such/module")
    with pytest.raises(hw.ModelLoadError, match="offline"):
        hw.HubLayer("https://tfhub.dev/no-such-publisher/no-such-module/1")


# -- HubLayer's trainable set: the module's trainable_variables list ---------------------------
def save_regularized_module(tf, tf_keras, path, raw):
    """A feature module: an L2-regularized "encoder" that trains, and a "frozen_proj" layer
    saved with trainable=False (tf_keras still restores its variables with trainable=True).
    ``raw`` writes it as TF Hub's reusable SavedModel from a tf.train.Checkpoint (with a
    save_counter); else tf.saved_model.save of the tf_keras model."""
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((4,))
    encoder = tf_keras.layers.Dense(6, activation="tanh", name="encoder",
                                    kernel_regularizer=tf_keras.regularizers.l2(0.01))
    proj = tf_keras.layers.Dense(3, name="frozen_proj", trainable=False)
    model = tf_keras.Model(inp, proj(encoder(inp)), name="module")
    if not raw:
        tf.saved_model.save(model, path)
        return path

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    def call_fn(x):
        return model(x, training=False)

    obj = tf.train.Checkpoint()
    obj.__call__ = call_fn
    obj.variables = model.trainable_variables + model.non_trainable_variables
    obj.trainable_variables = model.trainable_variables
    obj.regularization_losses = [tf.function(lambda: model.losses[0], input_signature=[])]
    tf.saved_model.save(obj, path)
    return path


@pytest.fixture(scope="module", params=["raw", "from_tf_keras"])
def regularized_module(request, tf, tf_keras, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("regularized") / request.param)
    return save_regularized_module(tf, tf_keras, path, request.param == "raw")


def hub_model(keras, handle, trainable=True):
    keras.utils.set_random_seed(2)
    layer = hw.HubLayer(handle, trainable=trainable, name="hub")
    return layer, keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")])


def ids_of(layer, prefix):
    return {id(w) for w in layer.weights if w.name.startswith(prefix)}


def assert_tree_matches_training(tree, model):
    """On every node: each variable shown trainable is one the optimizer gets, and back."""
    from hubwidgets.model.adapters.common import variable_key

    optimized = {variable_key(w) for w in model.trainable_weights}
    for node in tree.root.walk():
        for v in node.variables:
            assert v.trainable == (v.key in optimized), v.path
            assert not v.trainable or v.can_train, v.path


def test_hub_layer_trains_the_modules_trainable_variables_only(regularized_module, keras, xy):
    layer, model = hub_model(keras, regularized_module)
    assert layer.trainable_source == "the module's trainable_variables list"
    assert "save_counter" not in {w.name for w in layer.weights}
    assert len(layer.weights) == len(layer.module.variables) == 4
    tree = hw.inspect(model)
    assert_tree_matches_training(tree, model)
    assert not any(v.can_train for v in tree.find("hub/frozen_proj").variables)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = one_step(model, *xy)
    encoder_and_head = ids_of(layer, "encoder") | {id(w) for w in model.get_layer("head").weights}
    assert changed == trainable_ids(tree, model) == encoder_and_head
    assert not changed & ids_of(layer, "frozen_proj")  # bit-identical


def test_part_freezing_stays_within_the_trainable_set(regularized_module, keras, xy):
    from hubwidgets.model.adapters.common import variable_key
    from hubwidgets.model.variable_flags import set_variables_trainable

    layer, model = hub_model(keras, regularized_module)
    flags = [w.trainable for w in model.weights]
    with pytest.raises(hw.FreezeError, match="trainable set"):
        hw.unfreeze(model, "hub/frozen_proj")
    with pytest.raises(hw.FreezeError, match="trainable set"):
        hw.unfreeze(model, "hub/frozen_proj/kernel")
    outside = {variable_key(layer.variable_named("frozen_proj/kernel"))}
    with pytest.raises(hw.FreezeError, match="trainable set"):  # straight to the flags, too
        set_variables_trainable(layer, outside, True)
    assert [w.trainable for w in model.weights] == flags  # nothing changed on the way

    tree = hw.freeze(model, "hub")  # then unfreeze a part: exactly that part trains
    tree = hw.unfreeze(model, "hub/encoder")
    assert_tree_matches_training(tree, model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = one_step(model, *xy)
    assert changed == trainable_ids(tree, model) == ids_of(layer, "encoder") | {
        id(w) for w in model.get_layer("head").weights}

    tree = hw.freeze(model, "hub/encoder/kernel")  # a part within the set freezes
    assert_tree_matches_training(tree, model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = one_step(model, *xy)
    assert changed == trainable_ids(tree, model)
    assert ids_of(layer, "encoder__bias") <= changed
    assert not changed & (ids_of(layer, "encoder__kernel") | ids_of(layer, "frozen_proj"))
    tree = hw.set_trainable(model, "hub", True)  # the whole module: its set, nothing more
    assert_tree_matches_training(tree, model)
    assert {w.name for w in layer.trainable_weights} == {"encoder__kernel", "encoder__bias"}
    hw.freeze(model, "hub/encoder/bias")
    layer.trainable = True  # in plain Keras too, even though it is trainable already
    assert {w.name for w in layer.trainable_weights} == {"encoder__kernel", "encoder__bias"}
    assert_tree_matches_training(hw.inspect(model), model)


def test_new_user_recipe_fine_tunes_the_module_and_its_regularizer(regularized_module, keras,
                                                                   tf, xy):
    """A TF Hub recipe moved to Keras 3: a module with a regularizer and a frozen sub-layer,
    fine-tuned with a new head. Training updates exactly the module's trainable variables
    and minimizes the module's regularization loss with the data loss."""
    layer, model = hub_model(keras, regularized_module)
    x = xy[0]
    y = np.asarray(model(x))  # targets the model already meets: only the regularizer pulls
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    regularization = float(np.sum(model.losses))
    kernel = layer.variable_named("encoder/kernel")
    np.testing.assert_allclose(regularization, 0.01 * np.sum(kernel.numpy() ** 2), rtol=1e-5)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(regularization, rel=1e-5)

    tree = hw.inspect(model)
    before = {id(w): np.array(w.numpy()) for w in model.weights}
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=20, epochs=1, verbose=0)
    changed = {id(w) for w in model.weights if not np.array_equal(before[id(w)], w.numpy())}
    assert changed == trainable_ids(tree, model) == ids_of(layer, "encoder") | {
        id(w) for w in model.get_layer("head").weights}
    assert float(np.sum(model.losses)) < 0.9 * regularization  # the regularizer was minimized
    np.testing.assert_allclose(float(np.sum(model.losses)),
                               0.01 * np.sum(kernel.numpy() ** 2), rtol=1e-5)


# -- Keras 3 model.export() directories ---------------------------------------------------------
@pytest.fixture(scope="module")
def keras3_exports(keras, tmp_path_factory):
    """A Keras 3 model exported with a frozen last layer, and the same model exported frozen."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="d"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dense(2, name="frozen")], name="exported")
    model.get_layer("frozen").trainable = False
    root = tmp_path_factory.mktemp("keras3_exports")
    model.export(str(root / "partly_frozen"), verbose=False)
    model.trainable = False
    model.export(str(root / "all_frozen"), verbose=False)
    model.trainable = True
    model.get_layer("frozen").trainable = False
    return model, str(root / "partly_frozen"), str(root / "all_frozen")


def test_keras3_export_loads_with_defaults_through_serve(keras3_exports, xy):
    original, path, _ = keras3_exports
    layer = hw.HubLayer(path)
    assert layer.endpoint == "serve"
    np.testing.assert_allclose(layer(xy[0]), original(xy[0]), rtol=1e-6)


def test_keras3_export_fine_tunes_what_its_endpoint_allows(keras3_exports, keras, xy):
    _, path, _ = keras3_exports
    layer = hw.HubLayer(path, trainable=True, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")])
    tree = hw.inspect(model)
    assert_tree_matches_training(tree, model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = one_step(model, *xy)
    expected = {id(w) for w in layer.weights
                if w.name.split("__")[-2] in ("d", "bn") and "moving" not in w.name}
    assert len(expected) == 4  # d's kernel and bias, bn's gamma and beta
    assert changed == trainable_ids(tree, model) == expected | {
        id(w) for w in model.get_layer("head").weights}
    assert not changed & moving_stat_ids(model)  # 'serve' runs BatchNorm in inference mode
    with pytest.raises(hw.FreezeError, match="trainable set"):
        hw.unfreeze(model, "hub/frozen")


def test_keras3_export_without_trainable_variables_is_refused(keras3_exports, keras):
    _, _, frozen_path = keras3_exports
    with pytest.raises(hw.FreezeError, match="export the model again"):
        hw.HubLayer(frozen_path, trainable=True)
    layer = hw.HubLayer(frozen_path, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer])
    with pytest.raises(hw.FreezeError, match="'serve' endpoint of a Keras 3 export"):
        hw.unfreeze(model, "hub")
    assert layer.trainable is False


def test_a_module_without_a_trainable_list_follows_the_variable_flags(text_module, keras):
    layer = hw.HubLayer(text_module, trainable=True, name="embed")
    assert layer.trainable_source.startswith("each variable's own trainable flag")
    assert len(layer.trainable_weights) == len(layer.weights) == 3


# -- Unfreezing undoes a part freeze of a Hub module; "Freeze matches" inside one ----------
@pytest.fixture(scope="module")
def hub_model_factory(hub_backbone, keras):
    def make():
        layer = hw.HubLayer(hub_backbone, trainable=True, name="hub")
        return keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")],
                                name="hm")
    return make


@pytest.mark.parametrize("how", UNDO_FREEZES)
def test_unfreeze_undoes_a_hub_layer_block_freeze(how, hub_model_factory, keras, tf):
    model = hub_model_factory()
    can_train = {v.key for v in hw.inspect(model).variables() if v.can_train}
    hw.freeze(model, "hm/hub/block1_dense")
    assert hw.inspect(model).find("hm/hub").trainable == "mixed"
    undo_freezes(model, how)
    tree = hw.inspect(model)
    assert {v.key for v in tree.variables() if v.trainable} == can_train
    assert tree.find("hm/hub").trainable is True
    assert tree.root.trainable_params == model.count_params() - 2 * 8  # BN moving stats
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = sgd_step_changes(model, tf, 4, 2)
    assert changed - moving_statistic_ids(model) == trainable_weight_ids(model) == {
        id(w) for w in model.weights} - moving_statistic_ids(model)


def test_unfreeze_undoes_a_hub_keras_layer_part_freeze_in_tf_keras(hub_backbone, hub, tf_keras,
                                                                    tf):
    layer = hub.KerasLayer(hub_backbone, trainable=True, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                 tf_keras.layers.Dense(2, name="head")], name="tm")
    hw.freeze(model, "tm/hub/block2_dense")
    assert hw.inspect(model).find("tm/hub").trainable == "mixed"
    hw.unfreeze(model)
    tree = hw.inspect(model)
    assert all(v.trainable for v in tree.variables() if v.can_train)
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    changed = sgd_step_changes(model, tf, 4, 2)
    assert changed - moving_statistic_ids(model) == trainable_weight_ids(model)
    assert {id(w) for w in layer.weights if "block2" in w.name} <= changed


def test_freeze_matches_inside_a_hub_layer_freezes_the_shown_parts(hub_model_factory, keras,
                                                                   tf):
    model = hub_model_factory()
    explorer = hw.LayerExplorer(model)
    explorer.query = "BLOCK1"
    assert [r["path"] for r in explorer.visible_rows()] == [
        "hm", "hm/hub", "hm/hub/block1_dense", "hm/hub/block1_bn"]
    explorer.handle_action({"action": "freeze_pattern", "pattern": "BLOCK1"})
    assert explorer.message.startswith("Froze 2 layer(s): hub/block1_dense, hub/block1_bn")
    hub_layer = model.get_layer("hub")
    block1 = {id(w) for w in hub_layer.weights if w.name.startswith("block1_")}
    assert trainable_weight_ids(model) == {id(w) for w in model.weights} - block1
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    changed = sgd_step_changes(model, tf, 4, 2)
    # the module runs in training mode as a whole: its frozen BatchNorm still updates its
    # moving statistics, and the row says so
    assert changed - moving_statistic_ids(model) == trainable_weight_ids(model)
    assert not (changed - moving_statistic_ids(model)) & block1
    assert any("still runs in training mode" in note
               for note in hw.inspect(model).find("hm/hub/block1_bn").notes)
