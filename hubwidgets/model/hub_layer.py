"""``HubLayer``: a TF Hub module or SavedModel as a Keras 3 layer that keeps its insides.

``hub.KerasLayer`` is a tf_keras layer, so Keras 3 refuses it ("Only instances of
`keras.Layer` can be added to a Sequential model"), and ``keras.layers.TFSMLayer`` flattens
the module.  ``HubLayer`` holds the restored module itself and tracks each of its variables
as a Keras 3 variable wrapping the *same* ``tf.Variable``, so:

- the explorer shows the module's inner layers and scopes;
- ``trainable`` works for the whole module, and :func:`hubwidgets.freeze` /
  :func:`hubwidgets.unfreeze` work on a part of it (per-variable flags), always within the
  module's *trainable set* (see :class:`HubLayer`);
- the module's regularization losses join ``layer.losses`` while the layer is trainable;
- ``training`` is passed to the module when its ``__call__`` takes it;
- string inputs, dict inputs and dict / list outputs work (text modules, multi-output
  encoders);
- a Keras 3 ``model.export()`` directory loads with the defaults, through its ``serve``
  endpoint, as ``keras.layers.TFSMLayer`` does;
- ``model.save("m.keras")`` stores the handle and the (fine-tuned) values; loading needs the
  handle to exist again, since the module's graph is not copied into the ``.keras`` file.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import keras
import tensorflow as tf

from .adapters.common import variable_key
from .errors import FreezeError, HubWidgetsWarning, ModelLoadError

TF1_HUB_MARKER = "tfhub_module.pb"
KERAS_EXPORT_ENDPOINT = "serve"  # what keras.Model.export() writes; TFSMLayer's default
CALL_ENDPOINT = "__call__"
FROM_MODULE_LIST = "the module's trainable_variables list"
FROM_VARIABLE_FLAGS = "each variable's own trainable flag (the module has no trainable_variables)"


def load_module(handle: str, tags: Any = None, load_options: Any = None) -> tuple[Any, str]:
    """Restore the SavedModel behind ``handle`` (a local path or a URL): (module, local dir).

    ``tags`` picks a MetaGraph (TF1 Hub format and TF1 SavedModels); ``load_options`` is a
    ``tf.saved_model.LoadOptions``, passed to the loader as ``hub.load`` does."""
    from .adapters.paths import _load_saved_model, is_url, resolve_handle

    handle = os.fspath(handle)
    local = resolve_handle(handle) if is_url(handle) else handle
    if not os.path.isdir(local):
        raise ModelLoadError(
            f"No SavedModel directory at {handle!r}. HubLayer takes a SavedModel directory or "
            "a TF Hub handle; for a .keras or .h5 file use keras.saving.load_model instead.")
    if is_tf1_hub_format(local):
        import tensorflow_hub as hub

        return hub.load(local, tags=tags, options=load_options), local
    if tags is None and load_options is None:
        return _load_saved_model(local, "SavedModel"), local
    try:
        return tf.saved_model.load(local, tags=tags, options=load_options), local
    except Exception as exc:  # noqa: BLE001 - TF raises a zoo of types for bad files and tags
        raise ModelLoadError(
            f"Could not load the SavedModel at {handle!r} with tags={tags!r}, "
            f"load_options={load_options!r}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. A TF2 SavedModel "
            "has one MetaGraph: leave tags=None.") from exc


def is_tf1_hub_format(directory: str) -> bool:
    """True for a module in the legacy TF1 Hub format (``hub.Module``), which cannot train."""
    return os.path.isfile(os.path.join(directory, TF1_HUB_MARKER))


def accepts_training(fn: Any) -> bool:
    """Whether a restored ``tf.function`` has a ``training`` argument."""
    function_type = getattr(fn, "function_type", None)
    parameters = getattr(function_type, "parameters", None) or {}
    return "training" in parameters


def module_variables(module: Any) -> tuple[list[Any], set[int], str]:
    """(every variable the layer tracks, keys of those that may train, where that set comes
    from).

    Like ``hub.KerasLayer``: a module that lists ``variables`` brings exactly those (plus its
    ``trainable_variables``); one that does not brings every variable reachable in its
    object graph, except a ``tf.train.Checkpoint``'s ``save_counter``.  The trainable set is
    the module's ``trainable_variables`` list when it has one (a reusable SavedModel, a
    tf_keras or Keras 3 save: frozen sub-layers are left out of it, even though tf_keras
    restores their variables with ``trainable=True``), else each variable's own flag."""
    from .adapters.trackable import reachable_variables

    listed_trainable = getattr(module, "trainable_variables", None)
    listed = getattr(module, "variables", None)
    if _is_variable_list(listed):
        found = {variable_key(v): v for v in list(listed_trainable or []) + list(listed)}
        variables = list(found.values())
    else:
        counter = getattr(module, "save_counter", None)
        skip = {variable_key(counter)} if isinstance(counter, tf.Variable) else set()
        variables = [v for v in reachable_variables(module) if variable_key(v) not in skip]
    if _is_variable_list(listed_trainable):
        return variables, {variable_key(v) for v in listed_trainable}, FROM_MODULE_LIST
    return variables, {variable_key(v) for v in variables if v.trainable}, FROM_VARIABLE_FLAGS


