"""Paths and handles: SavedModel directories, ``.keras`` and ``.h5`` files, TF Hub handles."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ModelLoadError

KERAS_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")


def is_url(handle: str) -> bool:
    return handle.startswith(("http://", "https://", "gs://"))


def resolve_local_dir(handle: str) -> str | None:
    """The local directory of a handle when it is one (no download)."""
    return handle if os.path.isdir(handle) else None


def resolve_handle(handle: str) -> str:
    """A local directory for a TF Hub URL, through tensorflow_hub's resolver and cache."""
    import tensorflow_hub as hub

    try:
        return hub.resolve(handle)
    except Exception as exc:  # noqa: BLE001 - the resolver raises many network error types
        raise ModelLoadError(
            f"Could not fetch the TF Hub handle {handle!r}: {type(exc).__name__}: {exc}. "
            "This machine looks offline (or the handle is wrong). Download the module once "
            "where there is network and pass its local directory instead, e.g. "
            "hubwidgets.inspect('/path/to/module'), or point TFHUB_CACHE_DIR at a cache "
            "that already holds it.") from exc


def load_path(path: str | os.PathLike[str]) -> tuple[Any, str, str]:
    """Load what ``path`` holds: returns (object, framework label, local path)."""
    handle = os.fspath(path)
    if is_url(handle):
        local = resolve_handle(handle)
        return _load_saved_model(local, "TF Hub module"), "TF Hub module", local
    if not os.path.exists(handle):
        raise ModelLoadError(
            f"No file or directory at {handle!r}. Check the path. hubwidgets.inspect accepts "
            "a SavedModel directory, a .keras or .h5 file, a TF Hub handle, or a live model.")
    if os.path.isdir(handle):
        return _load_saved_model(handle, "SavedModel"), "SavedModel", handle
    lower = handle.lower()
    if lower.endswith(KERAS_SUFFIXES):
        return _load_keras_file(handle), "Keras 3", handle
    if lower.endswith(H5_SUFFIXES):
        return _load_h5(handle)
    raise ModelLoadError(
        f"{handle!r} is not a model file hubwidgets can read. Pass a SavedModel directory, "
        "a .keras file, an .h5 file or a TF Hub handle; for anything else load the model "
        "yourself and pass the object.")


def _load_saved_model(directory: str, label: str) -> Any:
    import tensorflow as tf

    if not any(os.path.isfile(os.path.join(directory, f))
               for f in ("saved_model.pb", "saved_model.pbtxt")):
        raise ModelLoadError(
            f"{directory!r} is a directory but not a SavedModel: it has no saved_model.pb. "
            "Pass the directory that model.export(...) or tf.saved_model.save(...) wrote, "
            "or the .keras file itself.")
    try:
        return tf.saved_model.load(directory)
    except Exception as exc:  # noqa: BLE001 - TF raises a zoo of types for bad files
        raise ModelLoadError(
            f"Could not load the {label} at {directory!r}: {type(exc).__name__}: "
            f"{_first_line(exc)}. The files look corrupt or incomplete; save the model again "
            "(model.export(path) or tf.saved_model.save(obj, path)).") from exc


def _load_keras_file(path: str) -> Any:
    import zipfile

    import keras

    if not zipfile.is_zipfile(path):  # Keras itself says "File not found" for these
        raise ModelLoadError(
            f"{path!r} is not a complete .keras file: it is not a readable zip archive "
            f"({os.path.getsize(path):,} bytes), so it was probably truncated or is another "
            "format. Copy or save it again (model.save(path)).")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"Could not load the .keras file {path!r}: {type(exc).__name__}: {_first_line(exc)}. "
            "If the file is corrupt, save the model again with model.save(path). If it uses "
            "custom layers, load it yourself with keras.saving.load_model(path, "
            "custom_objects={...}) and pass the model to hubwidgets.") from exc


def _load_h5(path: str) -> tuple[Any, str, str]:
    """An .h5 file saved by Keras 3 loads with Keras 3; an older one with tf_keras."""
    version = ""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("keras_version", b"")
            version = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"{path!r} is not a readable HDF5 file ({type(exc).__name__}: {_first_line(exc)}). "
            "Save the model again with model.save('model.h5').") from exc
    try:
        if version.startswith("3."):
            import keras

            return keras.saving.load_model(path, compile=False), "Keras 3", path
        import tf_keras

        return tf_keras.models.load_model(path, compile=False), "tf_keras", path
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"Could not load the .h5 model {path!r}: {type(exc).__name__}: {_first_line(exc)}. "
            "If it has custom layers, load it yourself with custom_objects and pass the "
            "model; if it holds weights only, build the model and call "
            "model.load_weights(path).") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
