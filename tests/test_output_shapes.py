"""Output shapes of layers called eagerly (subclassed models), in Keras 3 and tf_keras.

The oracle is what each layer really returned: the test models record ``y.shape`` of every
layer output in their own ``call``.  Showing the shapes must not run or change the model:
every variable (BatchNormalization's moving statistics included) stays bit-identical, and no
layer gains a call node.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.formatting import format_shape
from hubwidgets.widgets.explorer_rows import node_row
from tree_invariants import assert_tree_consistent

GENERATIONS = ["keras", "tf_keras"]


def recording_model(K):
    """A subclassed model (Conv2D, BatchNormalization, Flatten, a custom block of two Dense,
    Dense, and a Dense never called) that records the shape of every layer's output."""

    seen = {}  # a closure, not an attribute (Keras 3 would track a copy of the dict)

    class Block(K.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner_a = K.layers.Dense(3, name="inner_a")
            self.inner_b = K.layers.Dense(5, name="inner_b")

        def call(self, x):
            x = self.inner_a(x)
            seen["inner_a"] = tuple(x.shape)
            x = self.inner_b(x)
            seen["inner_b"] = tuple(x.shape)
            return x

    class Recording(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = K.layers.Conv2D(4, 3, name="conv")
            self.norm = K.layers.BatchNormalization(name="norm")
            self.flat = K.layers.Flatten(name="flat")
            self.block = Block(name="block")
            self.head = K.layers.Dense(2, name="head")
            self.unused = K.layers.Dense(7, name="unused")

        def call(self, x, training=False):
            for layer in (self.conv, self.norm, self.flat, self.block, self.head):
                x = layer(x, training=training) if layer is self.norm else layer(x)
                seen[layer.name] = tuple(x.shape)
            return x

    return Recording(name="recording"), seen


def called_model(K):
    model, seen = recording_model(K)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype("float32")
    model(x, training=True)  # moves the moving statistics once, before anything is measured
    return model, seen


def model_state(model):
    """Every variable's bytes, and how many call nodes each layer has."""
    values = [(v.name, np.array(v.numpy()).tobytes()) for v in model.weights]
    nodes = {layer.name: len(getattr(layer, "_inbound_nodes", []))
             for layer in model._flatten_layers(include_self=True)}
    return values, nodes


@pytest.fixture(params=GENERATIONS)
def K(request):
    return request.getfixturevalue(request.param)


def test_every_called_layer_shows_what_it_returned(K):
    model, seen = called_model(K)
    tree = hw.inspect(model)
    assert_tree_consistent(tree, model.count_params())
    shown = {node.name: node.output_shape for node in tree if node is not tree.root}
    assert shown == {
        "conv": seen["conv"], "norm": seen["norm"], "flat": seen["flat"],
        "inner_a": seen["inner_a"], "inner_b": seen["inner_b"], "head": seen["head"],
        "block": None,  # a custom layer without compute_output_shape: only a run could say
        "unused": None,  # never called
    }
    assert shown["conv"] == (3, 6, 6, 4) and shown["flat"] == (3, 144)
    assert tree.root.output_shape is None
    assert tree.find("conv").input_shape == (3, 8, 8, 1)


def test_shapes_agree_with_calling_each_layer(K, tf):
    """The second oracle: each layer called on an input of the shape it was built for."""
    model, _ = called_model(K)
    tree = hw.inspect(model)
    checked = 0
    for node in tree:
        if node.output_shape is None:
            continue
        x = tf.zeros(node.input_shape)
        assert tuple(node.obj(x).shape) == node.output_shape, node.path
        checked += 1
    assert checked == 6


def test_showing_shapes_changes_nothing_in_the_model(K):
    model, _ = called_model(K)
    before = model_state(model)
    moving = [np.array(model.norm.moving_mean), np.array(model.norm.moving_variance)]
    tree = hw.inspect(model)
    assert sum(node.output_shape is not None for node in tree) == 6
    assert "(3, 6, 6, 4)" in tree.summary()
    assert hw.LayerExplorer(model).visible_rows()
    assert model_state(model) == before
    assert np.array_equal(model.norm.moving_mean, moving[0])
    assert np.array_equal(model.norm.moving_variance, moving[1])
    assert not np.array_equal(moving[0], np.zeros_like(moving[0]))  # the call moved them
    assert not np.array_equal(moving[1], np.ones_like(moving[1]))
    for layer in (model.conv, model.block, model.block.inner_a):
        with pytest.raises((AttributeError, ValueError)):
            assert layer.output is None  # never: it was never called symbolically


def test_explorer_rows_show_the_shape_text(K):
    model, _ = called_model(K)
    tree = hw.inspect(model)
    rows = {node.name: node_row(node, 1, False, set())["output_shape"] for node in tree}
    assert rows == {"recording": "", "conv": "(3, 6, 6, 4)", "norm": "(3, 6, 6, 4)",
                    "flat": "(3, 144)", "block": "", "inner_a": "(3, 3)", "inner_b": "(3, 5)",
                    "head": "(3, 2)", "unused": ""}
    explorer_rows = {row["name"]: row["output_shape"] for row in hw.LayerExplorer(model).visible_rows()
                     if "output_shape" in row}
    assert explorer_rows["conv"] == "(3, 6, 6, 4)" and explorer_rows["block"] == ""
    assert re.search(r"\n  conv +Conv2D +\(3, 6, 6, 4\) ", tree.summary())
    assert re.search(r"\n  block +Block +\? ", tree.summary())


def test_uncalled_subclassed_model_shows_no_shapes(K):
    model, _ = recording_model(K)
    with pytest.raises(hw.UnbuiltModelError, match="Call it once"):
        hw.inspect(model)
    model.conv.build((None, 8, 8, 1))  # one layer built by hand, none called
    tree = hw.inspect(model)
    shown = {node.name: node.output_shape for node in tree}
    assert shown.pop("conv") == tuple(K.layers.Conv2D(4, 3).compute_output_shape((None, 8, 8, 1)))
    assert set(shown.values()) == {None}
    assert tree.summary()


def test_layer_with_several_outputs(K):
    class Split(K.layers.Layer):
        def call(self, x):
            return x[:, :2], x[:, 2:]

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 2), (input_shape[0], input_shape[1] - 2)

    class Holder(K.Model):
        def __init__(self):
            super().__init__(name="holder")
            self.dense = K.layers.Dense(5, name="dense")
            self.split = Split(name="split")

        def call(self, x):
            a, b = self.split(self.dense(x))
            self.seen = [tuple(a.shape), tuple(b.shape)]
            return a

    model = Holder()
    model(np.zeros((4, 3), "float32"))
    node = hw.inspect(model).find("split")
    assert node.output_shape == model.seen == [(4, 2), (4, 3)]
    assert format_shape(node.output_shape) == "[(4, 2), (4, 3)]"


def test_shape_code_that_fails_or_lies_shows_no_shape(K):
    class Raises(K.layers.Layer):
        def call(self, x):
            return x

        def compute_output_shape(self, input_shape):
            raise RuntimeError("broken shape code")

    class NotAShape(K.layers.Layer):
        def call(self, x):
            return x

        def compute_output_shape(self, input_shape):
            return "a string"

    class AsksTheDefault(K.layers.Layer):  # tf_keras' default would call the layer
        def call(self, x):
            return x * 2.0

        def compute_output_shape(self, input_shape):
            return super().compute_output_shape(input_shape)

    class Holder(K.Model):
        def __init__(self):
            super().__init__(name="holder")
            self.parts = [Raises(name="raises"), NotAShape(name="not_a_shape"),
                          AsksTheDefault(name="asks_default"), K.layers.Dense(2, name="dense")]

        def call(self, x):
            for part in self.parts:
                x = part(x)
            return x

    model = Holder()
    model(np.zeros((2, 3), "float32"))
    before = model_state(model)
    tree = hw.inspect(model)
    shown = {node.name: node.output_shape for node in tree}
    assert shown == {"holder": None, "raises": None, "not_a_shape": None, "asks_default": None,
                     "dense": (2, 2)}
    assert model_state(model) == before


def test_keras3_shape_code_cannot_assign_variables(keras):
    class Counts(keras.layers.Layer):
        def build(self, input_shape):
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False)

        def call(self, x):
            return x

        def compute_output_shape(self, input_shape):
            self.count.assign_add(1.0)  # a side effect the explorer must not let through
            return input_shape

    class Holder(keras.Model):
        def __init__(self):
            super().__init__(name="holder")
            self.counts = Counts(name="counts")

        def call(self, x):
            return self.counts(x)

    model = Holder()
    model(np.zeros((2, 3), "float32"))
    assert hw.inspect(model).find("counts").output_shape == (2, 3)
    assert float(model.counts.count.numpy()) == 0.0


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_sequential_and_functional_keep_their_symbolic_shapes(K, kind):
    if kind == "sequential":
        model = K.Sequential([K.Input((6,)), K.layers.Dense(4, name="a"),
                              K.layers.BatchNormalization(name="bn"),
                              K.layers.Dense(2, name="b")], name="seq")
    else:
        inputs = K.Input((6,))
        inner = K.Sequential([K.Input((6,)), K.layers.Dense(3, name="inner")], name="nested")
        side = K.layers.Dense(4, name="a")(inputs)
        merged = K.layers.Concatenate(name="cat")([inner(inputs), side])
        model = K.Model(inputs, K.layers.Dense(2, name="b")(merged), name="func")
    before = model_state(model)
    tree = hw.inspect(model)
    for node in tree:
        layer = node.obj
        output = layer.outputs[0] if node is tree.root else layer.output
        assert node.output_shape == tuple(output.shape), node.path
        assert None in node.output_shape  # the symbolic batch, not a built one
    assert model_state(model) == before


