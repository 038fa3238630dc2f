"""``hw.enable_lora(model, pattern, rank)``: LoRA adapters on the matching layers.

Each matching Keras 3 layer that supports it (Dense, EinsumDense, Embedding and their
subclasses: the layers with Keras' own ``enable_lora``) gets ``layer.enable_lora(rank)``:
Keras freezes its base kernel and adds two trainable factors (``lora_*_a`` of shape
``(inputs, rank)``, ``lora_*_b`` zeros).  A scope (a block, the model) stands for every such
layer below it.  Keras cannot remove adapters, so this cannot be undone (``hw.undo`` covers
weight edits only): everything is checked before the first layer changes.
"""

from __future__ import annotations

from typing import Any

from .errors import HubWidgetsError
from .layer_kinds import lora_rank, quantization_mode

CANNOT_UNDO = ("Keras cannot remove LoRA adapters: this cannot be undone (hw.undo covers weight "
               "edits only). Save the model first if you may want it without them.")


def lora_candidates(tree: Any, pattern: str, search: bool = False
                    ) -> tuple[list[Any], list[str]]:
    """The nodes of layers below what ``pattern`` matches (as ``hw.freeze`` matches, or with
    ``search`` as the search box does) that can take adapters, and a reason for each matching
    layer that cannot (already has them, unbuilt, float8, GPTQ)."""
    from .matching import matching_nodes, outermost, search_nodes

    try:
        nodes = outermost(search_nodes(tree, pattern)) if search \
            else matching_nodes(tree, [pattern])
    except KeyError:
        nodes = []
    if not nodes:
        raise HubWidgetsError(f"{pattern!r} matches no layer of the model; nothing changed. "
                              "hw.search(model, pattern) shows what a pattern matches.")
    found, skipped, seen = [], [], set()
    for top in nodes:
        for node in top.walk():
            layer = node.obj
            if not node.keras_layer or id(layer) in seen or node.has_children:
                continue
            seen.add(id(layer))
            if not callable(getattr(layer, "enable_lora", None)):
                continue
            reason = _cannot_take_adapters(layer)
            if reason:
                skipped.append(f"{node.path} ({reason})")
            else:
                found.append(node)
    return found, skipped


def _cannot_take_adapters(layer: Any) -> str | None:
    if lora_rank(layer) is not None:
        return f"already has rank-{lora_rank(layer)} adapters; Keras allows one set per layer"
    if not getattr(layer, "built", False):
        return "not built yet"
    mode = quantization_mode(layer)
    if mode in ("float8", "gptq", "awq"):
        return f"quantized {mode}: Keras' {mode} layers do not run LoRA adapters"
    return None


def enable_lora(model: Any, pattern: str, rank: int, *, search: bool = False) -> Any:
    """Add rank-``rank`` LoRA adapters to every layer that ``pattern`` matches (a path, a
    name or a regular expression; a scope stands for every Dense, EinsumDense and Embedding
    below it), with Keras' own ``layer.enable_lora(rank)``: the base kernel is frozen, the
    two factors train.  Cannot be undone (Keras cannot remove adapters).  ``search``: match
    as the explorer's search box does (a regular expression searched in paths and class
    names).  Returns the tree."""
    from .inspect import inspect
    from .session import existing_session

    rank = _check_rank(rank)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        raise HubWidgetsError("enable_lora changes a live model, not a file: load it first "
                              "(keras.saving.load_model(path)); nothing changed.")
    tree = inspect(model)
    found, skipped = lora_candidates(tree, pattern, search)
    if not found:
        why = ("; ".join(skipped[:5]) if skipped else
               "none of them is a Dense, EinsumDense or Embedding layer")
        raise HubWidgetsError(f"No layer matched by {pattern!r} can take LoRA adapters: {why}. "
                              "Nothing changed.")
    for node in found:
        node.obj.enable_lora(rank)
    session = existing_session(model)
    if session is not None:  # the open views show the adapters
        session.update("values")
    return inspect(model)


def _check_rank(rank: Any) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) or rank != int(rank) \
            or int(rank) < 1:
        raise HubWidgetsError(f"rank must be a whole number of 1 or more (e.g. 4 or 8), got "
                              f"{rank!r}; nothing changed.")
    return int(rank)


def enable_lora_message(nodes: list[Any], skipped: list[str], rank: int) -> str:
    """What the user is told after adapters were added."""
    names = ", ".join(n.name for n in nodes[:5]) + (", ..." if len(nodes) > 5 else "")
    text = (f"Added rank-{rank} LoRA adapters to {len(nodes)} layer(s) ({names}); their base "
            f"kernels are frozen, the adapters train. {CANNOT_UNDO}")
    if skipped:
        text += f" Left as they were: {'; '.join(skipped[:3])}" + ("..." if len(skipped) > 3
                                                                    else ".")
    return text
