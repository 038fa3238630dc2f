"""Freeze -> unfreeze -> freeze round trips over random sets of layers and variables
(issue 14), checked against Keras' own trainable lists, the tree, and real SGD steps.

Two models, each built once: a Keras 3 model (a nested Sequential with BatchNorm and a
``hubwidgets.HubLayer``) and a tf_keras model (a nested Sequential with BatchNorm and a
``hub.KerasLayer``).  A tanh sits before each BatchNorm: a bias feeding BatchNorm directly
gets no gradient, so an SGD step could not tell whether it trains.  Which weights a path
stands for is worked out here from Keras' own layers and weight names, not from hubwidgets.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hubwidgets as hw
from hubwidgets.model.adapters.common import variable_key

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# -- the models and what each path stands for ------------------------------------------------
def short_name(weight):
    """A weight's own name: ``kernel`` for "kernel", "d/kernel:0" and "block1__kernel"."""
    return weight.name.split(":")[0].split("/")[-1].split("__")[-1]


def part_of(weight):
    """The Hub module part a weight belongs to ("block1_dense"), from its name."""
    name = weight.name.split(":")[0]
    return name.split("__")[0] if "__" in name else name.split("/")[-2]


def path_table(model, hub_name="hub"):
    """{hubwidgets path: ids of the model's weights it stands for}, from Keras alone."""
    table: dict[str, set[int]] = {}

    def visit(layer, path):
        table[path] = {id(w) for w in layer.weights}
        if layer.name == hub_name:
            for w in layer.weights:
                part = f"{path}/{part_of(w)}"
                table.setdefault(part, set()).add(id(w))
                table[f"{part}/{short_name(w)}"] = {id(w)}
            return
        sublayers = getattr(layer, "layers", None)
        if sublayers is not None:
            for sub in sublayers:
                if sub.weights:
                    visit(sub, f"{path}/{sub.name}")
        else:
            for w in layer.weights:
                table[f"{path}/{short_name(w)}"] = {id(w)}

    visit(model, model.name)
    return table


@pytest.fixture(scope="module")
def k3_model(keras, hub_backbone):
    keras.utils.set_random_seed(5)
    inner = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(4, activation="tanh", name="i1"),
                              keras.layers.BatchNormalization(name="ibn"),
                              keras.layers.Dense(4, name="i2")], name="inner")
    return keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(4, activation="tanh", name="pre"), inner,
        hw.HubLayer(hub_backbone, trainable=True, name="hub"),
        keras.layers.Dense(2, name="head")], name="km")


@pytest.fixture(scope="module")
def tfk_model(tf_keras, hub, hub_backbone):
    tf_keras.utils.set_random_seed(6)
    inner = tf_keras.Sequential([tf_keras.layers.Dense(4, activation="tanh", input_shape=(4,),
                                                       name="i1"),
                                 tf_keras.layers.BatchNormalization(name="ibn")], name="inner")
    return tf_keras.Sequential([
        tf_keras.Input((4,)), tf_keras.layers.Dense(4, activation="tanh", name="pre"), inner,
        hub.KerasLayer(hub_backbone, trainable=True, name="hub"),
        tf_keras.layers.Dense(2, name="head")], name="tm")


@pytest.fixture(scope="module")
def xy(tf):
    return (tf.random.stateless_normal((16, 4), seed=(1, 2)),
            tf.random.stateless_normal((16, 2), seed=(3, 4)))


def test_the_path_tables_name_what_hubwidgets_shows(k3_model, tfk_model):
    for model in (k3_model, tfk_model):
        tree = hw.inspect(model)
        shown = {n.path for n in tree} | {v.path for v in tree.variables()}
        table = path_table(model)
        assert set(table) == shown
        assert table[model.name] == {id(w) for w in model.weights}
        assert len(tree.variables()) == len(model.weights)


# -- the checks ----------------------------------------------------------------------------------
def moving(model):
    return {id(w) for w in model.weights if "moving" in w.name}


def can_train(model):
    return {id(w) for w in model.weights} - moving(model)


def snapshot(model):
    return ([id(w) for w in model.trainable_weights], [id(w) for w in model.weights],
            [np.array(w.numpy()).tobytes() for w in model.weights])


def sgd_step(model, K, xy, tf, fit):
    """One real SGD step: ``model.fit`` after ``compile`` (``fit``), or one eager step of
    the same loss over ``model.trainable_variables``.  The ids of the weights it changed."""
    before = {id(w): np.array(w.numpy()) for w in model.weights}
    x, y = xy
    if fit:
        model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, epochs=1, batch_size=len(y), verbose=0)
    else:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        variables = model.trainable_variables
        for v, g in zip(variables, tape.gradient(loss, variables), strict=True):
            assert g is not None, f"no gradient for trainable {v.name}"
            v.assign_sub(0.1 * tf.convert_to_tensor(g))
    return {id(w) for w in model.weights if not np.array_equal(before[id(w)], w.numpy())}


