"""The weights a layer really computes with: ``effective_weights(model, path)``.

A quantized layer stores codes and scales, a LoRA layer a frozen base and two factors; what
its forward pass multiplies by is neither.  ``effective_weights`` gives that kernel as a
float32 numpy array, following Keras' own code step by step (``_get_kernel_with_merged_lora``'s
dequantization, then its merge):

- int8: ``codes / scale`` (EinsumDense: the scale as Keras adjusts it for dequantization);
- int4: the codes unpacked (two per byte), then ``/ scale`` per channel, or with the zero
  points of each group (``dequantize_with_sz_map``) when quantized by groups;
- float8: the float kernel cast to float8 (e4m3) with the layer's current kernel scale and back;
- LoRA: plus ``(alpha / rank) * A @ B``.

``weight_stats(..., effective=True)`` (:func:`effective_weight_stats`) gives every variable's
statistics with, for the base weight of a quantized or LoRA layer, those of the effective
kernel instead of the stored codes (the scales and adapters are listed as they are).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from .errors import HubWidgetsError
from .layer_kinds import base_weight, logical_weight_count, lora_rank, quantization_mode
from .memory_guard import ensure_fits


def effective_weights(model: Any, path: str) -> np.ndarray:
    """The kernel (an Embedding's table) the layer at ``path`` computes with, as float32:
    dequantized and with its LoRA adapters merged.  ``path`` is a layer, or its base
    variable (``.../kernel``).  A layer that is neither quantized nor LoRA gives its kernel."""
    from .inspect import inspect
    from .matching import node_of_variable

    tree = inspect(model)
    try:
        node = tree.find(path)
    except KeyError:
        try:
            node = node_of_variable(tree, path)
        except (KeyError, StopIteration):
            raise HubWidgetsError(f"No layer or variable {path!r} in the model; "
                                  "hw.inspect(model) lists the paths.") from None
    layer = node.obj if node.keras_layer else None
    if layer is None or base_weight(layer) is None:
        raise HubWidgetsError(
            f"{node.path!r} ({node.class_name}) has no kernel or embedding table that "
            "effective_weights knows (it reads Dense, EinsumDense and Embedding layers and "
            "their subclasses); read its variables with hw.weight_stats instead.")
    count = logical_weight_count(layer) or int(np.prod(base_weight(layer).shape))
    ensure_fits(4 * count, f"the effective weights of {node.path!r}",
                "read the stored variables with hw.weight_stats(node), which copies nothing")
    return np.asarray(layer_effective_kernel(layer), dtype=np.float32)


def layer_effective_kernel(layer: Any) -> Any:
    """The effective kernel of one Keras 3 layer (a tensor)."""
    from keras import ops

    mode = quantization_mode(layer)
    kernel = _dequantized(layer, mode)
    if lora_rank(layer) is not None:
        a, b = _factors(layer)
        delta = (layer.lora_alpha / layer.lora_rank) * ops.matmul(a, b)
        kernel = ops.add(ops.cast(kernel, "float32"), ops.cast(delta, "float32"))
    return ops.convert_to_numpy(ops.cast(kernel, "float32"))


def _factors(layer: Any) -> tuple[Any, Any]:
    if getattr(layer, "lora_kernel_a", None) is not None:
        return layer.lora_kernel_a, layer.lora_kernel_b
    return layer.lora_embeddings_a, layer.lora_embeddings_b


def _dequantized(layer: Any, mode: str | None) -> Any:
    from keras import ops
    from keras.src import quantizers
    from keras.src.quantizers.quantizers import dequantize_with_sz_map

    base = base_weight(layer)
    embedding = base is layer.__dict__.get("_embeddings")
    scale = getattr(layer, "embeddings_scale" if embedding else "kernel_scale", None)
    if mode is None:
        return base
    if mode == "int8":
        codes = ops.cast(base, "float32")
        if embedding:
            return ops.divide(codes, ops.expand_dims(scale, -1))
        adjust = getattr(layer, "_adjust_scale_for_dequant", None)  # EinsumDense
        return ops.divide(codes, adjust(scale) if callable(adjust) else scale)
    if mode == "int4":
        columns = getattr(layer, "_int4_unpacked_column_size", None) \
            or layer._orig_output_dim
        unpacked = ops.cast(quantizers.unpack_int4(base, columns, axis=-1), "float32")
        block = getattr(layer, "_int4_block_size", None)
        zero = getattr(layer, "embeddings_zero" if embedding else "kernel_zero", None)
        if block is None or block == -1:
            kernel = ops.divide(unpacked, ops.expand_dims(scale, -1) if embedding else scale)
        else:
            kernel = dequantize_with_sz_map(unpacked, scale, zero, layer.g_idx,
                                            group_axis=-1 if embedding else 0)
        original = getattr(layer, "original_kernel_shape", None)  # EinsumDense: N-d
        return ops.reshape(kernel, original) if original is not None else kernel
    if mode == "float8":
        return quantizers.quantize_and_dequantize(base, layer.kernel_scale, "float8_e4m3fn",
                                                  "float32")
    raise HubWidgetsError(
        f"The layer {layer.name!r} is quantized with {mode!r}, which effective_weights does "
        "not read yet (int8, int4 and float8 it does); its stored variables are shown as they "
        "are.")


def effective_weight_stats(target: Any, bins: int, value_range: tuple[float, float] | None,
                           reduce: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """``reduce`` (:func:`hubwidgets.weight_stats`, which passes itself) of ``target``,
    where the base weight of each quantized or LoRA layer is replaced by the statistics of
    its effective kernel (same path; dtype float32 and the kernel's logical shape).  Finds
    those layers from Keras' own layer list, without walking the tree."""
    import tensorflow as tf

    results = reduce(target, bins=bins, value_range=value_range)
    infos = _variable_infos(target)
    if not infos:
        return results
    tree = infos[0]._tree
    if tree is None:
        return results
    special = _special_bases_of(tree)
    for info in infos:
        layer = special.get(info.key)
        if layer is None or info.path not in results:
            continue
        ensure_fits(4 * (logical_weight_count(layer) or info.size),
                    f"the effective weights of {layer.name!r}",
                    "call hw.weight_stats without effective=True")
        holder = tf.Variable(layer_effective_kernel(layer), trainable=False, name="effective")
        [stats] = reduce([holder], bins=bins, value_range=value_range).values()
        results[info.path] = replace(stats, path=info.path)
    return results


def has_special_layers(tree: Any) -> bool:
    """Whether the tree's model has a quantized or LoRA layer."""
    return bool(_special_bases_of(tree))


SPECIAL_BASES_KEY = "effective_special_bases"


def _special_bases_of(tree: Any) -> dict[int, Any]:
    """:func:`_special_bases` of the tree's model, kept in its session's cache until the
    structure changes (quantize() and enable_lora() change it)."""
    from .session import cached_for_tree

    return cached_for_tree(tree, SPECIAL_BASES_KEY, lambda: _special_bases(tree.obj))


def _variable_infos(target: Any) -> list[Any]:
    """The VariableInfos ``target`` names (a model, tree, node, VariableInfo or a list)."""
    from .inspect import inspect
    from .tree import ModelTree, Node, VariableInfo

    if isinstance(target, VariableInfo):
        return [target]
    if isinstance(target, Node):
        return target.all_variables()
    if isinstance(target, ModelTree):
        return target.variables()
    if isinstance(target, (list, tuple)):
        return [v for item in target for v in _variable_infos(item)
                if isinstance(item, (VariableInfo, Node, ModelTree))]
    try:
        return inspect(target).variables()
    except Exception:  # noqa: BLE001 - a bare variable: nothing to replace
        return []


def _special_bases(model: Any) -> dict[int, Any]:
    """variable key of the base weight -> its layer, for every quantized or LoRA layer."""
    from .adapters.common import variable_key

    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return {}
    out = {}
    for layer in flatten(include_self=True, recursive=True):
        if lora_rank(layer) is None and quantization_mode(layer) is None:
            continue
        base = base_weight(layer)
        if base is not None:
            out[variable_key(base)] = layer
    return out
