"""Helpers every adapter shares: identity of variables and building ``VariableInfo`` s."""

from __future__ import annotations

import functools
import sys
from typing import Any, Iterable

from ..formatting import dtype_name, shape_size, shape_tuple
from ..tree import ModelTree, VariableInfo


def keras3_module() -> Any | None:
    """The Keras 3 package if it is already imported (never imports it)."""
    keras = sys.modules.get("keras")
    return keras if keras is not None and hasattr(keras, "Variable") else None


def tf_keras_module() -> Any | None:
    """The tf_keras package if it is already imported (never imports it)."""
    return sys.modules.get("tf_keras")


_KERAS3_VARIABLE: list[type] = []  # the class, once Keras 3 is imported


def keras3_variable_class() -> type | None:
    """``keras.Variable`` once Keras 3 is imported (looked up once), else None."""
    if not _KERAS3_VARIABLE:
        keras = keras3_module()
        if keras is None:
            return None
        _KERAS3_VARIABLE.append(keras.Variable)
    return _KERAS3_VARIABLE[0]


def is_keras3_variable(v: Any) -> bool:
    cls = keras3_variable_class()
    return cls is not None and isinstance(v, cls)


def backing_variable(v: Any) -> Any:
    """The ``tf.Variable`` behind a Keras 3 variable, or ``v`` itself.  (Runs for every
    variable of every walk: the class is read from its cache without a call.)"""
    cls = _KERAS3_VARIABLE[0] if _KERAS3_VARIABLE else keras3_variable_class()
    if cls is not None and isinstance(v, cls):
        inner = getattr(v, "_value", None)
        return inner if inner is not None else v
    return v


def variable_key(v: Any) -> int:
    """One identity for a variable however it is reached (Keras 3 wrapper or tf.Variable)."""
    return id(backing_variable(v))


def short_name(v: Any) -> str:
    """``kernel`` from ``dense/kernel:0`` (tf) or a Keras 3 variable's name."""
    name = str(getattr(v, "name", "variable"))
    name = name.rsplit(":", 1)[0] if ":" in name else name
    return name.rsplit("/", 1)[-1] or "variable"


def full_name(v: Any) -> str:
    """The variable's scoped name without ``:0`` (``model/dense/kernel``)."""
    name = str(getattr(v, "path", None) or getattr(v, "name", "variable"))
    return name.rsplit(":", 1)[0] if ":" in name else name


@functools.lru_cache(maxsize=None)
def itemsize(dtype: str) -> int:
    import tensorflow as tf

    try:
        return int(tf.as_dtype(dtype).size)
    except (TypeError, ValueError):
        return 0


def is_sync_on_read(v: Any) -> bool:
    """A distributed variable whose replicas each keep their own value and which reads as
    their aggregate (``synchronization=ON_READ``: tf_keras BatchNormalization's moving
    statistics and metrics under ``MirroredStrategy``).  Its replicas differing is expected,
    and its value is the aggregate, not any one replica's."""
    sync = getattr(backing_variable(v), "synchronization", None)
    return getattr(sync, "name", "") == "ON_READ"


def _device_copies(inner: Any) -> list[Any]:
    """The per-device copies of a distributed variable (its ``values``), else ``[inner]``."""
    values = getattr(inner, "values", None)
    if isinstance(values, tuple) and len(values) > 1 and all(hasattr(c, "device") for c in values):
        return list(values)
    return [inner]


def replica_components(v: Any) -> list[Any]:
    """What to read or write one by one: the per-device copies of a mirrored variable, else
    ``[v]``.  A sync-on-read variable is one component: its value is its replicas'
    aggregate, read and assigned whole (TensorFlow spreads an assignment over the replicas)."""
    inner = backing_variable(v)
    return [inner] if is_sync_on_read(inner) else _device_copies(inner)


def variable_device(v: Any) -> str:
    """Where the variable lives; every replica's device, comma-separated, when distributed."""
    try:
        return ", ".join(str(c.device or "") for c in _device_copies(backing_variable(v)))
    except (AttributeError, ValueError, RuntimeError):
        return ""


NOT_INITIALISED = ("the variable is not initialised (created but never given a value); build "
                   "or call the model once, or restore its checkpoint, then ask again")


def is_initialised(v: Any) -> bool:
    """Whether the variable holds a value.  An uninitialised resource variable (what
    ``tf.saved_model.load`` or a checkpoint restore creates before assigning) reads as an
    empty tensor in eager mode, so it must be asked; a Keras 3 variable created under a
    ``StatelessScope`` has no backing variable yet."""
    inner = backing_variable(v)
    if is_keras3_variable(inner):  # no tf.Variable behind it yet
        return getattr(inner, "_value", None) is not None
    check = getattr(inner, "is_initialized", None)
    if check is None:
        return True
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a variable that cannot say: its read will tell
        return True


def variable_shape(v: Any) -> tuple[int | None, ...]:
    """The declared shape when fully known; else the shape of the value the variable holds
    now (a variable created with ``shape=None`` or ``[None, 3]`` still holds a value of one
    definite shape); the declared shape, ``None`` for unknown sizes (``()`` for an unknown
    rank), when it holds no value."""
    declared = getattr(v, "shape", None)
    shape = shape_tuple(declared)
    if None not in shape and getattr(declared, "rank", 0) is not None:
        return shape
    if not is_initialised(v):
        return shape
    try:
        return tuple(int(d) for d in backing_variable(v).value().shape)
    except Exception:  # noqa: BLE001 - unreadable: the declared shape is all there is
        return shape


def string_bytes(v: Any) -> int:
    """The bytes of a string variable's strings (TensorFlow gives strings no fixed size, so
    ``size * itemsize`` would say 0); 0 when it cannot be read (uninitialised)."""
    try:
        value = backing_variable(v).numpy() if is_initialised(v) else None
    except Exception:  # noqa: BLE001 - unreadable: nothing to count
        return 0
    if value is None:
        return 0
    import numpy as np

    return int(sum(len(s) for s in np.asarray(value, dtype=object).reshape(-1)))


def make_variable_info(v: Any, node_path: str, name: str, tree: ModelTree,
                       can_train: bool) -> VariableInfo:
    """Describe one live variable placed under ``node_path``."""
    shape = variable_shape(v)
    dtype = dtype_name(getattr(v, "dtype", "unknown"))
    size = shape_size(shape)
    return VariableInfo(
        name=name,
        path=f"{node_path}/{name}" if node_path else name,
        shape=shape,
        dtype=dtype,
        device=variable_device(v),
        nbytes=string_bytes(v) if dtype == "string" else size * itemsize(dtype),
        can_train=can_train,
        variable=v,
        key=variable_key(v),
        _tree=tree,
    )


def unique_names(names: Iterable[str]) -> list[str]:
    """Make names unique among siblings by appending ``_1``, ``_2``..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            candidate = f"{name}_{seen[name]}"
            while candidate in seen:
                seen[name] += 1
                candidate = f"{name}_{seen[name]}"
            seen[candidate] = 0
            out.append(candidate)
        else:
            seen[name] = 0
            out.append(name)
    return out
