"""``hubwidgets.probe``: what a model does to one batch, layer by layer.

The model runs once, eagerly, on ``x``.  While it runs, every Keras layer of the tree (the
model itself, nested models, the layers a subclassed model reaches by its calls, a Hub layer
at its module boundary) has its ``call`` wrapped for the duration of the run only: the
wrapper reduces the layer's output as soon as it is produced (moments and histogram from
:func:`hubwidgets.model.host_stats.host_reductions`, the same engine as the weight
statistics; dead units and saturation beside it) and lets the tensor go, so at most one
activation is held on the host at a time.  Each layer's original ``call`` is put back
exactly (the instance attribute removed again) whatever happens.

Given ``y``, the run happens under a ``tf.GradientTape`` watching the variables an optimizer
step would update (``model.trainable_variables``), and the norm of each one's gradient of
the loss (the compiled loss, or ``loss``) is kept.  Nothing is applied: the weights never
change, and BatchNormalization statistics move only when ``training=True`` is asked.

Before running, the activations' size is estimated from the layers' output shapes and the
memory guard is asked (:func:`~hubwidgets.model.memory_guard.ensure_fits`): the reduction
needs a few copies of the largest activation, and a gradient run keeps every activation
until the backward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import HubWidgetsError, ProbeError, UnbuiltModelError
from .formatting import format_bytes, format_shape

__all__ = ["probe", "Probe", "ActivationStats", "ProbeError", "SATURATION"]

SATURATION = 0.97
"""|tanh| above this, or a sigmoid below ``1 - SATURATION`` or above it, counts as saturated."""

BINS = 64
"""Histogram bins of each layer's activations."""

MARKS_KEY = "probe_marks"
"""Where a view keeps :meth:`Probe.marks` in its model session's ``cache``, depending on
"values" (dropped when the weights change: the probe then no longer describes the model),
for the explorer's rows."""

_SATURATING = {"tanh": "tanh", "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid",
               "hard_tanh": "tanh", "softsign": "tanh"}


