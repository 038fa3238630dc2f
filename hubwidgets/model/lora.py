"""LoRA adapters and quantized layers (Keras 3), read from the live layer.

``layer.enable_lora(rank)`` freezes the layer's base kernel (``_kernel``, an Embedding's
``_embeddings``) and adds two trainable factors (``lora_kernel_a`` / ``lora_kernel_b``, an
Embedding's ``lora_embeddings_a`` / ``_b``).  Keras' own ``layer.trainable = True`` makes that
base kernel trainable again, which silently turns LoRA into full fine-tuning: every trainable
change hubwidgets makes ends with :func:`keep_lora_bases_frozen`, so a base kernel trains only
when the user named that variable (remembered on the layer, so freeze then unfreeze of any
scope gives back what was there).

``model.quantize(mode)`` stores integer codes (int8; int4 packed two per byte) with scales;
no gradient ever changes an integer variable.  ``layer.quantization_mode`` says which mode.

Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

from typing import Any, Iterable

from .adapters.common import short_name, variable_key
from .layer_bookkeeping import LayerBook
from .layer_kinds import base_weight, is_integer_variable, lora_rank, quantization_mode

__all__ = ["lora_rank", "quantization_mode", "is_integer_variable", "keep_lora_bases_frozen"]


def lora_base_variable(layer: Any) -> Any | None:
    """The base weight that ``enable_lora`` froze (``_kernel``, an Embedding's
    ``_embeddings``), None when the layer has no adapters."""
    if lora_rank(layer) is None:
        return None
    return base_weight(layer)


def quantized_reason(layer: Any, v: Any) -> str | None:
    """Why the variable ``v`` of a quantized layer never trains (integer codes, or the
    scales that go with them), else None."""
    mode = quantization_mode(layer)
    if mode is None or getattr(v, "trainable", False):
        return None
    name = short_name(v)
    if is_integer_variable(v):
        return (f"{name!r} holds the {mode} codes of a quantized layer: integers, which no "
                "gradient can change (quantized kernels are frozen by design; train LoRA "
                "adapters on top: hubwidgets.enable_lora)")
    return (f"{name!r} belongs to the {mode} quantization of the layer (a scale, zero point or "
            "group index): it is fixed when the layer is quantized and no gradient changes it")


def lora_layers(root: Any) -> Iterable[Any]:
    """Every Keras 3 layer below ``root`` (itself included) with LoRA adapters."""
    flatten = getattr(root, "_flatten_layers", None)
    if flatten is None:
        return []
    try:
        layers = list(flatten(include_self=True, recursive=True))
    except TypeError:
        return []
    return [layer for layer in layers if getattr(layer, "lora_enabled", False)]


def base_trains(book: LayerBook, layer: Any) -> bool:
    """Whether the user unfroze this LoRA layer's base kernel by name (``book``: the model
    session's layer notes)."""
    notes = book.get(layer)
    return notes is not None and notes.lora_base_trains


def keep_lora_bases_frozen(root: Any, book: LayerBook | None = None) -> list[Any]:
    """Freeze again every LoRA base kernel below ``root`` that a layer-level change made
    trainable (Keras' ``layer.trainable = True`` does), unless the user unfroze that
    variable by name (recorded in ``book``).  Returns the LoRA layers whose base stays
    frozen."""
    book = book if book is not None else LayerBook()
    kept = []
    for layer in lora_layers(root):
        base = lora_base_variable(layer)
        if base is None or base_trains(book, layer):
            continue
        if base.trainable:
            base.trainable = False
        kept.append(layer)
    return kept


def remember_named_base(book: LayerBook, layer: Any, keys: set[int], flag: bool) -> None:
    """Record in ``book`` that the user froze or unfroze a LoRA base kernel by naming it
    (``keys``: the variables named)."""
    base = lora_base_variable(layer)
    if base is not None and variable_key(base) in keys:
        book.of(layer).lora_base_trains = flag


def frozen_bases_in(layers: Iterable[Any]) -> list[Any]:
    """The LoRA layers among ``layers`` (each a Keras layer, searched below) whose base
    kernel is frozen now."""
    out: list[Any] = []
    seen: set[int] = set()
    for top in layers:
        for layer in lora_layers(top):
            base = lora_base_variable(layer)
            if id(layer) not in seen and base is not None and not base.trainable:
                seen.add(id(layer))
                out.append(layer)
    return out


