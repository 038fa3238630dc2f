"""``hubwidgets.snapshot``: a host copy of every variable of a model, keyed by variable path.

A :class:`Snapshot` is what :func:`hubwidgets.diff` compares, what ``watch`` keeps of the
start of ``fit``, and what an undo restores.  It holds plain numpy arrays (``values``), the
trainable flag of each variable when the snapshot was taken, and the class of the layer or
module that owns it (so an audit can say "BatchNormalization moving statistics").

A snapshot lives in host memory, or in a file (``snapshot(model, path)``, written one
variable at a time and read back on demand): the file format is in
:mod:`hubwidgets.model.snapshot_file`.  ``restore`` (``hubwidgets.restore`` and
``Snapshot.restore``, one operation) writes a snapshot back as one undo step, on top of
:mod:`hubwidgets.model.edits`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .errors import EditError, HubWidgetsError
from .snapshot_file import TABLES, SnapshotFile, write_file

class LazyValues(Mapping):
    """variable path -> value, each read only when asked for (from a snapshot file, or from
    the live variable), so that a whole model's values are never in host memory at once."""

    def __init__(self, paths: list[str], read: Callable[[str], np.ndarray],
                 specs: dict[str, tuple[tuple[int, ...], str, int]],
                 read_only: Callable[[str], Any] | None = None) -> None:
        self._paths = list(paths)
        self._known = set(self._paths)
        self._read = read
        self._read_only = read_only or read
        self._specs = specs  # path -> (shape, dtype name, bytes)

    def for_reading(self, path: str) -> Any:
        """The value of ``path`` for reading only: a view of a live variable's buffer (no
        copy), or a file's value read piece by piece; what ``diff`` and writing a file use,
        so a 1 GB variable is never copied."""
        if path not in self._known:
            raise KeyError(path)
        return self._read_only(path)

    def __getitem__(self, path: str) -> np.ndarray:
        if path not in self._known:
            raise KeyError(path)
        return self._read(path)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._known

    def nbytes_of(self, path: str) -> int:
        """Bytes of one value, without reading it."""
        return int(self._specs[path][2])

    def spec(self, path: str) -> tuple[tuple[int, ...], str]:
        """Shape and dtype name of one value, without reading it."""
        shape, dtype, _ = self._specs[path]
        return tuple(shape), dtype

    def only(self, paths: list[str]) -> "LazyValues":
        """The same reader, for ``paths`` only."""
        wanted = set(paths)
        return LazyValues([p for p in self._paths if p in wanted], self._read, self._specs,
                          self._read_only)


