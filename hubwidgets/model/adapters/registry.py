"""Which adapter describes an object: a table keyed by class, looked up along the MRO.

Keys are ``module.QualifiedName`` strings, so registering Keras or tf_keras support imports
neither (as treescope's handler registry does); a subclass finds its nearest registered base.
To support a new kind of object, write an adapter with ``inspect(obj, framework, source)``
returning a :class:`~hubwidgets.model.tree.ModelTree` and :func:`register` it here.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..tree import ModelTree, Node
from .keras import KERAS3, TF_KERAS, KerasAdapter, keras_generation
from .trackable import TrackableAdapter

# keras_generation is defined next to the Keras adapter (which needs it and which this module
# imports) and is reached from here, the adapters' entry point
__all__ = ["Adapter", "register", "adapter_for", "keras_generation"]


class Adapter(Protocol):
    """Turns one kind of object into a :class:`ModelTree` whose ``adapter`` reads the live
    trainable state and structure fingerprint back from the object."""

    def inspect(self, obj: Any, framework: str | None = None, source: str | None = None
                ) -> ModelTree:
        """The tree of ``obj``."""


def _keras_child(tree: ModelTree, obj: Any, path: str, name: str) -> Node | None:
    adapter = adapter_for(obj)
    return adapter.child_node(tree, obj, path, name) if isinstance(adapter, KerasAdapter) \
        else None


_ADAPTERS: dict[str, Adapter] = {
    "keras.src.layers.layer.Layer": KerasAdapter(KERAS3),
    "tf_keras.src.engine.base_layer.Layer": KerasAdapter(TF_KERAS),
    "tensorflow.python.module.module.Module": TrackableAdapter(_keras_child),
    "tensorflow.python.trackable.autotrackable.AutoTrackable": TrackableAdapter(_keras_child),
}


def register(class_path: str, adapter: Adapter) -> None:
    """Describe instances of the class at ``class_path`` (``"package.module.Class"``), and of
    its subclasses, with ``adapter``."""
    _ADAPTERS[class_path] = adapter


def adapter_for(obj: Any) -> Adapter | None:
    """The adapter registered for the nearest class of ``obj`` along its MRO, or None."""
    for cls in type(obj).__mro__:
        adapter = _ADAPTERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if adapter is not None:
            return adapter
    return None