def _is_variable_list(value: Any) -> bool:
    if value is None or isinstance(value, (str, bytes, tf.Variable)) or callable(value):
        return False
    try:
        return all(isinstance(v, tf.Variable) for v in value)
    except TypeError:
        return False


def endpoint_variable_keys(fn: Any) -> set[int] | None:
    """Keys of the variables a restored function captures (None when TF does not say)."""
    functions = getattr(fn, "concrete_functions", None) or [fn]
    keys: set[int] = set()
    try:
        for concrete in functions:
            keys |= {variable_key(v) for v in concrete.variables}
    except (AttributeError, TypeError):
        return None
    return keys


def _regularizers(module: Any) -> list[Any]:
    found = getattr(module, "regularization_losses", None) or []
    for loss in found:
        if not callable(loss):
            raise ValueError(
                "HubLayer expects module.regularization_losses to be a list of callables, each "
                f"taking no argument and returning a scalar loss; got {type(loss).__name__}. "
                "Save the module with tf.function(lambda: loss, input_signature=[]) entries.")
    return list(found)


# -- output shapes ----------------------------------------------------------------------------
def to_shape_nest(value: Any) -> Any:
    """``output_shape`` as given (a shape, or a dict / list / tuple of them, JSON lists
    included) as a nest of ``tf.TensorShape`` leaves; a shape-like list is one shape."""
    if isinstance(value, dict):
        return {key: to_shape_nest(v) for key, v in value.items()}
    if isinstance(value, tf.TensorShape):
        return value
    if isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value):
        return tf.TensorShape(value)
    if isinstance(value, (list, tuple)):
        return type(value)(to_shape_nest(v) for v in value)
    raise TypeError(
        f"output_shape must be a shape without the batch dimension (a tuple of ints or None, "
        f"e.g. (20,)) or a dict / list of such shapes matching the module's outputs; got "
        f"{value!r}.")


def from_shape_nest(nest: Any) -> Any:
    """The nest of ``tf.TensorShape`` as plain tuples (JSON-friendly)."""
    return tf.nest.map_structure(lambda s: tuple(s.as_list()), nest)


