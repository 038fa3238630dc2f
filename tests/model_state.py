"""What the hostile-input tests check on a live model, and the models they attack it with.

``model_state(model)`` is everything a freeze or an edit could change: a case either leaves
it equal, or changes the model exactly as asked (with a real SGD step where training is the
point)."""

from __future__ import annotations

import numpy as np

import hubwidgets as hw

GENERATIONS = ["keras", "tf_keras"]


def layers_of(model):
    """Every layer of ``model`` (itself included), in Keras' own order."""
    return list(model._flatten_layers(include_self=True, recursive=True))


def model_state(model):
    """Everything a freeze or an edit could change: the trainable set, every value, every
    layer's flag, and the order of the weights (tf_keras saves by position)."""
    return {
        "trainable": sorted(w.path if hasattr(w, "path") else w.name
                            for w in model.trainable_weights),
        "order": [w.path if hasattr(w, "path") else w.name for w in model.weights],
        "values": [np.array(w.numpy()).tobytes() for w in model.weights],
        "layers": [(layer.name, layer.trainable) for layer in layers_of(model)],
    }


def sgd_step_changes(model, tf, in_dim, out_dim):
    """One real SGD step; the ids of the weights whose value changed."""
    x = tf.random.stateless_normal((8, in_dim), seed=(1, 2))
    y = tf.random.stateless_normal((8, out_dim), seed=(3, 4))
    before = {id(w): np.array(w.numpy()) for w in model.weights}
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    return {id(w) for w in model.weights if not np.array_equal(before[id(w)], w.numpy())}


def trainable_weight_ids(model):
    return {id(w) for w in model.trainable_weights}


def moving_statistic_ids(model):
    return {id(w) for w in model.weights if "moving" in w.name}


def chain_model(K, tf, names, width):
    """A built subclassed model "m" calling Dense(width) layers with these names in turn."""

    class Chain(K.Model):
        def __init__(self):
            super().__init__(name="m")
            self.h = [K.layers.Dense(width, name=name) for name in names]

        def call(self, x):
            for layer in self.h:
                x = layer(x)
            return x

    model = Chain()
    model(tf.zeros((1, width)))
    return model


def repeated_names_model(K, tf):
    """A subclassed model whose three sublayers share one explicit name."""
    model = chain_model(K, tf, ["hidden"] * 3, 4)
    for i, layer in enumerate(model.h):  # values that tell the three layers apart
        layer.kernel.assign(tf.fill((4, 4), float(i + 1)) + tf.random.stateless_normal(
            (4, 4), seed=(i, 7)) * 0.1)
        layer.bias.assign(tf.fill((4,), -float(i + 1)))
    return model


def undo_freezes(model, how):
    """Undo every freeze of ``model`` the way a user would (``how``, one of UNDO_FREEZES)."""
    if how == "hw.unfreeze(model)":
        hw.unfreeze(model)
    elif how == "set_trainable(root, True)":
        hw.set_trainable(model, hw.inspect(model).root.path, True)
    elif how == "set_trainable(layer, True)":
        for node in hw.inspect(model).root.children:
            hw.set_trainable(model, node.path, True)
    elif how == "explorer unfreeze_all":
        explorer = hw.LayerExplorer(model)
        explorer.handle_action({"action": "unfreeze_all"})
        assert explorer.message == "" and "trainable = True" in explorer.code
    elif how == "explorer row toggle":
        explorer = hw.LayerExplorer(model)
        for node in hw.inspect(model).root.children:
            explorer.handle_action({"action": "set_trainable", "path": node.path, "value": True})
            assert explorer.message == ""
    else:  # pragma: no cover
        raise AssertionError(how)


UNDO_FREEZES = ["hw.unfreeze(model)", "set_trainable(root, True)", "set_trainable(layer, True)",
                "explorer unfreeze_all", "explorer row toggle"]