@dataclass(eq=False)
class Snapshot:
    """The values of a model's variables at one moment.

    Attributes:
        values: variable path (``VariableInfo.path``) -> a numpy copy of its value.  For a
            snapshot written to a file (``hw.snapshot(model, path)``, :meth:`open`) a
            read-on-demand mapping: each value is read from the file when asked for.
        trainable: variable path -> whether training would update it when the snapshot was taken.
        owners: variable path -> class name of the layer or module that holds it.
        framework: what kind of model it came from ("Keras 3", "tf_keras", "SavedModel", ...).
        root: the model's root name (the first component of every path).
        can_train: variable path -> whether it is a weight an optimizer could ever train
            (False for BatchNormalization moving statistics, counters, seeds).
        hub_layers: variable path -> path of the hub.KerasLayer / HubLayer holding it, for
            variables inside a TF Hub module.
        source: the file a read-on-demand snapshot reads from ("" for one in memory).
    """

    values: Mapping[str, np.ndarray]
    trainable: dict[str, bool] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    framework: str = ""
    root: str = ""
    can_train: dict[str, bool] = field(default_factory=dict)
    hub_layers: dict[str, str] = field(default_factory=dict)
    source: str = ""

    # -- mapping-like reading ----------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        """Variable paths in model order."""
        return list(self.values)

    @property
    def nbytes(self) -> int:
        """Host bytes of the values (for a snapshot read on demand: what reading all of them
        would take)."""
        if isinstance(self.values, LazyValues):
            return int(sum(self.values.nbytes_of(p) for p in self.values))
        return int(sum(v.nbytes for v in self.values.values()))

    def __getitem__(self, path: str) -> np.ndarray:
        return self.values[path]

    def subset(self, paths: Any) -> "Snapshot":
        """The same snapshot, holding only the variables at ``paths`` (no copy of values)."""
        wanted = set(paths)
        keep = [p for p in self.values if p in wanted]

        def pick(table: Mapping[str, Any]) -> dict[str, Any]:
            return {p: table[p] for p in keep if p in table}

        values = (self.values.only(keep) if isinstance(self.values, LazyValues)
                  else pick(self.values))
        return dataclasses.replace(self, values=values, **{t: pick(getattr(self, t))
                                                           for t in TABLES})

    def __contains__(self, path: object) -> bool:
        return path in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        where = f", file={self.source!r}" if self.source else ""
        return (f"Snapshot(root={self.root!r}, framework={self.framework!r}, "
                f"variables={len(self.values)}, nbytes={self.nbytes}{where})")

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], compress: bool = False) -> str:
        """Write the snapshot to one ``.npz`` file (the suffix is added when missing).

        ``compress=True`` deflates the arrays (smaller, slower).  Returns the path written.
        The values are written one at a time (a snapshot read on demand is never all in
        memory).
        """
        return write_file(path, compress, self._meta(), self.values.items())

    def _meta(self) -> dict[str, Any]:
        return {"trainable": self.trainable, "owners": self.owners,
                "framework": self.framework, "root": self.root, "can_train": self.can_train,
                "hub_layers": self.hub_layers}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Snapshot":
        """Read a snapshot written by :meth:`save` into memory (numpy only; no pickle is ever
        loaded).  Every entry is checked; a damaged or hand-edited file raises a
        :class:`HubWidgetsError` that says what is wrong.  A file too large for the host
        memory is refused (:class:`InsufficientMemoryError`): :meth:`open` it instead."""
        lazy = cls.open(path)
        from .memory_guard import ensure_fits

        ensure_fits(lazy.nbytes, f"reading the snapshot {lazy.source!r} into memory",
                    f"read it on demand: hubwidgets.Snapshot.open({lazy.source!r}), or "
                    f"compare it directly: hubwidgets.diff({lazy.source!r}, model)")
        values = {p: lazy.values[p] for p in lazy.values}
        return dataclasses.replace(lazy, values=values, source="")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Snapshot":
        """A snapshot file, checked entry by entry (names, dtypes, shapes), whose values are
        read one at a time when asked for (``diff`` and ``restore`` read it so: never all
        values in memory at once)."""
        source = os.fspath(path)
        if not os.path.isfile(source) and os.path.isfile(source + ".npz"):
            source += ".npz"
        reader = SnapshotFile(source)
        meta = reader.meta
        return cls(values=LazyValues(reader.paths, reader.read, reader.specs,
                                     reader.read_in_pieces),
                   framework=meta["framework"], root=meta["root"], source=source,
                   **{t: meta[t] for t in TABLES})

    # -- writing back --------------------------------------------------------------------------
    def restore(self, model: Any, paths: list[str] | None = None) -> list[str]:
        """Assign the snapshot's values back to the live ``model`` (all, or only ``paths``).

        The same as ``hubwidgets.restore(model, snapshot)``: every variable is checked
        (present, same shape and dtype, never cast) before any is written, so a mismatch
        changes nothing; the restore is one undo step and every open view of the model
        follows.  Returns the paths written.
        """
        chosen = self
        if paths is not None:
            wanted = list(paths)
            missing = [p for p in wanted if p not in self.values]
            if missing:
                raise EditError("Nothing was restored: " + "; ".join(
                    f"{p!r} is not in the snapshot" for p in missing[:5]) + ".")
            chosen = self.subset(wanted)
        restore(model, chosen)
        return list(chosen.values)


