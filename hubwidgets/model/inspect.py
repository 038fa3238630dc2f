"""``hubwidgets.inspect``: any TensorFlow model (or a path to one) as a :class:`ModelTree`."""

from __future__ import annotations

import os
from typing import Any

from .errors import NotAModelError
from .tree import ModelTree

SUPPORTED = ("a Keras 3 or tf_keras model or layer, a hub.KerasLayer, keras.layers.TFSMLayer, "
             "what hub.load() or tf.saved_model.load() returned, a tf.Module, or a path "
             "(SavedModel directory, .keras or .h5 file, TF Hub handle)")


def inspect(obj: Any) -> ModelTree:
    """Describe ``obj`` as a tree of layers and variables with parameter counts.

    ``obj`` may be {supported}.  Nothing about the model is changed.
    """
    if isinstance(obj, ModelTree):
        return obj.refresh()
    if isinstance(obj, (str, os.PathLike)):
        from .adapters.paths import load_path

        loaded, framework, source = load_path(obj)
        return _inspect_object(loaded, framework, source)
    return _inspect_object(obj, None, None)


inspect.__doc__ = (inspect.__doc__ or "").format(supported=SUPPORTED)


def _inspect_object(obj: Any, framework: str | None, source: str | None) -> ModelTree:
    import tensorflow as tf  # first use: the only place the backend needs TensorFlow loaded

    from .adapters.keras import build_keras_tree, keras_generation

    generation = keras_generation(obj)
    if generation is not None:
        label = "TF Hub KerasLayer (tf_keras)" if type(obj).__name__ == "KerasLayer" else generation
        tree = ModelTree(obj, framework=label, source=source)
        tree.root = build_keras_tree(obj, tree)
        return tree.refresh()
    from tensorflow.python.trackable.autotrackable import AutoTrackable

    if isinstance(obj, (tf.Module, AutoTrackable)):
        return _inspect_trackable(obj, framework, source)
    raise NotAModelError(_not_a_model_message(obj))


def _inspect_trackable(obj: Any, framework: str | None, source: str | None) -> ModelTree:
    import tensorflow as tf

    from .adapters.common import variable_key
    from .adapters.keras import KerasBuilder, keras_generation
    from .adapters.trackable import TrackableWalker, _common_scope, _is_restored

    restored = _is_restored(obj)
    label = framework or ("SavedModel" if restored else "tf.Module")
    tree = ModelTree(obj, framework=label, source=source)

    def keras_child(layer: Any, path: str, name: str):
        return KerasBuilder(tree, layer, keras_generation(layer) or "").node(layer, path, name)

    walker = TrackableWalker(tree, saved_model_dir=source, keras_child=keras_child)
    variables = list(getattr(obj, "variables", []) or [])
    if isinstance(obj, tf.Module) and not restored:
        name = obj.name
    else:
        scope = _common_scope(variables)
        name = (scope.split("/")[0] if scope else "") or \
            (os.path.basename(os.path.normpath(source)) if source else "module")
    tree.root = walker.build(obj, name, name)
    if restored or not variables:
        tree._trainable_keys_fn = lambda: {v.key for v in tree.variables() if v.can_train}
    else:
        tree._trainable_keys_fn = lambda: {variable_key(v) for v in obj.trainable_variables}
    return tree.refresh()


def _not_a_model_message(obj: Any) -> str:
    kind = type(obj).__name__
    hint = ""
    if isinstance(obj, (list, tuple)):
        hint = (" For a list of variables use hubwidgets.weight_stats(variables); to see where "
                "they live, inspect the model that owns them.")
    elif hasattr(obj, "numpy") or hasattr(obj, "__array__"):
        hint = " A tensor or array has no layers; pass the model it came from."
    return (f"hubwidgets.inspect cannot look inside a {kind}: it is not a TensorFlow model. "
            f"Pass {SUPPORTED}.{hint}")
