"""Walk an object (or load a path and walk what it holds) into a new :class:`ModelTree`,
through the adapter registered for its kind."""

from __future__ import annotations

import os
from typing import Any

from .adapters.paths import load_path
from .adapters.registry import adapter_for
from .errors import NotAModelError
from .tree import ModelTree

SUPPORTED = ("a Keras 3 or tf_keras model or layer, a hub.KerasLayer, keras.layers.TFSMLayer, "
             "what hub.load() or tf.saved_model.load() returned, a tf.Module, or a path "
             "(SavedModel directory, .keras or .h5 file, TF Hub handle)")


def build_tree(obj: Any) -> ModelTree:
    """Walk ``obj`` (or load the path and walk what it holds) into a new tree."""
    import tensorflow  # noqa: F401 - first use: the backend needs TensorFlow loaded

    framework = source = None
    if isinstance(obj, (str, os.PathLike)):
        obj, framework, source = load_path(obj)
    adapter = adapter_for(obj)
    if adapter is None:
        raise NotAModelError(_not_a_model_message(obj))
    return adapter.inspect(obj, framework, source)


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