def restore(model: Any, snapshot: Any) -> Any:
    """Put every variable of a :class:`hubwidgets.Snapshot` (or of a snapshot file, given by
    its path) back, bit for bit, as one undo step; every open view of the model follows.
    Every path, shape and dtype is checked before anything is written (a value is never
    cast: a float64 snapshot does not go into float32 variables); a mismatch changes
    nothing.  ``Snapshot.restore`` is the same operation."""
    from .edit_targets import edit_session
    from .edits import _apply
    from .memory_guard import ensure_fits

    session = edit_session(model)
    if isinstance(snapshot, (str, os.PathLike)):
        snapshot = Snapshot.open(snapshot)  # checked entry by entry; values read on demand
    values = getattr(snapshot, "values", None)
    if not isinstance(values, Mapping):
        raise EditError(f"restore takes a hubwidgets.Snapshot (hw.snapshot(model)) or the path "
                        f"of a snapshot file, got {type(snapshot).__name__}; nothing changed.")
    live = {v.path: v for v in session.tree.variables()}
    problems = []
    for p in values:
        if p in live:
            shape, dtype = _spec(values, p)
            if not _same_kind(live[p], shape, dtype):
                problems.append(f"{p!r} has shape {tuple(live[p].shape)} / {live[p].dtype} in "
                                f"the model but {shape} / {dtype} in the snapshot")
    problems += [f"{p!r} is not a variable of the model" for p in values if p not in live]
    if problems:
        raise EditError("Nothing was restored: " + "; ".join(problems[:5]) +
                        (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "") +
                        ". Restore into the model the snapshot was taken from.")
    ensure_fits(2 * sum(int(live[p].nbytes) for p in values),
                "restoring a snapshot (its values, and the current ones for undo)",
                "restore part of it: snapshot.restore(model, paths=[...])")
    return _apply(session, [live[p] for p in values], lambda old, info: values[info.path],
                  f"restore({session.var_name}, snapshot)", allow_any_dtype=True)


def _spec(values: Mapping[str, Any], path: str) -> tuple[tuple[int, ...], str]:
    """Shape and dtype name of a snapshot's value (read from a file's header, not its data)."""
    spec = getattr(values, "spec", None)
    if spec is not None:
        return spec(path)
    value = np.asarray(values[path])
    return tuple(value.shape), value.dtype.name


def before_first_edit(model: Any, paths: Any) -> Any:
    """A :class:`hubwidgets.Snapshot` of the variables at ``paths`` as they were before their
    first edit recorded with ``keep_originals`` (variables never edited are left out).
    Raises :class:`EditError` when some of those values were not kept (the budget)."""
    from .edits import undo_history

    history = undo_history(model)
    wanted = list(paths)
    lost = [p for p in wanted if p in history.lost_originals]
    if lost:
        raise EditError(f"The values of {', '.join(lost[:3])} before the first edit were not "
                        "kept (over the undo budget); nothing was restored. Raise "
                        "hubwidgets.undo_history(model).budget_bytes before editing to keep "
                        "them, or take hubwidgets.snapshot(model) first.")
    return Snapshot({p: history.originals[p][0] for p in wanted if p in history.originals})


def _same_kind(info: Any, shape: tuple[int, ...], dtype: str) -> bool:
    """Whether a snapshot's value fits the variable: same shape and dtype, never a cast (a
    tf.string variable is kept as bytes in a snapshot)."""
    if tuple(info.shape) != tuple(shape):
        return False
    return info.dtype == dtype or (info.dtype == "string" and dtype.startswith(("bytes", "object")))


