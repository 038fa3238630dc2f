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

import dataclasses
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .errors import HubWidgetsError

_FORMAT = "hubwidgets.snapshot/1"
_META_KEY = "__hubwidgets_meta__"
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")
_TABLES = ("trainable", "owners", "can_train", "hub_layers")


class LazyValues(Mapping):
    """variable path -> value, each read only when asked for (from a snapshot file, or from
    the live variable), so that a whole model's values are never in host memory at once."""

    def __init__(self, paths: list[str], read: Callable[[str], np.ndarray],
                 specs: dict[str, tuple[tuple[int, ...], str, int]]) -> None:
        self._paths = list(paths)
        self._known = set(self._paths)
        self._read = read
        self._specs = specs  # path -> (shape, dtype name, bytes)

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
        return LazyValues([p for p in self._paths if p in wanted], self._read, self._specs)


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
                                                           for t in _TABLES})

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
        return _write_file(path, compress, self._meta(), self.values.items())

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
        reader = _SnapshotFile(source)
        meta = reader.meta
        return cls(values=LazyValues(reader.paths, reader.read, reader.specs),
                   framework=meta["framework"], root=meta["root"], source=source,
                   **{t: meta[t] for t in _TABLES})

    # -- writing back --------------------------------------------------------------------------
    def restore(self, model: Any, paths: list[str] | None = None) -> list[str]:
        """Assign the snapshot's values back to the live ``model`` (all, or only ``paths``).

        The same as ``hubwidgets.restore(model, snapshot)``: every variable is checked
        (present, same shape and dtype, never cast) before any is written, so a mismatch
        changes nothing; the restore is one undo step and every open view of the model
        follows.  Returns the paths written.
        """
        from .edits import restore

        chosen = self
        if paths is not None:
            wanted = list(paths)
            missing = [p for p in wanted if p not in self.values]
            if missing:
                from .errors import EditError

                raise EditError("Nothing was restored: " + "; ".join(
                    f"{p!r} is not in the snapshot" for p in missing[:5]) + ".")
            chosen = self.subset(wanted)
        restore(model, chosen)
        return list(chosen.values)


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
        written = _write_file(path, compress, lazy._meta(), lazy.values.items())
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

    snap.values = LazyValues(list(found), read, specs)
    return snap