def check(model, expected, K, xy, tf, fit=False):
    """Keras, the tree and a real SGD step all agree that exactly ``expected`` trains."""
    assert {id(w) for w in model.trainable_weights} == expected
    tree = hw.inspect(model)
    shown = {v.key for v in tree.variables() if v.trainable}
    assert {id(w) for w in model.weights if variable_key(w) in shown} == expected
    assert tree.root.trainable_params == sum(
        int(np.prod(w.shape)) for w in model.weights if id(w) in expected)
    changed = sgd_step(model, K, xy, tf, fit)
    assert changed - moving(model) == expected


def never_trains(model, path):
    """Whether ``path`` stands only for weights that never train (moving statistics):
    unfreezing it is refused, so the round trips leave it out (a property below checks it)."""
    return path_table(model)[path] <= moving(model)


def round_trip(model, K, xy, tf, targets):
    """unfreeze -> freeze(targets) -> unfreeze -> freeze -> unfreeze(targets) -> freeze."""
    table = path_table(model)
    chosen = set().union(*(table[t] for t in targets))
    everything = can_train(model)

    hw.unfreeze(model)
    check(model, everything, K, xy, tf)
    hw.freeze(model, *targets)
    check(model, everything - chosen, K, xy, tf, fit=True)
    hw.unfreeze(model)
    check(model, everything, K, xy, tf)
    hw.freeze(model)
    check(model, set(), K, xy, tf)
    hw.unfreeze(model, *targets)
    check(model, everything & chosen, K, xy, tf)
    hw.freeze(model)
    check(model, set(), K, xy, tf)


# -- the properties ------------------------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_keras3_round_trips_over_layers_variables_and_hub_parts(k3_model, keras, xy, tf, data):
    paths = sorted(p for p in set(path_table(k3_model)) - {k3_model.name}
                   if not never_trains(k3_model, p))
    targets = data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True),
                        label="targets")
    round_trip(k3_model, keras, xy, tf, targets)


def tf_keras_refused(model, path):
    """Whether ``path`` is one variable of an ordinary tf_keras layer (not a Hub part)."""
    parts = path.split("/")
    return len(parts) >= 3 and parts[1] != "hub" and parts[-1] in (
        "kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")


@SETTINGS
@given(data=st.data())
def test_tf_keras_round_trips_over_layers_and_hub_parts(tfk_model, tf_keras, xy, tf, data):
    paths = sorted(p for p in set(path_table(tfk_model)) - {tfk_model.name}
                   if not tf_keras_refused(tfk_model, p) and not never_trains(tfk_model, p))
    targets = data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True),
                        label="targets")
    round_trip(tfk_model, tf_keras, xy, tf, targets)


@SETTINGS
@given(data=st.data())
def test_tf_keras_refuses_a_variable_of_an_ordinary_layer_and_changes_nothing(
        tfk_model, data):
    table = path_table(tfk_model)
    refused = sorted(p for p in table if tf_keras_refused(tfk_model, p))
    allowed = sorted(p for p in set(table) - {tfk_model.name}
                     if not tf_keras_refused(tfk_model, p) and not never_trains(tfk_model, p))
    bad = data.draw(st.sampled_from(refused), label="refused")
    good = data.draw(st.lists(st.sampled_from(allowed), max_size=3, unique=True), label="valid")
    position = data.draw(st.integers(0, len(good)), label="position")
    targets = [*good[:position], bad, *good[position:]]
    start = data.draw(st.sampled_from(["unfrozen", "frozen"]), label="start")
    (hw.unfreeze if start == "unfrozen" else hw.freeze)(tfk_model)
    before = snapshot(tfk_model)
    for call in (hw.freeze, hw.unfreeze):
        with pytest.raises(hw.FreezeError, match="tf_keras trains whole layers"):
            call(tfk_model, *targets)
        assert snapshot(tfk_model) == before  # all checked before anything changed


@SETTINGS
@given(data=st.data())
def test_unfreezing_what_never_trains_is_refused_and_changes_nothing(k3_model, data):
    table = path_table(k3_model)
    never = sorted(p for p in table if p != k3_model.name and never_trains(k3_model, p))
    target = data.draw(st.sampled_from(never), label="moving statistics")
    start = data.draw(st.sampled_from(["unfrozen", "frozen"]), label="start")
    (hw.unfreeze if start == "unfrozen" else hw.freeze)(k3_model)
    before = snapshot(k3_model)
    with pytest.raises(hw.FreezeError, match="Cannot unfreeze .* none of the variables"):
        hw.unfreeze(k3_model, target)
    assert snapshot(k3_model) == before