@dataclass(frozen=True)
class ActivationStats:
    """One layer's output on the probed batch, reduced.

    ``mean``/``std``/``min``/``max`` cover the finite values (NaN when there is none);
    ``nan``/``inf`` count the others; ``zero_fraction`` is the share
    of values that are exactly zero; ``dead_fraction`` the share of units (the last axis:
    a Dense unit, a convolution's channel) that are zero for every sample and position of
    the batch; ``saturated_fraction`` the share of values past :data:`SATURATION` for a
    layer whose activation is tanh-like or sigmoid-like, None for other layers.  ``counts``
    and ``edges`` are ``numpy.histogram``'s on the finite values.  ``outputs`` is how many
    tensors the layer returned (the figures are the first one's); ``calls`` how many times
    the layer ran (the figures are the first call's).
    """

    shape: tuple[int, ...]
    dtype: str
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    dead_fraction: float
    saturated_fraction: float | None
    counts: np.ndarray = field(repr=False)
    edges: np.ndarray = field(repr=False)
    nan: int = 0
    inf: int = 0
    activation: str | None = None
    outputs: int = 1
    calls: int = 1

    @property
    def size(self) -> int:
        """Number of values in the output."""
        return math.prod(self.shape)

    @property
    def nonfinite_fraction(self) -> float:
        """The share of the output that is NaN or Inf."""
        return (self.nan + self.inf) / max(self.size, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (lists for the histogram)."""
        return {"shape": list(self.shape), "dtype": self.dtype, "mean": self.mean,
                "std": self.std, "min": self.min, "max": self.max,
                "zero_fraction": self.zero_fraction, "dead_fraction": self.dead_fraction,
                "saturated_fraction": self.saturated_fraction,
                "counts": self.counts.tolist(), "edges": self.edges.tolist(),
                "nan": self.nan, "inf": self.inf, "activation": self.activation}


@dataclass
class Probe:
    """The result of :func:`probe`: per-layer :class:`ActivationStats` (``layers``, in the
    order the layers ran), and with targets, per-variable gradient norms (``gradients``:
    None where no gradient reaches a trainable variable; 0.0 for a frozen variable, whose
    path is in ``frozen``), and the ``loss`` value."""

    model: Any = field(repr=False)
    x: Any = field(repr=False)
    training: bool
    layers: dict[str, ActivationStats]
    gradients: dict[str, float | None] | None = None
    frozen: frozenset[str] = frozenset()
    loss: float | None = None
    batch: int = 0
    variable_layers: dict[str, str] = field(default_factory=dict, repr=False)
    """The path of the layer (tree node) holding each variable of ``gradients``."""
    not_reached: list[str] = field(default_factory=list)
    """Layers of the tree that did not run eagerly on this batch (unused branches, layers
    called inside a compiled function or a SavedModel's graph)."""

    def activation(self, path: str) -> np.ndarray:
        """The output of the layer at ``path`` on the probed batch, as a new numpy array.

        The model runs again (same ``x``, same ``training``) with only that layer watched;
        with ``training=True``, BatchNormalization statistics move again.
        """
        tree = _tree_of(self.model)
        target = _layer_path(tree, path, self.layers)
        kept: list[np.ndarray] = []

        all_layers = _layers_by_path(tree)
        inner = {p: fn for chain in _inner_chains(tree, all_layers).values() for p, fn in chain}
        boundary = target
        if target in inner:  # inside a Hub module: run its layers up to the target
            boundary = tree.find(target).parent.path

        def keep(_: str, out: Any, inputs: Any) -> None:
            if kept:
                return
            if boundary != target:
                value = inputs
                for path, fn in _inner_chains(tree, all_layers)[boundary]:
                    value = _call_restored(fn, value)
                    if path == target:
                        out = value
                        break
            kept.append(np.array(_tensors(out)[0].numpy(), copy=True))

        layers = {p: obj for p, obj in all_layers.items() if p == boundary}
        _run_hooked(self.model, self.x, layers, keep, self.training)
        if not kept:
            raise ProbeError(f"The layer {target!r} did not run eagerly on this batch.")
        return kept[0]

    def dead_layers(self, threshold: float = 0.5) -> list[str]:
        """Paths of the layers with at least ``threshold`` of their units dead."""
        return [p for p, s in self.layers.items() if s.dead_fraction >= threshold]

    def saturated_layers(self, threshold: float = 0.5) -> list[str]:
        """Paths of the layers with at least ``threshold`` of their values saturated."""
        return [p for p, s in self.layers.items()
                if s.saturated_fraction is not None and s.saturated_fraction >= threshold]

    def marks(self, threshold: float = 0.5) -> dict[str, list[str]]:
        """Per layer path, its badges: ``"dead 67%"`` when at least ``threshold`` of its
        units are dead, ``"saturated 80%"`` likewise, and ``"NaN/Inf 100%"`` for any layer
        whose output holds NaN or Inf."""
        out: dict[str, list[str]] = {}
        for path, s in self.layers.items():
            if s.dead_fraction >= threshold:
                out.setdefault(path, []).append(f"dead {s.dead_fraction:.0%}")
            if s.saturated_fraction is not None and s.saturated_fraction >= threshold:
                out.setdefault(path, []).append(f"saturated {s.saturated_fraction:.0%}")
            if s.nan + s.inf:  # any: a NaN spreads to every layer after it
                out.setdefault(path, []).append(f"NaN/Inf {s.nonfinite_fraction:.0%}")
        return out

    def layer_gradients(self) -> dict[str, tuple[float | None, bool]]:
        """Per layer (the node holding the variables): the L2 norm of its variables'
        gradients together (None when none reaches it), and whether all are frozen."""
        if self.gradients is None:
            return {}
        out: dict[str, tuple[float | None, bool]] = {}
        acc: dict[str, list[float | None]] = {}
        frozen: dict[str, bool] = {}
        for path, norm in self.gradients.items():
            layer = self.variable_layers.get(path) or path.rsplit("/", 1)[0]
            acc.setdefault(layer, []).append(norm)
            frozen[layer] = frozen.get(layer, True) and path in self.frozen
        for layer, norms in acc.items():
            known = [n for n in norms if n is not None]
            total = math.sqrt(sum(n * n for n in known)) if known else None
            out[layer] = (total, frozen[layer])
        return out

    def summary(self) -> str:
        """A text table: each layer's output shape, mean, std, zeros, dead and saturated
        shares; then, with targets, the gradient norm per variable."""
        lines = [f"probe of {getattr(self.model, 'name', type(self.model).__name__)!s} on a "
                 f"batch of {self.batch}" + (" (training=True)" if self.training else "")]
        width = max([len(p) for p in self.layers] + [5])
        lines.append(f"{'layer':<{width}}  {'output':<18} {'mean':>10} {'std':>10} "
                     f"{'zeros':>6} {'dead':>6} {'satur.':>6}")
        for path, s in self.layers.items():
            sat = "-" if s.saturated_fraction is None else f"{s.saturated_fraction:.0%}"
            flag = "  DEAD" if s.dead_fraction >= 0.5 else ""
            flag += "  SATURATED" if (s.saturated_fraction or 0) >= 0.5 else ""
            flag += f"  NaN/Inf {s.nonfinite_fraction:.0%}" if s.nan + s.inf else ""
            lines.append(f"{path:<{width}}  {format_shape(s.shape):<18} {s.mean:>10.4g} "
                         f"{s.std:>10.4g} {s.zero_fraction:>6.0%} {s.dead_fraction:>6.0%} "
                         f"{sat:>6}{flag}")
        if self.not_reached:
            lines.append(f"not reached eagerly: {', '.join(self.not_reached)}")
        if self.gradients is not None:
            lines.append("")
            lines.append(f"loss {self.loss:.6g}; gradient norm per variable:")
            vwidth = max([len(p) for p in self.gradients] + [8])
            for path, norm in self.gradients.items():
                text = "no gradient" if norm is None else f"{norm:.6g}"
                mark = "  frozen" if path in self.frozen else ""
                lines.append(f"{path:<{vwidth}}  {text}{mark}")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary())


# -- the public call ---------------------------------------------------------------------------

def probe(model: Any, x: Any, y: Any = None, *, loss: Any = None,
          training: bool = False) -> Probe:
    """Run ``model`` once on the batch ``x`` and reduce every layer's output as it goes.

    With targets ``y``, also the norm of every variable's gradient of the loss: ``loss``
    (a Keras loss, its name, or ``f(y_true, y_pred)``) when given, else the model's compiled
    loss.  The weights never change; BatchNormalization statistics are updated only when
    ``training=True``.  Bad input (wrong shape or dtype, an unbuilt model, targets that do
    not fit the loss, a batch too large for memory) raises :class:`ProbeError` (or
    :class:`UnbuiltModelError`) before anything changed.
    """
    from .adapters.keras import check_built, keras_generation

    if keras_generation(model) is None:
        raise ProbeError(f"probe runs a Keras model or layer (Keras 3 or tf_keras); got a "
                         f"{type(model).__name__}. Wrap a Hub module in hubwidgets.HubLayer "
                         f"or hub.KerasLayer inside a Keras model, then probe that model.")
    check_built(model)
    if not getattr(model, "built", True):
        raise UnbuiltModelError(f"The model {model.name!r} has not been built yet. Call it "
                                f"once on a batch (`model(x[:1])`), then probe it.")
    tree = _tree_of(model)
    batch = _check_inputs(model, x)
    if y is not None:
        _check_targets(y, batch)
    loss_fn = _loss_function(model, loss) if y is not None else None
    layers = _layers_by_path(tree)
    _ensure_memory(tree, x, batch, with_gradients=y is not None)

    stats: dict[str, ActivationStats] = {}
    calls: dict[str, int] = {}

    chains = {} if training else _inner_chains(tree, layers)

    def reduce(path: str, out: Any, inputs: Any) -> None:
        calls[path] = calls.get(path, 0) + 1
        if path not in stats:
            stats[path] = _reduce_output(out, layers[path])
            if path in chains:
                stats.update(_inner_stats(chains[path], inputs, out))

    if y is None:
        _run_hooked(model, x, layers, reduce, training)
        result = Probe(model, x, training, {}, batch=batch)
    else:
        result = _run_with_gradients(model, tree, x, y, loss_fn, layers, reduce, training)
        result.batch = batch
    for path, n in calls.items():
        if n > 1:
            stats[path] = _with_calls(stats[path], n)
    rank = {node.path: i for i, node in enumerate(tree)}  # the tree's order, Hub insides too
    result.layers = {p: stats[p] for p in sorted(stats, key=lambda p: rank.get(p, len(rank)))}
    reachable = list(layers) + [p for chain in chains.values() for p, _fn in chain]
    result.not_reached = [p for p in reachable if p not in stats]
    return result


# -- inside a Hub module ---------------------------------------------------------------------

def _inner_chains(tree: Any, layers: dict[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """For each module wrapper (HubLayer, hub.KerasLayer) whose module's top-level layers
    were saved with their Keras call functions: its inner layers' paths and restored calls,
    in order.  They are run one after the other on the wrapper's input, and kept only when
    the last one gives the module's own output (a module that is not a chain of its layers
    is seen at its boundary only)."""
    chains: dict[str, list[tuple[str, Any]]] = {}
    for node in tree:
        if not node.module_wrapper or node.path not in layers:
            continue
        chain = []
        for child in node.children:
            fn = getattr(getattr(child.obj, "keras_api", None), "__call__", None)
            if fn is None or not hasattr(fn, "concrete_functions"):
                chain = []
                break
            chain.append((child.path, fn))
        if chain:
            chains[node.path] = chain
    return chains


def _call_restored(fn: Any, value: Any) -> Any:
    """A restored Keras call in inference mode (layers saved with a ``training`` argument
    take it positionally; the others take only their inputs)."""
    if any(len(c.structured_input_signature[0]) > 1 for c in fn.concrete_functions):
        return fn(value, False, None)
    return fn(value)


def _inner_stats(chain: list[tuple[str, Any]], inputs: Any,
                 module_output: Any) -> dict[str, ActivationStats]:
    import tensorflow as tf

    staged: dict[str, ActivationStats] = {}
    value = inputs
    try:
        for path, fn in chain:
            value = _call_restored(fn, tf.stop_gradient(value))
            staged[path] = _reduce_output(value, None)
    except (TypeError, ValueError, tf.errors.OpError):
        return {}
    mine, theirs = _tensors(value)[0], _tensors(module_output)[0]
    if tuple(mine.shape) != tuple(theirs.shape) or not np.allclose(
            mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6):
        return {}
    return staged


# -- the layers --------------------------------------------------------------------------------

def _tree_of(model: Any) -> Any:
    from .inspect import inspect

    return inspect(model)


def _layers_by_path(tree: Any) -> dict[str, Any]:
    """Every Keras layer of the tree, once, under its first path, in tree order."""
    seen: set[int] = set()
    out: dict[str, Any] = {}
    for node in tree:
        obj = node.obj
        if not node.keras_layer or obj is None or id(obj) in seen or not hasattr(obj, "call") \
                or type(obj).__name__ == "InputLayer":
            continue
        seen.add(id(obj))
        out[node.path] = obj
    return out


def _layer_path(tree: Any, path: str, known: dict[str, Any]) -> str:
    if not isinstance(path, str):
        raise ProbeError(f"A layer path is a string, got {type(path).__name__}.")
    if path in known:
        return path
    try:
        node = tree.find(path)
    except KeyError as e:
        raise ProbeError(f"{e.args[0]} Pass one of the probed layers' paths "
                         f"(Probe.layers' keys).") from None
    if node.path not in known:
        raise ProbeError(f"{node.path!r} is not a layer that ran on this batch. Pass one of "
                         f"the probed layers' paths (Probe.layers' keys).")
    return node.path


def _run_hooked(model: Any, x: Any, layers: dict[str, Any],
                seen: Callable[[str, Any, Any], None], training: bool, free: bool = True) -> Any:
    """``model(x, training=training)`` with ``seen(path, output, inputs)`` called as each layer of
    ``layers`` returns (eagerly only); every ``call`` is put back afterwards, exactly.

    ``free``: Keras 3 functional graphs drop each tensor once its last consumer ran (Keras
    keeps every tensor of the graph to the end of the call; a run without gradients needs
    none of them), so the run holds a few activations at a time instead of all of them."""
    saved: list[tuple[Any, str, bool, Any]] = []

    def patch(obj: Any, attr: str, value: Any) -> None:
        saved.append((obj, attr, attr in vars(obj), vars(obj).get(attr)))
        object.__setattr__(obj, attr, value)

    try:
        for path, layer in layers.items():
            patch(layer, "call", _wrapped(layer.call, path, seen))
            if free:
                for graph in _keras3_graphs(layer):
                    patch(graph, "_run_through_graph", _freeing_run(graph))
        return _call_model(model, x, training)
    finally:
        for obj, attr, own, before in reversed(saved):
            if own:
                object.__setattr__(obj, attr, before)
            else:
                object.__delattr__(obj, attr)


def _keras3_graphs(layer: Any) -> list[Any]:
    """The Keras 3 functional graphs a layer runs (itself, a Sequential's inner Functional)."""
    from .adapters.keras import keras_generation

    if keras_generation(layer) != "Keras 3":
        return []
    found = []
    for obj in (layer, vars(layer).get("_functional")):
        if obj is not None and hasattr(obj, "_nodes_by_depth") \
                and hasattr(obj, "_run_through_graph") and obj not in found:
            found.append(obj)
    return found


def _freeing_run(graph: Any) -> Callable[..., Any]:
    """Keras 3's ``Function._run_through_graph`` (same arguments, same result), except that
    each computed tensor is dropped as soon as the last node that reads it has run."""
    import keras

    original = graph._run_through_graph
    nodes_by_depth = graph._nodes_by_depth
    operation_of = getattr(graph, "_get_operation_for_node", lambda node: node.operation)

    def run(inputs: Any, operation_fn: Callable[[Any], Any] = lambda op: op,
            call_fn: Any = None) -> Any:
        if call_fn is not None:
            return original(inputs, operation_fn=operation_fn, call_fn=call_fn)
        order = [node for depth in sorted(nodes_by_depth, reverse=True)
                 for node in nodes_by_depth[depth] if node.operation and not node.is_input]
        uses: dict[int, int] = {}
        for node in order:
            for t in node.input_tensors:
                uses[id(t)] = uses.get(id(t), 0) + 1
        for t in graph.outputs:
            uses[id(t)] = uses.get(id(t), 0) + 1
        tensors = {id(ref): value for ref, value in zip(graph.inputs, keras.tree.flatten(inputs))}
        for node in order:
            if any(id(t) not in tensors for t in node.input_tensors):
                continue  # not computable from these inputs (as Keras skips it)
            args, kwargs = node.arguments.fill_in(tensors)
            outputs = operation_fn(operation_of(node))(*args, **kwargs)
            del args, kwargs
            for ref, value in zip(node.outputs, keras.tree.flatten(outputs)):
                if uses.get(id(ref), 0):
                    tensors[id(ref)] = value
            del outputs
            for t in node.input_tensors:
                uses[id(t)] -= 1
                if uses[id(t)] == 0:
                    tensors.pop(id(t), None)
        missing = [i for i, ref in enumerate(graph.outputs) if id(ref) not in tensors]
        if missing:
            return original(inputs, operation_fn=operation_fn)  # Keras says what is wrong
        return keras.tree.pack_sequence_as(graph._outputs_struct,
                                           [tensors[id(ref)] for ref in graph.outputs])

    return run


def _wrapped(original: Callable[..., Any], path: str,
             seen: Callable[[str, Any, Any], None]) -> Callable[..., Any]:
    import functools

    import tensorflow as tf

    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        if tf.executing_eagerly() and all(hasattr(t, "numpy") for t in _tensors(out)):
            seen(path, out, args[0] if args else next(iter(kwargs.values()), None))
        return out

    return call


def _call_model(model: Any, x: Any, training: bool) -> Any:
    try:
        return model(x, training=training)
    except HubWidgetsError:
        raise
    except Exception as e:  # noqa: BLE001 - a model's own complaint, said with the fix
        raise ProbeError(f"The model could not run on this input: {_first_line(e)} Pass a "
                         f"batch shaped and typed like the model's input "
                         f"{_expected_inputs(model)}; nothing was changed.") from e


def _tensors(out: Any) -> list[Any]:
    import tensorflow as tf

    flat = tf.nest.flatten(out)
    return [t for t in flat if hasattr(t, "shape") and hasattr(t, "dtype")] or [out]


def _activation_name(layer: Any) -> str | None:
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", None) or (fn if isinstance(fn, str) else None)
    if name is None and type(layer).__name__ in ("Activation",):
        name = getattr(layer, "activation", None)
    return name if isinstance(name, str) else None


def _reduce_output(out: Any, layer: Any) -> ActivationStats:
    from .host_stats import host_reductions

    tensors = _tensors(out)
    value = np.asarray(tensors[0].numpy())
    dtype = str(value.dtype)
    if value.dtype.kind not in "biuf":
        value = value.astype(np.float32) if value.dtype.kind == "V" or "bfloat" in dtype \
            else np.zeros(value.shape, np.float32)
    flat = np.ascontiguousarray(value).reshape(-1)
    [r] = host_reductions([flat], BINS, None)
    assert r is not None
    size = max(flat.size, 1)
    if value.ndim >= 2 and value.shape[-1] > 0:
        by_unit = value.reshape(-1, value.shape[-1])
        dead = float(np.count_nonzero(~np.any(by_unit != 0, axis=0))) / value.shape[-1]
    else:
        dead = float(not np.any(value != 0)) if value.size else 0.0
    activation = _activation_name(layer)
    kind = _SATURATING.get(activation or "")
    saturated = None
    if kind == "tanh":
        saturated = float(np.count_nonzero(np.abs(flat) > SATURATION)) / size
    elif kind == "sigmoid":
        saturated = float(np.count_nonzero((flat < 1 - SATURATION) | (flat > SATURATION))) / size
    finite = flat.size - int(r.nan) - int(r.inf)
    nothing = math.nan  # no finite value: no figure (not 0, and not the empty min/max +-inf)
    return ActivationStats(
        shape=tuple(int(d) for d in value.shape), dtype=dtype,
        mean=float(r.mean) if finite else nothing, std=float(r.std) if finite else nothing,
        min=float(r.min) if finite else nothing, max=float(r.max) if finite else nothing,
        zero_fraction=r.zeros / size, dead_fraction=dead,
        saturated_fraction=saturated, counts=np.asarray(r.counts), edges=np.asarray(r.edges),
        nan=int(r.nan), inf=int(r.inf), activation=activation, outputs=len(tensors))


def _with_calls(s: ActivationStats, n: int) -> ActivationStats:
    from dataclasses import replace

    return replace(s, calls=n)


# -- checks before running ---------------------------------------------------------------------

def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return first if len(first) < 300 else first[:300] + "..."


def _input_specs(model: Any) -> list[tuple[tuple[Any, ...], str]] | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return [(tuple(t.shape), str(getattr(t.dtype, "name", t.dtype))) for t in inputs]


def _expected_inputs(model: Any) -> str:
    specs = _input_specs(model)
    if not specs:
        return "(the shape it was built for)"
    text = ", ".join(f"{format_shape(s)} {d}" for s, d in specs)
    return f"({text})"


def _arrays(value: Any) -> list[Any]:
    import tensorflow as tf

    return [a for a in tf.nest.flatten(value)]


def _check_inputs(model: Any, x: Any) -> int:
    """The batch size, after checking ``x`` against the model's declared inputs."""
    items = _arrays(x)
    if not items or any(not hasattr(a, "shape") for a in items):
        raise ProbeError(f"x must be a numpy array or tensor (or a list/dict of them, one per "
                         f"model input), got {type(x).__name__}. Pass a batch shaped like "
                         f"{_expected_inputs(model)}.")
    shapes = [tuple(a.shape) for a in items]
    if any(len(s) == 0 for s in shapes):
        raise ProbeError(f"x has no batch axis (shape {shapes[0]}). Pass a batch: x[None] "
                         f"for one sample, shaped like {_expected_inputs(model)}.")
    batch = int(shapes[0][0])
    if any(int(s[0]) != batch for s in shapes):
        raise ProbeError(f"The inputs have different batch sizes {[s[0] for s in shapes]}; "
                         f"pass the same number of samples to every input.")
    if batch == 0:
        raise ProbeError("x is an empty batch; pass at least one sample.")
    specs = None if isinstance(x, dict) else _input_specs(model)  # a dict: Keras matches names
    if specs is not None:
        if len(specs) != len(items):
            raise ProbeError(f"The model takes {len(specs)} input(s) {_expected_inputs(model)}, "
                             f"x holds {len(items)}. Pass one array per input, in order.")
        for i, ((want, dtype), got, a) in enumerate(zip(specs, shapes, items)):
            if len(want) != len(got) or any(w is not None and w != g
                                            for w, g in zip(want[1:], got[1:])):
                raise ProbeError(f"Input {i} has shape {format_shape(got)}, the model expects "
                                 f"{format_shape(want)}. Pass a batch of that shape (reshape "
                                 f"or resize x; nothing was run).")
            got_kind = np.dtype(getattr(a.dtype, "as_numpy_dtype", a.dtype)).kind
            numeric = got_kind in "biuf"
            wants_string = dtype == "string"
            if numeric == wants_string:
                raise ProbeError(f"Input {i} has dtype {a.dtype}, the model expects {dtype}. "
                                 f"Pass x with that dtype (x.astype(...)); nothing was run.")
    return batch


def _check_targets(y: Any, batch: int) -> None:
    items = _arrays(y)
    if not items or any(not hasattr(a, "shape") or len(a.shape) == 0 for a in items):
        raise ProbeError(f"y must hold arrays with a batch axis (one per model output), got "
                         f"{type(y).__name__}. Pass targets with {batch} samples.")
    for a in items:
        if int(a.shape[0]) != batch:
            raise ProbeError(f"y has {a.shape[0]} samples and x {batch}; pass one target per "
                             f"sample of x.")


def _loss_function(model: Any, loss: Any) -> Callable[[Any, Any, Any], Any]:
    """``f(x, y, y_pred) -> scalar loss``."""
    import tensorflow as tf

    from .adapters.keras import keras_generation

    keras3 = keras_generation(model) == "Keras 3"
    if loss is not None:
        if keras3:
            import keras

            losses = keras.losses
        else:
            import tf_keras

            losses = tf_keras.losses
        try:
            fn = losses.get(loss) if isinstance(loss, (str, dict)) else loss
        except ValueError as e:
            raise ProbeError(f"Unknown loss {loss!r} ({_first_line(e)}). Pass a Keras loss, "
                             f"its name (\"mse\"), or a function f(y_true, y_pred).") from None
        if not callable(fn):
            raise ProbeError(f"loss must be a Keras loss, its name or a function f(y_true, "
                             f"y_pred); got {type(loss).__name__}.")
        return lambda x, y, y_pred: tf.reduce_mean(fn(y, y_pred))
    if keras3 and getattr(model, "_compile_loss", None) is not None:
        return lambda x, y, y_pred: model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
    compiled = getattr(model, "compiled_loss", None)
    if not keras3 and compiled is not None:
        return lambda x, y, y_pred: compiled(y, y_pred, regularization_losses=model.losses)
    raise ProbeError("The model has no compiled loss, so the gradients of which loss? Pass "
                     "loss=... (a Keras loss, its name like \"mse\", or f(y_true, y_pred)), "
                     "or compile the model with one.")


def _dtype_bytes(dtype: Any) -> int:
    try:
        return max(np.dtype(str(getattr(dtype, "name", dtype))).itemsize, 1)
    except TypeError:
        return 4


def _elements(shape: Any, batch: int) -> list[int]:
    """Per output tensor, its number of values for ``batch`` samples (unknown sizes: 0)."""
    if shape is None:
        return []
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [n for s in shape for n in _elements(s, batch)]
    if not isinstance(shape, (list, tuple)) or not shape:
        return []
    dims = list(shape)
    if dims[0] is None:
        dims[0] = batch
    if any(d is None for d in dims):
        return [0]
    return [math.prod(int(d) for d in dims)]


def activation_bytes(tree: Any, batch: int, itemsize: int = 4) -> tuple[int, int]:
    """(largest, total) bytes of the layers' outputs for ``batch`` samples, from the output
    shapes the tree knows (0 where none is known)."""
    largest = total = 0
    seen: set[int] = set()
    for node in tree:
        if not node.keras_layer or id(node.obj) in seen:
            continue
        seen.add(id(node.obj))
        for n in _elements(node.output_shape, batch):
            largest = max(largest, n * itemsize)
            total += n * itemsize
    return largest, total


def _ensure_memory(tree: Any, x: Any, batch: int, with_gradients: bool) -> None:
    from .memory_guard import ensure_fits

    items = _arrays(x)
    input_bytes = sum(int(np.prod(a.shape)) * _dtype_bytes(a.dtype) for a in items)
    largest, total = activation_bytes(tree, batch)
    largest = max(largest, input_bytes)
    # the reduction's own copies (the value, a float64 block, masks) beside the model's run
    needed = 3 * largest + (total if with_gradients else 2 * largest)
    per_sample = max(needed // max(batch, 1), 1)
    fits = max(1, (batch * 3) // 4)
    ensure_fits(needed, f"probing a batch of {batch} (activations: largest "
                f"{format_bytes(largest)}, all {format_bytes(total)})",
                f"pass fewer samples, e.g. x[:{fits}] (about {format_bytes(per_sample)} "
                f"per sample)")


# -- gradients ---------------------------------------------------------------------------------

def _loss_metrics(model: Any) -> list[Any]:
    """Metrics a loss computation may update (loss trackers, per-output loss metrics)."""
    found: dict[int, Any] = {}
    holders = list(getattr(model, "metrics", []) or [])
    for attr in ("_compile_loss", "compiled_loss"):
        holder = getattr(model, attr, None)
        holders += list(getattr(holder, "metrics", []) or [])
    for m in holders:
        found.setdefault(id(m), m)
    return list(found.values())


def _restore_metrics(model: Any, before: dict[int, Any]) -> None:
    """Put every loss metric back as it was; one made during the run (a compiled loss
    builds its per-output metrics on first use) back to its initial state."""
    for m in _loss_metrics(model):
        if id(m) not in before:
            m.reset_state()
            continue
        for v, value in zip(m.variables, before[id(m)]):
            v.assign(value)


def _run_with_gradients(model: Any, tree: Any, x: Any, y: Any,
                        loss_fn: Callable[[Any, Any, Any], Any], layers: dict[str, Any],
                        reduce: Callable[[str, Any], None], training: bool) -> Probe:
    import tensorflow as tf

    from .adapters.common import variable_key
    from .host_stats import host_reductions

    trainable = list(model.trainable_variables)
    train_keys = {variable_key(v) for v in trainable}
    metrics = {id(m): [v.numpy() for v in m.variables] for m in _loss_metrics(model)}
    try:
        with tf.GradientTape() as tape:
            y_pred = _run_hooked(model, x, layers, reduce, training, free=False)
            try:
                targets = tf.nest.map_structure(tf.convert_to_tensor, y)
                value = loss_fn(x, targets, y_pred)
                value = tf.convert_to_tensor(value)
                if len(value.shape):
                    value = tf.reduce_mean(value)
            except HubWidgetsError:
                raise
            except Exception as e:  # noqa: BLE001 - the loss's complaint, said with the fix
                shapes = [format_shape(tuple(t.shape)) for t in tf.nest.flatten(y_pred)]
                got = [format_shape(tuple(a.shape)) for a in _arrays(y)]
                raise ProbeError(f"The targets do not fit the loss: {_first_line(e)} The model "
                                 f"outputs {', '.join(shapes)}; y holds {', '.join(got)}. "
                                 f"Pass y shaped for that output and loss (class indices for "
                                 f"a sparse loss, one-hot rows for a categorical one); "
                                 f"nothing was changed.") from e
        grads = tape.gradient(value, trainable,
                              unconnected_gradients=tf.UnconnectedGradients.NONE)
    finally:
        _restore_metrics(model, metrics)
    by_key: dict[int, float | None] = {}
    for v, g in zip(trainable, grads):
        if g is None:
            by_key[variable_key(v)] = None
            continue
        if isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        flat = np.ascontiguousarray(np.asarray(g.numpy(), dtype=np.float64)).reshape(-1)
        [r] = host_reductions([flat], 1, None)
        by_key[variable_key(v)] = float(r.l2) if r is not None and r.l2 is not None else None
    gradients: dict[str, float | None] = {}
    frozen: set[str] = set()
    owners: dict[str, str] = {}
    for node in tree:
        for info in node.variables:
            owners.setdefault(info.path, node.path)
    for info in tree.variables():
        if info.key in train_keys:
            gradients[info.path] = by_key.get(info.key)
        else:
            gradients[info.path] = 0.0
            frozen.add(info.path)
    return Probe(model, x, training, {}, gradients=gradients, frozen=frozenset(frozen),
                 loss=float(value.numpy()), variable_layers=owners)
