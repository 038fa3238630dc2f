"""``hubwidgets.snapshot``: a host copy of every variable of a model, keyed by variable path.

A :class:`Snapshot` is what :func:`hubwidgets.diff` compares, what ``watch`` keeps of the
start of ``fit``, and what an undo restores.  It holds plain numpy arrays (``values``), the
trainable flag of each variable when the snapshot was taken, and the class of the layer or
module that owns it (so an audit can say "BatchNormalization moving statistics").

Files: one ``.npz`` (numpy's zip of ``.npy`` arrays).  Why this and not a checkpoint or
``.weights.h5``: it reads back with numpy alone (no TensorFlow, no h5py, no model to load
into), keeps every dtype and shape exactly, is written without pickle and read with
``allow_pickle=False`` (a file from elsewhere cannot run code), and each array can be read
on its own.  Paths are kept in a JSON entry beside the arrays, so any character a variable
path holds survives.
"""

from __future__ import annotations

import json
import os
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .errors import HubWidgetsError

_FORMAT = "hubwidgets.snapshot/1"
_META_KEY = "__hubwidgets_meta__"


@dataclass(eq=False)
class Snapshot:
    """The values of a model's variables at one moment, in host memory.

    Attributes:
        values: variable path (``VariableInfo.path``) -> a numpy copy of its value.
        trainable: variable path -> whether training would update it when the snapshot was taken.
        owners: variable path -> class name of the layer or module that holds it.
        framework: what kind of model it came from ("Keras 3", "tf_keras", "SavedModel", ...).
        root: the model's root name (the first component of every path).
        can_train: variable path -> whether it is a weight an optimizer could ever train
            (False for BatchNormalization moving statistics, counters, seeds).
        hub_layers: variable path -> path of the hub.KerasLayer / HubLayer holding it, for
            variables inside a TF Hub module.
    """

    values: dict[str, np.ndarray]
    trainable: dict[str, bool] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    framework: str = ""
    root: str = ""
    can_train: dict[str, bool] = field(default_factory=dict)
    hub_layers: dict[str, str] = field(default_factory=dict)

    # -- mapping-like reading ----------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        """Variable paths in model order."""
        return list(self.values)

    @property
    def nbytes(self) -> int:
        """Host bytes held by the copied values."""
        return int(sum(v.nbytes for v in self.values.values()))

    def __getitem__(self, path: str) -> np.ndarray:
        return self.values[path]

    def subset(self, paths: Any) -> "Snapshot":
        """The same snapshot, holding only the variables at ``paths`` (no copy of values)."""
        wanted = set(paths)
        keep = [p for p in self.values if p in wanted]

        def pick(table: dict[str, Any]) -> dict[str, Any]:
            return {p: table[p] for p in keep if p in table}

        return dataclasses.replace(self, values=pick(self.values), trainable=pick(self.trainable),
                                   owners=pick(self.owners), can_train=pick(self.can_train),
                                   hub_layers=pick(self.hub_layers))

    def __contains__(self, path: object) -> bool:
        return path in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return (f"Snapshot(root={self.root!r}, framework={self.framework!r}, "
                f"variables={len(self.values)}, nbytes={self.nbytes})")

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], compress: bool = False) -> str:
        """Write the snapshot to one ``.npz`` file (the suffix is added when missing).

        ``compress=True`` deflates the arrays (smaller, slower).  Returns the path written.
        """
        target = os.fspath(path)
        if not target.endswith(".npz"):
            target += ".npz"
        arrays: dict[str, np.ndarray] = {}
        dtypes: list[str] = []
        for i, value in enumerate(self.values.values()):
            stored, dtype = _storable(value)
            arrays[f"v{i}"] = stored
            dtypes.append(dtype)
        meta = {"format": _FORMAT, "paths": list(self.values), "dtypes": dtypes,
                "trainable": self.trainable, "owners": self.owners,
                "framework": self.framework, "root": self.root, "can_train": self.can_train,
                "hub_layers": self.hub_layers}
        arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        (np.savez_compressed if compress else np.savez)(target, **arrays)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Snapshot":
        """Read a snapshot written by :meth:`save` (numpy only; no pickle is ever loaded)."""
        source = os.fspath(path)
        if not os.path.isfile(source) and os.path.isfile(source + ".npz"):
            source += ".npz"
        try:
            with np.load(source, allow_pickle=False) as data:
                if _META_KEY not in data.files:
                    raise HubWidgetsError(
                        f"{source!r} is an .npz file but not a hubwidgets snapshot (no "
                        f"{_META_KEY!r} entry). Write snapshots with hubwidgets.snapshot(model)"
                        ".save(path).")
                meta = json.loads(bytes(data[_META_KEY]).decode())
                values = {p: _restored(data[f"v{i}"], meta["dtypes"][i])
                          for i, p in enumerate(meta["paths"])}
        except (OSError, ValueError, KeyError) as exc:
            raise HubWidgetsError(
                f"Could not read the snapshot {source!r}: {type(exc).__name__}: {exc}. "
                "Pass a file written by Snapshot.save(path).") from exc
        return cls(values=values, trainable=dict(meta.get("trainable", {})),
                   owners=dict(meta.get("owners", {})), framework=meta.get("framework", ""),
                   root=meta.get("root", ""), can_train=dict(meta.get("can_train", {})),
                   hub_layers=dict(meta.get("hub_layers", {})))

    # -- writing back --------------------------------------------------------------------------
    def restore(self, model: Any, paths: list[str] | None = None) -> list[str]:
        """Assign the snapshot's values back to the live ``model`` (all, or only ``paths``).

        Every variable is checked (present, same shape and dtype) before any is written, so a
        mismatch changes nothing.  Returns the paths written.
        """
        from .inspect import inspect

        tree = inspect(model)
        live = {v.path: v for v in tree.variables()}
        wanted = list(self.values) if paths is None else list(paths)
        problems = []
        for p in wanted:
            if p not in self.values:
                problems.append(f"{p!r} is not in the snapshot")
            elif p not in live:
                problems.append(f"{p!r} is not a variable of the model")
            elif tuple(live[p].shape) != tuple(self.values[p].shape):
                problems.append(f"{p!r} has shape {tuple(live[p].shape)} in the model but "
                                f"{tuple(self.values[p].shape)} in the snapshot")
        if problems:
            raise HubWidgetsError("Nothing was restored: " + "; ".join(problems[:5]) +
                                  ". Restore into the model the snapshot was taken from.")
        for p in wanted:
            live[p].variable.assign(self.values[p])
        return wanted


