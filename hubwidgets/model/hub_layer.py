"""``HubLayer``: a TF Hub module or SavedModel as a Keras 3 layer that keeps its insides.

``hub.KerasLayer`` is a tf_keras layer, so Keras 3 refuses it ("Only instances of
`keras.Layer` can be added to a Sequential model"), and ``keras.layers.TFSMLayer`` flattens
the module.  ``HubLayer`` holds the restored module itself and tracks each of its variables
as a Keras 3 variable wrapping the *same* ``tf.Variable``, so:

- the explorer shows the module's inner layers and scopes;
- ``trainable`` works for the whole module, and :func:`hubwidgets.freeze` /
  :func:`hubwidgets.unfreeze` work on a part of it (per-variable flags);
- ``training`` is passed to the module when its ``__call__`` takes it;
- string inputs work (text modules);
- ``model.save("m.keras")`` stores the handle and the (fine-tuned) values; loading needs the
  handle to exist again, since the module's graph is not copied into the ``.keras`` file.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import tensorflow as tf

from .errors import FreezeError, ModelLoadError

TF1_HUB_MARKER = "tfhub_module.pb"


def load_module(handle: str) -> tuple[Any, str]:
    """Restore the SavedModel behind ``handle`` (a local path or a URL): (module, local dir)."""
    from .adapters.paths import _load_saved_model, is_url, resolve_handle

    handle = os.fspath(handle)
    local = resolve_handle(handle) if is_url(handle) else handle
    if not os.path.isdir(local):
        raise ModelLoadError(
            f"No SavedModel directory at {handle!r}. HubLayer takes a SavedModel directory or "
            "a TF Hub handle; for a .keras or .h5 file use keras.saving.load_model instead.")
    if is_tf1_hub_format(local):
        import tensorflow_hub as hub

        return hub.load(local), local
    return _load_saved_model(local, "SavedModel"), local


def is_tf1_hub_format(directory: str) -> bool:
    """True for a module in the legacy TF1 Hub format (``hub.Module``), which cannot train."""
    return os.path.isfile(os.path.join(directory, TF1_HUB_MARKER))


def accepts_training(fn: Any) -> bool:
    """Whether a restored ``tf.function`` has a ``training`` argument."""
    function_type = getattr(fn, "function_type", None)
    parameters = getattr(function_type, "parameters", None) or {}
    return "training" in parameters


@keras.saving.register_keras_serializable(package="hubwidgets")
class HubLayer(keras.layers.Layer):
    """A TF Hub module (or any TF2 SavedModel) as a Keras 3 layer.

    Args:
        handle: a SavedModel directory, or a TF Hub / Kaggle URL (resolved and cached by
            ``tensorflow_hub``; that needs network once).
        trainable: whether fine-tuning updates the module's variables.
        signature: call this SavedModel signature instead of ``__call__`` (inference only).
        output_key: pick this entry when the module returns a dict.
        arguments: extra keyword arguments for every call of the module.
        frozen_variables: names of module variables kept frozen while the layer trains
            (set by :func:`hubwidgets.freeze`; stored in the config so it survives saving).
    """

    def __init__(self, handle: str, trainable: bool = False, signature: str | None = None,
                 output_key: str | None = None, arguments: dict[str, Any] | None = None,
                 frozen_variables: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(trainable=trainable, **kwargs)
        self.handle = os.fspath(handle)
        self.signature = signature
        self.output_key = output_key
        self.arguments = dict(arguments or {})
        module, self.local_dir = load_module(self.handle)
        self._module = module
        self.tf1_format = bool(getattr(module, "_is_hub_module_v1", False))
        self._fn = self._pick_function(module)
        self._takes_training = signature is None and accepts_training(
            getattr(module, "__call__", None))
        self._check_can_train(trainable)
        from .adapters.trackable import reachable_variables

        restored = reachable_variables(module)
        self._module_variables = restored
        self._hub_variables = [
            keras.Variable(v, trainable=bool(v.trainable), dtype=v.dtype.base_dtype.name,
                           shape=v.shape, name=_variable_name(v))
            for v in restored]
        # Keras 3 keeps the trainable state on the variables (the layer's setter writes it
        # there): apply the layer's flag to the variables just made, then the partial freezes.
        for v in self._hub_variables:
            v.trainable = v.trainable and trainable
        for name in frozen_variables or []:
            self.variable_named(name).trainable = False
        self.built = True

    # -- what the module is ---------------------------------------------------------------
    @property
    def module(self) -> Any:
        """The restored module (what ``hub.load`` returns), with its own variables."""
        return self._module

    @property
    def frozen_variables(self) -> list[str]:
        """Names of module variables that could train but are frozen individually (empty
        while the whole layer is frozen)."""
        if not self.trainable:
            return []
        return [v.name for v, orig in zip(self._hub_variables, self._module_variables)
                if orig.trainable and not v.trainable]

    def variable_named(self, name: str) -> Any:
        """The layer's Keras variable for the module variable ``name``."""
        for v, orig in zip(self._hub_variables, self._module_variables):
            if name in (v.name, orig.name, orig.name.rsplit(":", 1)[0]):
                return v
        raise KeyError(f"HubLayer {self.name!r} has no variable named {name!r}.")

    def _pick_function(self, module: Any) -> Any:
        if self.signature is not None:
            signatures = getattr(module, "signatures", {}) or {}
            if self.signature not in signatures:
                raise ValueError(
                    f"The module at {self.handle!r} has no signature {self.signature!r}; it "
                    f"has {sorted(signatures) or 'none'}.")
            return signatures[self.signature]
        if callable(module):
            return module
        signatures = sorted(getattr(module, "signatures", {}) or {})
        raise ValueError(
            f"The module at {self.handle!r} has no __call__ function (it may be a TF1 Hub "
            f"module or an export with only signatures). Pass signature=..., one of "
            f"{signatures or 'none'}; that layer can run but not be fine-tuned.")

    def _check_can_train(self, flag: bool) -> None:
        from .variable_flags import untrainable_reason

        reason = untrainable_reason(self) if flag else None
        if reason:
            raise FreezeError(f"Cannot make it trainable: {reason}")

    # -- running --------------------------------------------------------------------------
    def call(self, inputs: Any, training: bool | None = None) -> Any:
        kwargs = dict(self.arguments)
        if training and self.trainable:
            self._check_can_train(True)
        if self._takes_training:
            kwargs["training"] = bool(training) and self.trainable
        if self.signature is not None:
            result = self._run_signature(inputs, kwargs)
        else:
            result = self._fn(inputs, **kwargs)
        if isinstance(result, dict):
            if self.output_key is None:
                raise ValueError(
                    f"HubLayer {self.name!r}: the module returns a dict with keys "
                    f"{sorted(result)}; pass output_key= to pick one.")
            result = result[self.output_key]
        return result

    def _run_signature(self, inputs: Any, kwargs: dict[str, Any]) -> Any:
        if isinstance(inputs, dict):
            return self._fn(**inputs, **kwargs)
        names = list(self._fn.structured_input_signature[1])
        if len(names) != 1:
            raise ValueError(
                f"The signature {self.signature!r} takes {names}; pass a dict of inputs.")
        return self._fn(**{names[0]: inputs}, **kwargs)

    # -- saving ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(handle=self.handle, signature=self.signature,
                      output_key=self.output_key, arguments=self.arguments,
                      frozen_variables=self.frozen_variables)
        return config


def _variable_name(v: Any) -> str:
    name = v.name.rsplit(":", 1)[0]
    return name.replace("/", "__")