def lora_freeze_message(layers: list[Any]) -> str:
    """What the user is told when an unfreeze left LoRA base kernels frozen."""
    if not layers:
        return ""
    names = ", ".join(repr(layer.name) for layer in layers[:4]) + (", ..." if len(layers) > 4
                                                                    else "")
    return (f"LoRA: the base kernels of {len(layers)} layer(s) with adapters ({names}) stay "
            "frozen; only their adapters (lora_*_a, lora_*_b) train. To train a base kernel "
            "too, unfreeze that variable by its path.")


def lora_refreeze_code(accessor: str) -> str:
    """Plain Keras that freezes again the LoRA base kernels below the layer ``accessor``
    (Keras' ``trainable = True`` has just made them trainable)."""
    return (f"for layer in {accessor}._flatten_layers():  # LoRA: keep each base kernel frozen\n"
            "    if getattr(layer, 'lora_enabled', False):  # (trainable = True unfroze it)\n"
            "        base = layer._kernel if hasattr(layer, '_kernel') else layer._embeddings\n"
            "        base.trainable = False")


# -- freeze then unfreeze of a scope with LoRA adapters gives back what was there ------------
def remember_before_freeze(book: LayerBook, layer: Any) -> None:
    """Before ``layer`` (a scope holding LoRA adapters) is frozen whole, keep its layers' and
    variables' trainable flags in ``book``, so unfreezing the same scope gives them back (after
    ``backbone.enable_lora`` only the adapters train; a round trip must not train the rest)."""
    if not lora_layers(layer):
        return
    if not any(v.trainable for v in layer.weights):
        forget_before_freeze(book, layer)
        return
    book.of(layer).flags_before_freeze = keras3_flags(layer)


def keras3_flags(layer: Any) -> tuple[list[tuple[Any, bool]], list[tuple[Any, bool]]]:
    """Every trainable flag below a Keras 3 layer (itself included): its layers' and its
    variables' (for :func:`put_back_flags`)."""
    layers = list(layer._flatten_layers(include_self=True, recursive=True))  # noqa: SLF001
    return ([(sub, bool(sub.trainable)) for sub in layers],
            [(v, bool(v.trainable)) for v in layer.weights])


def put_back_flags(kept: tuple[list[tuple[Any, bool]], list[tuple[Any, bool]]]) -> None:
    """Set the flags :func:`keras3_flags` read: layers first (Keras' setter passes a layer's
    flag down to its variables), then each variable."""
    layer_flags, variable_flags = kept
    for sub, flag in layer_flags:
        sub.trainable = flag
    for v, flag in variable_flags:
        v.trainable = flag


def restore_after_unfreeze(book: LayerBook, layer: Any) -> bool:
    """After ``layer`` was unfrozen whole: when it was frozen whole by hubwidgets with LoRA
    adapters inside, and nothing below it changed since, put back every flag it had before
    (True); else False."""
    notes = book.get(layer)
    kept = notes.flags_before_freeze if notes is not None else None
    if kept is None:
        return False
    notes.flags_before_freeze = None  # type: ignore[union-attr]
    put_back_flags(kept)
    return True


def still_frozen_whole(layer: Any) -> bool:
    """Whether every layer below ``layer`` (itself included) is frozen: what a freeze left."""
    return all(not sub.trainable for sub in layer._flatten_layers(include_self=True,  # noqa: SLF001
                                                                  recursive=True))


def forget_before_freeze(book: LayerBook, layer: Any) -> None:
    """Drop what :func:`remember_before_freeze` kept (the scope changed in between)."""
    notes = book.get(layer)
    if notes is not None:
        notes.flags_before_freeze = None


def will_restore(book: LayerBook, layer: Any) -> bool:
    """Whether unfreezing ``layer`` now gives back the flags a freeze of it kept."""
    notes = book.get(layer)
    return notes is not None and notes.flags_before_freeze is not None \
        and still_frozen_whole(layer)


def quantized_layers(root: Any) -> list[Any]:
    """The layers below ``root`` (itself included) that hold quantized weights."""
    flatten = getattr(root, "_flatten_layers", None)
    if flatten is None:
        return []
    return [layer for layer in flatten(include_self=True, recursive=True)
            if quantization_mode(layer) is not None]


def unfreeze_message(layer: Any) -> str:
    """What unfreezing ``layer`` left frozen on purpose: LoRA base kernels, integer codes."""
    parts = [lora_freeze_message(frozen_bases_in([layer]))]
    integer = [q for q in quantized_layers(layer)
               if any(is_integer_variable(v) for v in q.weights)]
    if integer:
        modes = sorted({quantization_mode(q) for q in integer})
        parts.append(f"{len(integer)} quantized layer(s) ({', '.join(modes)}) keep their integer "
                     "codes frozen: no gradient can change an integer (train LoRA adapters on "
                     "them instead).")
    return " ".join(p for p in parts if p)
