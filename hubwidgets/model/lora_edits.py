"""How a weight edit reaches a LoRA or quantized layer (Keras 3): through its spec's
:class:`~hubwidgets.model.edit_specs.FineTunedMeaning` (the built-in meanings, and why
editing each variable alone would not do what an edit says: :mod:`.fine_tuned_edits`).

Integer codes named alone are refused with the reason; an edit whose spec gives no meaning
is refused on such a layer as a whole.  Every refusal changes nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .edit_specs import EDITS, FineTunedMeaning
from .edit_targets import variable_owners
from .errors import EditError
from .fine_tuned_edits import refuse_layer
from .layer_kinds import is_integer_variable, lora_rank, quantization_mode

Compute = Callable[[np.ndarray, Any], np.ndarray]


def special_layer(node: Any) -> bool:
    """Whether ``node`` is a Keras layer with LoRA adapters or quantized weights."""
    return bool(node is not None and node.keras_layer
                and (lora_rank(node.obj) is not None or quantization_mode(node.obj) is not None))


def fine_tuning_plan(tree: Any, action: str, nodes: list[Any], variables: list[Any],
                     compute: Compute, args: tuple[Any, ...]) -> tuple[list[Any], Compute]:
    """The variables an edit writes and what it computes for each, with LoRA and quantized
    layers given the meaning the edit's spec gives them (``EDITS[action].fine_tuned``);
    raises :class:`EditError` (nothing changed) where it gives none.  Other variables are
    left to ``compute``."""
    owners = variable_owners(tree)
    named = {v.key for n in nodes if n.class_name == "Variable" for v in n.variables}
    special = {}
    for var in variables:
        owner = owners.get(var.key)
        if special_layer(owner):
            special.setdefault(id(owner), (owner, []))[1].append(var)
    if not special:
        return variables, compute
    spec = EDITS.get(action)
    meaning: FineTunedMeaning | None = spec.fine_tuned if spec is not None else None
    overrides: dict[int, Compute] = {}
    dropped: set[int] = set()
    for owner, owned in special.values():
        explicit = [v for v in owned if v.key in named]
        for var in explicit:
            if is_integer_variable(var.variable):
                raise EditError(
                    f"{var.path!r} holds the {quantization_mode(owner.obj)} codes of a quantized "
                    f"layer: integers, which {action} cannot change honestly (a code is not a "
                    "weight: the layer computes with codes / scale). Edit the layer as a whole "
                    "(scale_weights scales its scale), or restore a snapshot; nothing changed.")
            if meaning is not None and meaning.named is not None:
                meaning.named(owner, var, overrides)
        implicit = [v for v in owned if v.key not in named]
        if not implicit:
            continue
        if meaning is None:
            refuse_layer(owner, action)
        else:
            meaning.layer(owner, implicit, args, action, overrides, dropped)
    kept = [v for v in variables if v.key not in dropped]

    def planned(old: np.ndarray, info: Any) -> np.ndarray:
        return overrides.get(info.key, compute)(old, info)
    return kept, planned


def plan_note(tree: Any, action: str, target: str) -> str:
    """What the edit did on LoRA and quantized layers, for the message: its meaning's
    ``note`` when ``target`` reached some ('' when none, or the spec gives no note)."""
    from .matching import matching_nodes

    spec = EDITS.get(action)
    note = spec.fine_tuned.note if spec is not None and spec.fine_tuned is not None else ""
    if not note:
        return ""
    try:
        nodes = matching_nodes(tree, [target])
    except KeyError:
        return ""
    layers = [n for top in nodes if top.class_name != "Variable" for n in top.walk()
              if special_layer(n)]
    if not layers:
        return ""
    names = ", ".join(n.name for n in layers[:4]) + (", ..." if len(layers) > 4 else "")
    return note.format(count=len(layers), names=names)