def snapshot(model: Any, path: str | os.PathLike[str] | None = None,
             compress: bool = False) -> Snapshot:
    """Copy every variable of ``model``, keyed by ``VariableInfo.path``.

    Without ``path``: into host memory (the memory guard first checks that the copy fits,
    and otherwise refuses, naming the file alternative).  With ``path``: streamed to that
    ``.npz`` file one variable at a time (host memory grows by one variable at most) and
    returned as a snapshot that reads each value back from the file when asked for.

    ``model`` is anything :func:`hubwidgets.inspect` accepts (a Keras 3 or tf_keras model,
    a hub.KerasLayer or HubLayer, what hub.load() returned, a tf.Module, or a path).  A
    mirrored variable is read from its first replica.  Optimizer state kept in a SavedModel
    (slots, iteration count) is not part of the model and is left out.  The model is not
    changed.
    """
    lazy = live_snapshot(model)
    if path is not None:
        written = write_file(path, compress, lazy._meta(),  # each value seen in place
                             ((p, lazy.values.for_reading(p)) for p in lazy.values))
        return Snapshot.open(written)
    from .memory_guard import ensure_fits

    ensure_fits(lazy.nbytes, "a snapshot of every variable in host memory",
                "stream it to a file, one variable at a time: "
                "hubwidgets.snapshot(model, 'before.npz')")
    return dataclasses.replace(lazy, values={p: lazy.values[p] for p in lazy.values})


def live_snapshot(model: Any) -> Snapshot:
    """A snapshot of ``model`` whose values are read from the live variables only when asked
    for (what :func:`diff` compares a live side with: one variable in memory at a time)."""
    from .inspect import inspect

    tree = inspect(model)
    snap = Snapshot(values={}, framework=tree.framework, root=tree.root.name)
    found: dict[str, Any] = {}
    specs: dict[str, tuple[tuple[int, ...], str, int]] = {}
    stack = [(tree.root, "")]
    while stack:
        node, hub_path = stack.pop()
        if not node.counted:  # a SavedModel's optimizer and metric state, not the model
            continue
        if node.module_wrapper:  # hub.KerasLayer, HubLayer, TFSMLayer
            hub_path = node.path
        for var in node.variables:
            if var.path in found:
                continue
            found[var.path] = var
            specs[var.path] = (tuple(var.shape), _numpy_dtype_name(var.dtype), int(var.nbytes))
            snap.trainable[var.path] = bool(var.trainable)
            snap.can_train[var.path] = bool(var.can_train)
            snap.owners[var.path] = node.class_name
            if hub_path:
                snap.hub_layers[var.path] = hub_path
        stack.extend((child, hub_path) for child in reversed(node.children))

    def read(path: str) -> np.ndarray:
        var = found[path]
        value = host_copy(var.variable)
        if value.size != var.size and var.size:
            from .adapters.common import NOT_INITIALISED, is_initialised

            if not is_initialised(var.variable):  # reads as empty: no copy to keep
                raise HubWidgetsError(f"Cannot snapshot {var.path!r}: {NOT_INITIALISED}.")
        return value

    def view(path: str) -> Any:
        var = found[path]
        value = host_view(var.variable, var.shape) if var.size else None
        return value if value is not None else read(path)

    snap.values = LazyValues(list(found), read, specs, view)
    return snap


def host_view(variable: Any, shape: Any) -> np.ndarray | None:
    """A read-only numpy view of a host variable's current value (TensorFlow copies on the
    next write, so the view keeps these values); None when it cannot be seen so."""
    from .adapters.common import backing_variable
    from .host_stats import host_array

    try:
        flat = host_array(backing_variable(variable))
    except Exception:  # noqa: BLE001 - any variable it cannot read in place: copied instead
        return None
    if flat is None:
        return None
    return flat.reshape(tuple(shape)) if shape is not None else flat


def _numpy_dtype_name(dtype: str) -> str:
    """The numpy name of a variable's dtype as the tree gives it ("string": bytes)."""
    return "bytes" if dtype == "string" else dtype


def host_copy(variable: Any) -> np.ndarray:
    """A numpy array that owns a copy of ``variable``'s value (never a view of its buffer)."""
    value = np.asarray(variable.numpy())
    if value.dtype == object:  # tf.string: bytes, kept as fixed-width bytes (no pickle)
        return np.array(value.tolist(), dtype=np.bytes_)
    if value.base is not None or not value.flags.owndata or not value.flags.writeable:
        value = value.copy()
    return value