@pytest.mark.parametrize("stage", ["StagePNet", "StageRNet", "StageONet"])
def test_mtcnn_subclassed_networks_show_every_layer_shape(keras, tf, stage):
    """mtcnn's networks: Keras 3 subclassed models someone else wrote, built by their code."""
    stages = pytest.importorskip("mtcnn.stages")
    model = getattr(stages, stage)().model
    before = model_state(model)
    tree = hw.inspect(model)
    layers = [node for node in tree if node is not tree.root]
    assert [node.name for node in layers] == [layer.name for layer in model.layers]
    assert model_state(model) == before
    for node in layers:  # the oracle: the layer called on zeros of the shape it was built for
        assert node.output_shape is not None, node.path
        batch, *rest = node.input_shape  # PNet is fully convolutional: unknown height, width
        real = tuple(node.obj(tf.zeros((2, *(12 if d is None else d for d in rest)))).shape)
        assert len(node.output_shape) == len(real), node.path
        assert node.output_shape[0] == batch, node.path
        unknown = rest.count(None)
        assert [d for d in node.output_shape[1:] if d is None] == [None] * unknown, node.path
        assert all(d == r for d, r in zip(node.output_shape[1:], real[1:], strict=True)
                   if d is not None), node.path


def _holder_of(K, hub_layer):
    class WithHub(K.Model):
        def __init__(self):
            super().__init__(name="with_hub")
            self.hub = hub_layer
            self.head = K.layers.Dense(2, name="head")

        def call(self, x):
            return self.head(self.hub(x))

    model = WithHub()
    model(np.zeros((3, 4), "float32"))
    return model


@pytest.mark.parametrize("declared", [True, False])
def test_hub_keras_layer_in_a_subclassed_tf_keras_model(hub, hub_backbone, tf_keras, declared):
    kwargs = {"output_shape": [6]} if declared else {}
    model = _holder_of(tf_keras, hub.KerasLayer(hub_backbone, name="hub", **kwargs))
    before = model_state(model)
    tree = hw.inspect(model)
    assert tree.find("hub").output_shape == ((3, 6) if declared else None)
    assert tree.find("head").output_shape == (3, 2)
    assert model_state(model) == before  # the module was not traced into a node


@pytest.mark.parametrize("declared", [True, False])
def test_hub_layer_in_a_subclassed_keras3_model(hub_backbone, keras, declared):
    kwargs = {"output_shape": (6,)} if declared else {}
    model = _holder_of(keras, hw.HubLayer(hub_backbone, name="hub", **kwargs))
    before = model_state(model)
    tree = hw.inspect(model)
    assert tree.find("hub").output_shape == ((None, 6) if declared else None)  # never traced
    assert tree.find("head").output_shape == (3, 2)
    assert model_state(model) == before