@keras.saving.register_keras_serializable(package="hubwidgets")
class HubLayer(keras.layers.Layer):
    """A TF Hub module (or any TF2 SavedModel, or a Keras 3 ``model.export()``) as a Keras 3
    layer; the Keras 3 counterpart of ``hub.KerasLayer``, with the same arguments.

    **What trains.** The layer trains the module's *trainable set*: the variables in the
    restored object's ``trainable_variables`` list when it has one (TF Hub reusable
    SavedModels, tf_keras and Keras 3 saves and exports), else, for a module without that
    list (a plain ``tf.Module``), the variables whose own ``trainable`` flag is True.
    :attr:`trainable_source` says which applies.  Variables outside the set (a sub-layer saved
    frozen, BatchNormalization statistics) are tracked as non-trainable weights and can never
    be made trainable: :func:`hubwidgets.unfreeze` raises :class:`FreezeError` for them, and
    freezes or unfreezes parts only within the set.  While the layer is trainable, ``losses``
    holds the module's ``regularization_losses``.

    Args:
        handle: a SavedModel directory, or a TF Hub / Kaggle URL (resolved and cached by
            ``tensorflow_hub``; that needs network once).
        trainable: whether fine-tuning updates the module's trainable set.  Refused for a
            TF1 Hub format module, a signature, and a Keras 3 export that lists no trainable
            variable its ``serve`` endpoint uses.
        signature: call this SavedModel signature instead of ``__call__`` (inference only);
            then ``output_key`` or ``signature_outputs_as_dict=True`` is required.
        output_key: pick this entry of a dict output.
        arguments: extra keyword arguments for every call of the module (JSON values).
        frozen_variables: names of module variables kept frozen while the layer trains
            (set by :func:`hubwidgets.freeze`; stored in the config so it survives saving).
        signature_outputs_as_dict: return the signature's whole output dict.
        output_shape: the output shape without the batch dimension, or a dict / list of them
            matching the module's outputs (checked on every call, used by
            ``compute_output_shape``).
        load_options: a ``tf.saved_model.LoadOptions`` for loading (not saved in the config).
        tags: the MetaGraph tags to load (TF1 formats only; TF2 SavedModels have one).

    Attributes:
        module / resolved_object: the restored module.
        endpoint: what a call runs: ``"__call__"``, ``"serve"`` (a Keras 3 export) or the
            signature's name.
        trainable_keys: the trainable set (``variable_key`` of each variable in it).
        trainable_source: where the trainable set comes from (the module's list, or flags).
        frozen_variables: parts of the set frozen one by one (:func:`hubwidgets.freeze`).

    A module's dtypes are fixed when it is saved, so the layer keeps a float32 policy under a
    global mixed precision policy unless ``dtype=`` is passed.  A Keras 3 export's ``serve``
    endpoint has no training mode: its BatchNormalization layers always use their moving
    statistics.
    """

    def __init__(self, handle: str, trainable: bool = False, signature: str | None = None,
                 output_key: str | None = None, arguments: dict[str, Any] | None = None,
                 frozen_variables: list[str] | None = None,
                 signature_outputs_as_dict: bool | None = None, output_shape: Any = None,
                 load_options: Any = None, tags: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(trainable=bool(trainable), **kwargs)
        self.handle = os.fspath(handle)
        self.arguments = dict(arguments or {})
        self.signature = signature
        self.signature_outputs_as_dict = bool(signature_outputs_as_dict)
        self.output_key = output_key
        self.tags = tags
        self.load_options = load_options
        self._declared_output_shapes = None if output_shape is None else to_shape_nest(output_shape)
        module, self.local_dir = load_module(self.handle, tags, load_options)
        self._module = module
        self.tf1_format = bool(getattr(module, "_is_hub_module_v1", False))
        if self.tf1_format:  # hub.KerasLayer's defaults for the TF1 Hub format
            self.signature = self.signature or "default"
            if not self.signature_outputs_as_dict:
                self.output_key = self.output_key or "default"
        self._check_can_train(bool(trainable))  # TF1 and signatures: said first
        self._check_output_arguments()
        self._fn, self.endpoint = self._pick_function(module)
        self._takes_training = self.endpoint == CALL_ENDPOINT and accepts_training(
            self._function())
        self._check_output_key_fits()
        self._regularization_fns = _regularizers(module)

        restored, trainable_keys, self.trainable_source = module_variables(module)
        if self.endpoint == KERAS_EXPORT_ENDPOINT:  # only what the endpoint uses can learn
            used = endpoint_variable_keys(self._fn)
            trainable_keys = trainable_keys if used is None else trainable_keys & used
        self.trainable_keys = frozenset(trainable_keys)
        self._module_variables = restored
        # Keras 3 files a variable under trainable or non-trainable by its flag when tracked:
        # the module's trainable set goes in the first list, which is what the layer's
        # `trainable` setter and the explorer follow.
        self._hub_variables = [
            keras.Variable(v, trainable=variable_key(v) in trainable_keys,
                           dtype=v.dtype.base_dtype.name, shape=v.shape, name=_variable_name(v))
            for v in restored]
        self._check_can_train(bool(trainable))
        for v in self._hub_variables:
            v.trainable = v.trainable and bool(trainable)
        for name in frozen_variables or []:
            self.variable_named(name).trainable = False
        self._warned_zero_trainable = False
        if trainable:
            self._warn_if_nothing_trains()
        self.built = True

    # -- what the module is ---------------------------------------------------------------
    @property
    def module(self) -> Any:
        """The restored module (what ``hub.load`` returns), with its own variables."""
        return self._module

    @property
    def resolved_object(self) -> Any:
        """The restored module, under ``hub.KerasLayer``'s name for it."""
        return self._module

    @property
    def output_shape(self) -> Any:
        """The ``output_shape`` given at construction, as plain tuples (None when not given)."""
        shapes = self._declared_output_shapes
        return None if shapes is None else from_shape_nest(shapes)

    @property
    def frozen_variables(self) -> list[str]:
        """Names of module variables that could train but are frozen individually (empty
        while the whole layer is frozen)."""
        if not self.trainable:
            return []
        return [v.name for v, orig in zip(self._hub_variables, self._module_variables,
                                          strict=True)
                if variable_key(orig) in self.trainable_keys and not v.trainable]

    def variable_named(self, name: str) -> Any:
        """The layer's Keras variable for the module variable ``name``."""
        for v, orig in zip(self._hub_variables, self._module_variables, strict=True):
            if name in (v.name, orig.name, orig.name.rsplit(":", 1)[0]):
                return v
        raise KeyError(f"HubLayer {self.name!r} has no variable named {name!r}; it has "
                       f"{[v.name for v in self._hub_variables]}.")

    # -- trainable ------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """Whether the module's trainable set trains.  Setting it (even to the value it has)
        sets every variable of the set, clearing part freezes.  Setting True on a layer that
        cannot train leaves it frozen with a warning (Keras 3 passes a parent's flag down, so
        a parent model can still be unfrozen around it); ``HubLayer(trainable=True)``
        raises."""
        return self._trainable

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "trainable":  # TF's tracking skips a setter whose value does not change:
            type(self).trainable.fset(self, value)  # always apply, so it clears part freezes
            return
        super().__setattr__(name, value)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        from .variable_flags import untrainable_reason

        value = bool(value)
        reason = untrainable_reason(self) if value and hasattr(self, "trainable_keys") else None
        if reason:
            warnings.warn(f"Left frozen: trainable=True is unsupported here: {reason}",
                          HubWidgetsWarning, stacklevel=3)
            value = False
        keras.layers.Layer.trainable.fset(self, value)
        if value and hasattr(self, "_warned_zero_trainable"):
            self._warn_if_nothing_trains()

    def _check_can_train(self, flag: bool) -> None:
        from .variable_flags import untrainable_reason

        reason = untrainable_reason(self) if flag else None
        if reason:
            raise FreezeError(f"Cannot make it trainable (trainable=True is unsupported "
                              f"here): {reason}")

    def _warn_if_nothing_trains(self) -> None:
        if self.trainable_keys or self._warned_zero_trainable:
            return
        self._warned_zero_trainable = True
        warnings.warn(
            f"HubLayer {self.name!r} is trainable but has zero trainable weights: the module "
            f"at {self.handle!r} has no variable in its trainable set ({self.trainable_source})"
            ", so fine-tuning leaves it unchanged.", HubWidgetsWarning, stacklevel=3)

    # -- construction checks ----------------------------------------------------------------
    def _check_output_arguments(self) -> None:
        if self.signature and (self.output_key is not None) == self.signature_outputs_as_dict:
            raise ValueError(
                "When using a signature, either output_key or signature_outputs_as_dict=True "
                f"should be set (signature={self.signature!r}, output_key={self.output_key!r}, "
                f"signature_outputs_as_dict={self.signature_outputs_as_dict})."
                + _signature_note(self._module, self.signature))
        if not self.signature and self.signature_outputs_as_dict:
            raise ValueError(
                "signature_outputs_as_dict is only valid if specifying a signature (or using a "
                "legacy TF1 Hub format). Without a signature, a module that returns a dict "
                "gives the whole dict; pass output_key= to pick one entry.")

    def _pick_function(self, module: Any) -> tuple[Any, str]:
        signatures = getattr(module, "signatures", None) or {}
        if self.signature is not None:
            if self.signature not in signatures:
                raise ValueError(
                    f"Unknown signature {self.signature!r} in {self.handle!r}: the module has no "
                    f"signature {self.signature!r}; it has {sorted(signatures) or 'none'}.")
            return signatures[self.signature], self.signature
        if callable(module):
            return module, CALL_ENDPOINT
        endpoint = getattr(module, KERAS_EXPORT_ENDPOINT, None)
        if callable(endpoint):  # a Keras 3 model.export(): TFSMLayer's default endpoint
            return endpoint, KERAS_EXPORT_ENDPOINT
        raise ValueError(
            f"The module at {self.handle!r} has no __call__ function and no 'serve' endpoint "
            f"(it may be a TF1 SavedModel or an export with only signatures). Pass "
            f"signature=..., one of {sorted(signatures) or 'none'}, with output_key=... or "
            "signature_outputs_as_dict=True; that layer can run but not be fine-tuned.")

    def _function(self) -> Any:
        """The ``tf.function`` (or concrete function) that calls run."""
        return self._fn.__call__ if self.endpoint == CALL_ENDPOINT else self._fn

    def _check_output_key_fits(self) -> None:
        """An ``output_key`` that the traced outputs cannot have is refused now (a signature,
        or a function whose every trace returns one tensor)."""
        if self.output_key is None:
            return
        outputs = _traced_outputs(self._function())
        if not outputs:
            return
        keys = [sorted(o) for o in outputs if isinstance(o, dict)]
        if not keys:
            raise ValueError(
                f"Specifying `output_key` is forbidden if output type {type(outputs[0])} is not "
                f"a dict: the {self.endpoint} of {self.handle!r} returns no dict. Leave "
                f"output_key=None (output_key={self.output_key!r}).")
        if len(keys) == len(outputs) and not any(self.output_key in k for k in keys):
            raise ValueError(
                f"HubLayer output does not contain the output key {self.output_key!r} "
                f"(available: {keys[0]}).")

    # -- running --------------------------------------------------------------------------
    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if self.trainable:  # a mutable flag (Keras may set it below the setter): checked here,
            self._check_can_train(True)  # as hub.KerasLayer does, before a signature runs
        kwargs = dict(self.arguments)
        if self.endpoint not in (CALL_ENDPOINT, KERAS_EXPORT_ENDPOINT):
            result = self._run_signature(inputs, kwargs)
        else:
            if self._takes_training:
                kwargs["training"] = bool(training) and self.trainable
            result = self._fn(inputs, **kwargs)
        if self.output_key is not None:
            if not isinstance(result, dict):
                raise ValueError(
                    f"Specifying `output_key` is forbidden if output type {type(result)} is "
                    f"not a dict (HubLayer {self.name!r}, output_key={self.output_key!r}).")
            if self.output_key not in result:
                raise ValueError(
                    f"HubLayer output does not contain the output key {self.output_key!r} "
                    f"(available: {sorted(result)}).")
            result = result[self.output_key]
        if self._declared_output_shapes is not None:
            result = self._check_output_shapes(result)
        return result

    def _run_signature(self, inputs: Any, kwargs: dict[str, Any]) -> Any:
        if isinstance(inputs, dict):
            return self._fn(**inputs, **kwargs)
        names = [n for n in self._fn.structured_input_signature[1] if n not in kwargs]
        if len(names) != 1:
            raise ValueError(
                f"The signature {self.signature!r} takes {names}; pass a dict of inputs.")
        return self._fn(**{names[0]: inputs}, **kwargs)

    def _check_output_shapes(self, result: Any) -> Any:
        def fit(tensor: Any, shape: tf.TensorShape) -> Any:
            expected = tf.TensorShape([None]).concatenate(shape)
            if not tensor.shape.is_compatible_with(expected):
                raise ValueError(f"an output of shape {tensor.shape} is not {expected}")
            return tf.ensure_shape(tensor, expected)  # what only shows at run time

        try:
            return tf.nest.map_structure(fit, result, self._declared_output_shapes,
                                         check_types=False)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"HubLayer {self.name!r}: the module's output does not match output_shape="
                f"{self.output_shape!r} (shapes without the batch dimension, nested as the "
                f"outputs): {exc}") from exc

    def _regularization_losses(self) -> list[Any]:
        """The module's regularization losses while the layer trains (else none)."""
        if not self.trainable:
            return []
        return [fn() for fn in self._regularization_fns]

    def _get_own_losses(self) -> list[Any]:
        return super()._get_own_losses() + self._regularization_losses()

    # -- shapes -----------------------------------------------------------------------------
    def compute_output_spec(self, inputs: Any, training: bool | None = None) -> Any:
        """Traces the module on placeholders: real dtypes and nesting (dicts, lists)."""
        return keras.Operation.compute_output_spec(self, inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape(s) for ``input_shape``: from ``output_shape`` when given, else
        by tracing the module with the input dtypes its signature declares."""
        if self._declared_output_shapes is not None:
            batch = _batch_dim(input_shape)
            return tf.nest.map_structure(lambda s: (batch, *s.as_list()),
                                         self._declared_output_shapes)
        spec = _input_spec(self._function(), self.endpoint)
        inputs = _keras_tensors(input_shape, spec)
        outputs = self.compute_output_spec(inputs)
        return tf.nest.map_structure(lambda t: tuple(t.shape), outputs)

    # -- saving ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        for key, value in self.arguments.items():
            try:
                json.dumps(value)
            except TypeError:
                raise ValueError(
                    f"HubLayer(..., arguments) holds a value that is not JSON-serializable under "
                    f"key {key!r}: {value!r}. Pass plain numbers, strings or lists.") from None
        config = super().get_config()
        config.update(handle=self.handle, signature=self.signature,
                      output_key=self.output_key, arguments=self.arguments,
                      frozen_variables=self.frozen_variables)
        if self.signature_outputs_as_dict:
            config["signature_outputs_as_dict"] = True
        if self._declared_output_shapes is not None:
            config["output_shape"] = self.output_shape
        if self.tags is not None:
            config["tags"] = list(self.tags) if not isinstance(self.tags, str) else self.tags
        return config  # load_options are the loading machine's business, as in hub.KerasLayer


def _variable_name(v: Any) -> str:
    name = v.name.rsplit(":", 1)[0]
    return name.replace("/", "__")


def _signature_note(module: Any, signature: str) -> str:
    """What the module's signatures are, when ``signature`` is not one of them."""
    signatures = getattr(module, "signatures", None) or {}
    if signature in signatures:
        return ""
    return (f" Also, the module has no signature {signature!r}; it has "
            f"{sorted(signatures) or 'none'}.")


def _traced_outputs(fn: Any) -> list[Any]:
    """The structured outputs of every trace of ``fn`` that TF kept (may be empty)."""
    functions = getattr(fn, "concrete_functions", None)
    if functions is None:
        functions = [fn]
    outputs = []
    for concrete in functions:
        try:
            outputs.append(concrete.structured_outputs)
        except AttributeError:
            return []
    return outputs


def _input_spec(fn: Any, endpoint: str) -> Any:
    """The nest of ``tf.TensorSpec`` that ``fn`` takes as its input (None when unknown)."""
    functions = getattr(fn, "concrete_functions", None) or [fn]
    for concrete in functions:
        signature = getattr(concrete, "structured_input_signature", None)
        if not signature:
            continue
        args, kwargs = signature
        if endpoint not in (CALL_ENDPOINT, KERAS_EXPORT_ENDPOINT):
            return kwargs if len(kwargs) != 1 else next(iter(kwargs.values()))
        if args:
            return args[0]
    return None


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list, tf.TensorShape)) and all(
        d is None or isinstance(d, int) for d in value)


def _batch_dim(input_shape: Any) -> Any:
    while not _is_shape(input_shape):
        input_shape = next(iter(input_shape.values())) if isinstance(input_shape, dict) \
            else input_shape[0]
    return tuple(input_shape)[0] if len(input_shape) else None


def _keras_tensors(input_shape: Any, spec: Any) -> Any:
    """KerasTensors of ``input_shape`` with the dtypes of ``spec`` (float32 when unknown)."""
    def dtype_of(s: Any) -> str:
        return s.dtype.name if isinstance(s, tf.TensorSpec) else "float32"

    if isinstance(input_shape, dict):
        specs = spec if isinstance(spec, dict) else {}
        return {k: keras.KerasTensor(tuple(s), dtype=dtype_of(specs.get(k)))
                for k, s in input_shape.items()}
    return keras.KerasTensor(tuple(input_shape), dtype=dtype_of(spec))
