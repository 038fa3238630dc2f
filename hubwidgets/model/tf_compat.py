"""The one place hubwidgets reaches into TensorFlow's private modules (``tensorflow.python``)
or executes a raw op.  Each use has a public-API fallback, taken when the private one is
missing (a TensorFlow upgrade moved it) or fails, and always when ``HUBWIDGETS_TF_PRIVATE=0``
(the tests run every fallback that way): an upgrade can make hubwidgets slower, never
wrong or broken.

- :func:`read_variable`: ``ReadVariableOp`` by its generated wrapper (half the cost of
  ``value()`` at hundreds of variables); fallback ``tf.convert_to_tensor(variable)``.
- :func:`read_variables`: TensorFlow's ``_ReadVariablesOp`` (N reads in one op, ~2 us a
  variable instead of ~12) by the eager executor; fallback: None, the caller reads one by one.
- :func:`trackable_base`: the class every TensorFlow checkpointable object derives from;
  fallback: an object with ``_trackable_children`` (what every trackable implements).
- :func:`autotrackable_class`: what ``hub.load()`` returns derives from it; fallback
  ``tf.Module``.
"""

from __future__ import annotations

import os
from typing import Any

PRIVATE_SWITCH = "HUBWIDGETS_TF_PRIVATE"
use_private = os.environ.get(PRIVATE_SWITCH, "1") != "0"
"""False: every function here takes its public fallback (set by the environment variable
``HUBWIDGETS_TF_PRIVATE=0``; tests flip it)."""

_BATCHED_READ_MISSING = [False]  # True once this TensorFlow has no _ReadVariablesOp


def read_variable(handle: Any, dtype: Any, variable: Any) -> Any:
    """The current value of a resource variable as a tensor (a copy-on-write read: the
    buffer is shared until the variable is written)."""
    if use_private:
        try:
            from tensorflow.python.ops.gen_resource_variable_ops import read_variable_op

            return read_variable_op(handle, dtype)
        except ImportError:  # pragma: no cover - a TensorFlow that moved it
            pass
    import tensorflow as tf

    return tf.convert_to_tensor(variable)  # a ReadVariableOp too (Keras 3 variables as well)


def read_variables(handles: list[Any], attrs: tuple[Any, ...]) -> list[Any] | None:
    """The values of many variables on one device by one ``_ReadVariablesOp``; None when it
    cannot run here (the caller then reads them one by one, with each read's own error)."""
    if not use_private or _BATCHED_READ_MISSING[0]:
        return None
    try:
        from tensorflow.python.eager import context, execute

        return execute.execute(b"_ReadVariablesOp", len(handles), handles, attrs,
                               context.context())
    except Exception as error:  # noqa: BLE001 - any failure: the per-variable reads decide
        if isinstance(error, ImportError) or type(error).__name__ == "NotFoundError":
            _BATCHED_READ_MISSING[0] = True
        return None


def is_trackable(obj: Any) -> bool:
    """Whether ``obj`` is a TensorFlow trackable (a checkpointable object)."""
    base = trackable_base() if use_private else None
    if base is not None:
        return isinstance(obj, base)
    return callable(getattr(type(obj), "_trackable_children", None))


def trackable_base() -> type | None:
    """TensorFlow's ``Trackable`` class, or None where it cannot be imported."""
    try:
        from tensorflow.python.trackable.base import Trackable
    except ImportError:  # pragma: no cover - a TensorFlow that moved it
        return None
    return Trackable


def autotrackable_class() -> type:
    """The class of what ``tf.saved_model.load`` / ``hub.load`` return (``tf.Module`` where
    it cannot be imported)."""
    if use_private:
        try:
            from tensorflow.python.trackable.autotrackable import AutoTrackable

            return AutoTrackable
        except ImportError:  # pragma: no cover - a TensorFlow that moved it
            pass
    import tensorflow as tf

    return tf.Module
