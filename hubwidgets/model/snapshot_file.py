"""The snapshot file format: one ``.npz`` (numpy's zip of ``.npy`` arrays) written one value
at a time, and read back with every entry checked first.

Why this and not a checkpoint or ``.weights.h5``: it reads back with numpy alone (no
TensorFlow, no h5py, no model to load into), keeps every dtype and shape exactly, is written
without pickle and read with ``allow_pickle=False`` (a file from elsewhere cannot run code),
and each array can be read on its own.  Paths are kept in a JSON entry beside the arrays, so
any character a variable path holds survives.  A damaged or hand-edited file raises a
:class:`HubWidgetsError` that says what is wrong, never a raw zip or numpy error.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import HubWidgetsError

FORMAT = "hubwidgets.snapshot/1"
META_KEY = "__hubwidgets_meta__"
ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")
TABLES = ("trainable", "owners", "can_train", "hub_layers")
"""The per-path tables a snapshot keeps beside its values."""


def write_file(path: str | os.PathLike[str], compress: bool, meta: dict[str, Any],
                items: Any) -> str:
    """Write an ``.npz`` snapshot: each value as its own ``.npy`` entry, written as it comes
    (one value in memory at a time), then the JSON entry with the paths and dtypes.  Written
    to a temporary name and renamed, so a failure never leaves a partial file behind."""
    target = os.fspath(path)
    if os.path.isdir(target):
        raise HubWidgetsError(f"Could not write the snapshot: {target!r} is a directory. Give "
                              f"it a file name, e.g. {os.path.join(target, 'before.npz')!r}.")
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
            header = {"format": FORMAT, "paths": paths, "dtypes": dtypes, **meta}
            with archive.open(f"{META_KEY}.npy", "w") as entry:
                np.lib.format.write_array(
                    entry, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        os.replace(partial, target)
    except BaseException as exc:
        if os.path.exists(partial):
            os.remove(partial)
        if isinstance(exc, OSError):
            raise HubWidgetsError(f"Could not write the snapshot {target!r} ({type(exc).__name__}: "
                                  f"{exc.strerror or exc}); nothing was written. Pass a path in an "
                                  "existing, writable folder with room for the model's weights."
                                  ) from exc
        raise
    return target


class SnapshotFile:
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
        if META_KEY not in self._npz.files:
            raise HubWidgetsError(
                f"{source!r} is an .npz file but not a hubwidgets snapshot (no "
                f"{META_KEY!r} entry). Write snapshots with hubwidgets.snapshot(model, path) "
                "or hubwidgets.snapshot(model).save(path).")
        try:
            raw = self._npz[META_KEY]
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
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise self._error(f"its format is {found!r}, not {FORMAT!r}")
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
        for table in TABLES:
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
        if name in ML_DTYPES:
            fits = stored == np.dtype(f"u{wanted.itemsize}")
        else:
            fits = stored == wanted
        if not fits:
            raise self._error(f"{path!r} is described as {name} but stored as {stored}")
        return tuple(shape), wanted

    def read_in_pieces(self, path: str) -> "np.ndarray | FileArray":
        """The value of ``path`` read piece by piece from the file when it is stored
        uncompressed (:class:`FileArray`; its bytes are checked against the entry's CRC
        first, in pieces too), else read whole as :meth:`read` does.  For reading only
        (``diff``): a 1 GB embedding is compared without being held."""
        i = self._index[path]
        info = self._npz.zip.getinfo(f"v{i}.npy")
        shape, dtype = self._headers[path]
        if info.compress_type != zipfile.ZIP_STORED:
            return self.read(path)
        try:
            with open(self.source, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
                name_length, extra_length = struct.unpack("<HH", local[26:30])
                start = info.header_offset + 30 + name_length + extra_length
                f.seek(start)
                crc, left = 0, info.file_size
                while left > 0:
                    piece = f.read(min(left, PIECE_BYTES))
                    if not piece:
                        break
                    crc, left = zlib.crc32(piece, crc), left - len(piece)
                if left or crc != info.CRC:
                    raise ValueError("its bytes do not match the entry's checksum")
                f.seek(start)
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                stored_shape, fortran, stored = read_header(f)
                data = f.tell()
        except Exception as exc:  # noqa: BLE001 - truncation, CRC, header errors
            raise self._error(f"the value of {path!r} is damaged ({type(exc).__name__}: "
                              f"{exc})") from exc
        if fortran or tuple(stored_shape) != shape:
            return self.read(path)
        return FileArray(self.source, data, shape, stored, dtype)

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


PIECE_BYTES = 16 * 2**20
"""Bytes read at a time when a stored value is checked or read in pieces."""


class FileArray:
    """A value of a snapshot file read piece by piece: ``shape``, ``size``, ``dtype``,
    ``reshape(-1)`` and ``flat[start:stop]`` (a numpy array of those values, read then),
    what ``diff`` uses; ``numpy.asarray`` reads it whole."""

    def __init__(self, source: str, offset: int, shape: tuple[int, ...], stored: np.dtype,
                 dtype: np.dtype) -> None:
        self.source, self.offset = source, offset
        self.shape, self.dtype, self._stored = tuple(shape), dtype, stored
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self._file: Any = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def reshape(self, *shape: Any) -> "FileArray | np.ndarray":
        wanted = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        if tuple(wanted) in ((-1,), (self.size,)):
            flat = FileArray(self.source, self.offset, (self.size,), self._stored, self.dtype)
            return flat
        return np.asarray(self).reshape(*shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, slice) or self.ndim != 1:
            return np.asarray(self)[key]
        start, stop, step = key.indices(self.size)
        if step != 1:
            return np.asarray(self)[key]
        if self._file is None:
            self._file = open(self.source, "rb")  # noqa: SIM115 - closed with the array
        self._file.seek(self.offset + start * self._stored.itemsize)
        count = max(stop - start, 0)
        values = np.fromfile(self._file, self._stored, count)
        if values.size != count:
            raise HubWidgetsError(f"Could not read the snapshot {self.source!r}: it was "
                                  "truncated while being read.")
        return values if self._stored == self.dtype else values.view(self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = FileArray(self.source, self.offset, (self.size,), self._stored,
                          self.dtype)[0:self.size].reshape(self.shape)
        return whole if dtype is None else whole.astype(dtype)

    def __del__(self) -> None:
        if self._file is not None:
            self._file.close()


def _dtype_named(name: str) -> np.dtype | None:
    if name in ML_DTYPES:
        import ml_dtypes  # installed with TensorFlow

        return np.dtype(getattr(ml_dtypes, name))
    for prefix, code, bits in (("bytes", "S", 8), ("str", "U", 32)):  # named by bit width
        width = name[len(prefix):]
        if name.startswith(prefix) and width.isdigit() and int(width) % bits == 0:
            return np.dtype(f"{code}{int(width) // bits}")
    try:
        dtype = np.dtype(name)
    except TypeError:
        return None
    if dtype.name != name or dtype.hasobject:  # "float" -> float64, "int4"...: not ours
        return None
    return dtype


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
