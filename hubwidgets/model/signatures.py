"""Signatures of restored SavedModels and the op census of their graphs.

:func:`op_census` counts the op types of a signature's graph: the last-resort view of a
module that has no layer structure.
"""

from __future__ import annotations

from typing import Any

from dataclasses import dataclass

from .errors import NotAModelError, NotFoundError
from .formatting import dtype_name, format_shape, shape_tuple

@dataclass(frozen=True)
class TensorSpecInfo:
    """One input or output of a signature."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype} {format_shape(self.shape)}"


@dataclass(frozen=True)
class SignatureInfo:
    """A SavedModel signature (or a restored function) with its inputs and outputs."""

    name: str
    inputs: tuple[TensorSpecInfo, ...]
    outputs: tuple[TensorSpecInfo, ...]

    def __str__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return f"{self.name}({ins}) -> {outs}"


def _spec_info(name: str, spec: Any) -> TensorSpecInfo:
    shape = getattr(spec, "shape", None)
    rank_known = shape is not None and getattr(shape, "rank", 0) is not None
    return TensorSpecInfo(name=name, dtype=dtype_name(getattr(spec, "dtype", "?")),
                          shape=shape_tuple(shape) if rank_known else None)


def _flat_specs(structure: Any, prefix: str) -> list[TensorSpecInfo]:
    import tensorflow as tf

    if isinstance(structure, dict):
        return [s for k in sorted(structure) for s in _flat_specs(structure[k], str(k))]
    if isinstance(structure, (list, tuple)):
        if len(structure) == 1:
            return _flat_specs(structure[0], prefix)
        return [s for i, x in enumerate(structure) for s in _flat_specs(x, f"{prefix}_{i}")]
    if isinstance(structure, (tf.TensorSpec, tf.Tensor)) or hasattr(structure, "dtype"):
        name = getattr(structure, "name", None) if isinstance(structure, tf.TensorSpec) else None
        return [_spec_info(name or prefix, structure)]
    return []


def _signature(name: str, fn: Any) -> SignatureInfo:
    args, kwargs = fn.structured_input_signature
    inputs = _flat_specs(list(args), "input") + _flat_specs(dict(kwargs), "input")
    outputs = _flat_specs(fn.structured_outputs, "output")
    return SignatureInfo(name=name, inputs=tuple(inputs), outputs=tuple(outputs))


def signatures_of(obj: Any) -> list[SignatureInfo]:
    """The SavedModel signatures of ``obj`` and, when it has none, its restored ``__call__``."""
    out: list[SignatureInfo] = []
    sigs = getattr(obj, "signatures", None)
    if sigs is not None and hasattr(sigs, "items"):
        for name, fn in sorted(sigs.items()):
            try:
                out.append(_signature(name, fn))
            except Exception:  # noqa: BLE001 - a signature we cannot describe is skipped
                continue
    if not out:
        for fn in _call_functions(obj):
            try:
                out.append(_signature("__call__", fn))
            except Exception:  # noqa: BLE001
                continue
    return out


def _call_functions(obj: Any) -> list[Any]:
    call = obj.__call__ if callable(obj) else None
    concrete = getattr(call, "concrete_functions", None)
    if concrete:
        return list(concrete)
    try:
        return list(call._list_all_concrete_functions_for_serialization())  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return []


def op_census(obj: Any, signature: str | None = None) -> dict[str, int]:
    """Count the op types in the graph of ``signature`` (default: the first signature, or
    the restored ``__call__``), including the functions that graph calls."""
    fn = _census_function(obj, signature)
    graph_def = fn.graph.as_graph_def()
    counts: dict[str, int] = {}
    for node in graph_def.node:
        counts[node.op] = counts.get(node.op, 0) + 1
    for function in graph_def.library.function:
        for node in function.node_def:
            counts[node.op] = counts.get(node.op, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _census_function(obj: Any, signature: str | None) -> Any:
    target = getattr(obj, "_func", None) or getattr(obj, "_reloaded_obj", None) or obj
    sigs = getattr(target, "signatures", None) or {}
    if signature is not None:
        if signature not in sigs:
            raise NotFoundError(f"No signature {signature!r}; this model has: {sorted(sigs) or 'none'}.")
        return sigs[signature]
    if sigs:
        return sigs[sorted(sigs)[0]]
    calls = _call_functions(target)
    if calls:
        return calls[0]
    raise NotAModelError("This object has no signatures or traced functions, so there is no "
                         "graph to count ops in. Save it with tf.saved_model.save(..., "
                         "signatures=...) or call a tf.function on it first.")