def _write_file(path: str | os.PathLike[str], compress: bool, meta: dict[str, Any],
                items: Any) -> str:
    """Write an ``.npz`` snapshot: each value as its own ``.npy`` entry, written as it comes
    (one value in memory at a time), then the JSON entry with the paths and dtypes.  Written
    to a temporary name and renamed, so a failure never leaves a partial file behind."""
    target = os.fspath(path)
    if not target.endswith(".npz"):
        target += ".npz"
    partial = target + ".partial"
    paths: list[str] = []
    dtypes: list[str] = []
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    try:
        with zipfile.ZipFile(partial, "w", compression=mode, allowZip64=True) as archive:
            for i, (p, value) in enumerate(items):
                stored, dtype = _storable(np.asarray(value))
                with archive.open(f"v{i}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, stored, allow_pickle=False)
                paths.append(p)
                dtypes.append(dtype)
                del value, stored
            header = {"format": _FORMAT, "paths": paths, "dtypes": dtypes, **meta}
            with archive.open(f"{_META_KEY}.npy", "w") as entry:
                np.lib.format.write_array(
                    entry, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return target


class _SnapshotFile:
    """An ``.npz`` snapshot opened for reading one value at a time, every entry checked
    first: a damaged or hand-edited file raises a :class:`HubWidgetsError` saying what is
    wrong, never a raw zip or numpy error, and never loads silently wrong."""

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._npz = np.load(source, allow_pickle=False)
        except FileNotFoundError:
            raise self._error("there is no such file") from None
        except Exception as exc:  # noqa: BLE001 - zip, numpy and OS errors alike
            raise self._error(f"it is not a readable .npz file ({type(exc).__name__}: "
                              f"{exc})") from exc
        if not isinstance(self._npz, Mapping) and not hasattr(self._npz, "files"):
            raise self._error("it is a single .npy array, not an .npz snapshot")
        if _META_KEY not in self._npz.files:
            raise HubWidgetsError(
                f"{source!r} is an .npz file but not a hubwidgets snapshot (no "
                f"{_META_KEY!r} entry). Write snapshots with hubwidgets.snapshot(model, path) "
                "or hubwidgets.snapshot(model).save(path).")
        try:
            raw = self._npz[_META_KEY]
            self.meta = json.loads(bytes(raw).decode())
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"its description entry is damaged ({type(exc).__name__}: "
                              f"{exc})") from exc
        self._check_meta()
        self.paths: list[str] = self.meta["paths"]
        self._index = {p: i for i, p in enumerate(self.paths)}
        self._headers = {p: self._header(i, p) for i, p in enumerate(self.paths)}
        self.specs = {p: (shape, dtype.name, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
                      for p, (shape, dtype) in self._headers.items()}

    def _error(self, what: str) -> HubWidgetsError:
        return HubWidgetsError(f"Could not read the snapshot {self.source!r}: {what}. Pass a "
                               "file written by hubwidgets.snapshot(model, path) or "
                               "Snapshot.save(path), unchanged.")

    def _check_meta(self) -> None:
        meta = self.meta
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise self._error(f"its format is {found!r}, not {_FORMAT!r}")
        paths, dtypes = meta.get("paths"), meta.get("dtypes")
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise self._error("its list of variable paths is missing or not a list of names")
        if len(set(paths)) != len(paths):
            twice = sorted({p for p in paths if paths.count(p) > 1})
            raise self._error(f"it names {', '.join(map(repr, twice[:3]))} more than once")
        if not isinstance(dtypes, list) or len(dtypes) != len(paths) or \
                not all(isinstance(d, str) for d in dtypes):
            raise self._error(f"its dtype list does not give one dtype name per variable "
                              f"({len(paths)} paths)")
        for key in ("framework", "root"):
            if not isinstance(meta.setdefault(key, ""), str):
                raise self._error(f"its {key!r} is not a text")
        for table in _TABLES:
            value = meta.setdefault(table, {})
            kind = str if table in ("owners", "hub_layers") else bool
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, kind) for k, v in value.items()):
                raise self._error(f"its {table!r} table is not a mapping of paths to "
                                  f"{kind.__name__}")
        missing = [f"v{i}" for i in range(len(paths)) if f"v{i}" not in self._npz.files]
        if missing:
            raise self._error(f"it lists {len(paths)} variables but the value entries "
                              f"{', '.join(missing[:3])} are missing")

    def _header(self, i: int, path: str) -> tuple[tuple[int, ...], np.dtype]:
        """The stored entry's shape and dtype, read from its ``.npy`` header alone, checked
        against the dtype the description names."""
        name = self.meta["dtypes"][i]
        try:
            with self._npz.zip.open(f"v{i}.npy") as entry:
                version = np.lib.format.read_magic(entry)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, stored = read_header(entry)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"the entry of {path!r} is damaged ({type(exc).__name__}: "
                              f"{exc})") from exc
        if stored.hasobject:
            raise self._error(f"the entry of {path!r} holds Python objects")
        wanted = _dtype_named(name)
        if wanted is None:
            raise self._error(f"{path!r} has the unknown dtype {name!r}")
        if name in _ML_DTYPES:
            fits = stored == np.dtype(f"u{wanted.itemsize}")
        else:
            fits = stored == wanted
        if not fits:
            raise self._error(f"{path!r} is described as {name} but stored as {stored}")
        return tuple(shape), wanted

    def read(self, path: str) -> np.ndarray:
        i = self._index[path]
        try:
            stored = self._npz[f"v{i}"]
        except Exception as exc:  # noqa: BLE001 - CRC errors, truncation, zlib errors
            raise self._error(f"the value of {path!r} is damaged ({type(exc).__name__}: "
                              f"{exc})") from exc
        shape, dtype = self._headers[path]
        if stored.shape != shape:  # pragma: no cover - the header was read before
            raise self._error(f"the value of {path!r} changed shape while reading")
        return _restored(stored, dtype.name)


def _numpy_dtype_name(dtype: str) -> str:
    """The numpy name of a variable's dtype as the tree gives it ("string": bytes)."""
    return "bytes" if dtype == "string" else dtype


def _dtype_named(name: str) -> np.dtype | None:
    if name in _ML_DTYPES:
        import ml_dtypes  # installed with TensorFlow

        return np.dtype(getattr(ml_dtypes, name))
    try:
        dtype = np.dtype(name)
    except TypeError:
        return None
    if dtype.name != name or dtype.hasobject:  # "float" -> float64, "int4"...: not ours
        return None
    return dtype


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
