"""The explorer's rows as the browser receives them (JSON-ready dicts): one per node, one per
variable, the "show more" row, and the row menu.  Plain functions of the model's tree, so
the explorer (``explorer.py``), its requests and the tests build them the same way."""

from __future__ import annotations

from typing import Any

from ..model.edit_specs import EDITS
from ..model.formatting import format_bytes, format_shape, trainable_label
from ..model.tree import Node, VariableInfo
from ..model.variable_flags import why_not_trained


def node_row(node: Node, depth: int, expanded: bool, nonfinite: set[str],
             marks: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """What one row of the explorer shows (JSON-ready); ``marks``: extra badges by path (a
    probe's dead and saturated layers)."""
    flag = node.trainable
    badges = [] if flag is True else [trainable_label(flag)]
    if nonfinite and any(v.path in nonfinite for v in node.all_variables()):
        badges.append("NaN/Inf")
    if node.shared:
        badges.append("shared")
    rank, mode = node.lora_rank, node.quantization
    if rank is not None:
        badges.append(f"LoRA r{rank}")
    if mode is not None:
        badges.append(mode)
    badges += (marks or {}).get(node.path, [])
    row = {
        "path": node.path, "name": node.name, "class_name": node.class_name,
        "output_shape": format_shape(node.output_shape) if node.output_shape is not None else "",
        "params": node.params, "trainable_params": node.trainable_params,
        "frozen_params": node.non_trainable_params, "trainable": trainable_label(flag),
        "badges": badges, "depth": depth, "has_children": node.has_children,
        "expanded": expanded, "notes": list(node.notes),
        "lora_rank": rank, "quantization": mode,
    }
    if expanded:
        row["variables"] = [variable_row(v, nonfinite) for v in node.variables]
    return row


def more_row(parent: Node, depth: int, remaining: int) -> dict[str, Any]:
    """The row that stands for children not listed yet."""
    return {"path": parent.path + "/\u2026", "more_of": parent.path, "remaining": remaining,
            "depth": depth, "name": f"{remaining:,} more", "class_name": "", "badges": []}


def variable_row(var: VariableInfo, nonfinite: set[str]) -> dict[str, Any]:
    """What one variable's row shows (JSON-ready)."""
    return {"path": var.path, "name": var.name, "shape": format_shape(var.shape),
            "dtype": var.dtype, "trainable": var.trainable, "device": var.device,
            "size": format_bytes(var.nbytes), "nonfinite": var.path in nonfinite,
            "can_train": var.can_train, "not_trained_why": why_not_trained(var),
            "params": var.size}


ROW_MENU_ACTIONS = [
    {"action": "restore_snapshot", "label": "Restore (before the first edit)", "fields": []},
    {"action": "enable_lora", "label": "LoRA\u2026", "fields": [{
        "name": "rank", "example": "4",
        "question": "Add LoRA adapters of rank (to every Dense, EinsumDense and Embedding "
                    "here; the base kernels are frozen). Keras cannot remove adapters: this "
                    "cannot be undone."}]},
]
"""The row menu's entries after the weight edits: the explorer's own row actions."""


def row_menu() -> list[dict[str, Any]]:
    """The row menu the browser draws: every edit of the table, then :data:`ROW_MENU_ACTIONS`."""
    return [spec.menu_entry() for spec in EDITS.values()] + ROW_MENU_ACTIONS