def snapshot(model: Any) -> Snapshot:
    """Copy every variable of ``model`` to host memory, keyed by ``VariableInfo.path``.

    ``model`` is anything :func:`hubwidgets.inspect` accepts (a Keras 3 or tf_keras model,
    a hub.KerasLayer or HubLayer, what hub.load() returned, a tf.Module, or a path).  A
    mirrored variable is read from its first replica.  Optimizer state kept in a SavedModel
    (slots, iteration count) is not part of the model and is left out.  The model is not
    changed.
    """
    from .inspect import inspect

    tree = inspect(model)
    snap = Snapshot(values={}, framework=tree.framework, root=tree.root.name)
    stack = [(tree.root, "")]
    while stack:
        node, hub_path = stack.pop()
        if not node.counted:  # a SavedModel's optimizer and metric state, not the model
            continue
        if node.module_wrapper:  # hub.KerasLayer, HubLayer, TFSMLayer
            hub_path = node.path
        for var in node.variables:
            if var.path in snap.values:
                continue
            value = snap.values[var.path] = host_copy(var.variable)
            if value.size != var.size and var.size:
                from .adapters.common import NOT_INITIALISED, is_initialised

                if not is_initialised(var.variable):  # reads as empty: no copy to keep
                    raise HubWidgetsError(f"Cannot snapshot {var.path!r}: {NOT_INITIALISED}.")
            snap.trainable[var.path] = bool(var.trainable)
            snap.can_train[var.path] = bool(var.can_train)
            snap.owners[var.path] = node.class_name
            if hub_path:
                snap.hub_layers[var.path] = hub_path
        stack.extend((child, hub_path) for child in reversed(node.children))
    return snap




def host_copy(variable: Any) -> np.ndarray:
    """A numpy array that owns a copy of ``variable``'s value (never a view of its buffer)."""
    value = np.asarray(variable.numpy())
    if value.dtype == object:  # tf.string: bytes, kept as fixed-width bytes (no pickle)
        return np.array(value.tolist(), dtype=np.bytes_)
    if value.base is not None or not value.flags.owndata or not value.flags.writeable:
        value = value.copy()
    return value


def _storable(value: np.ndarray) -> tuple[np.ndarray, str]:
    """The array as .npy can hold it without pickle, and the dtype to read it back as."""
    name = value.dtype.name
    if value.dtype.kind == "V" or name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        # ml_dtypes (bfloat16, float8): stored as raw unsigned ints of the same width
        return value.view(f"u{value.dtype.itemsize}"), name
    return value, name


def _restored(stored: np.ndarray, dtype: str) -> np.ndarray:
    if stored.dtype.name == dtype:
        return stored
    import ml_dtypes  # installed with TensorFlow

    return stored.view(getattr(ml_dtypes, dtype))
