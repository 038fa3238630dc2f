"""The text rendering of a :class:`~hubwidgets.model.tree.ModelTree` (``ModelTree.summary()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .formatting import format_bytes, format_shape, trainable_label

if TYPE_CHECKING:
    from .tree import ModelTree, Node

__all__ = ["render_summary", "format_bytes"]

HEADERS = ("Name", "Class", "Output shape", "Own params", "Total params", "Status")


def _status(node: "Node") -> str:
    label = trainable_label(node.trainable)
    return label + (" (shared)" if node.shared else "")


def _rows(tree: "ModelTree", max_depth: int | None) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []

    def visit(node: "Node", depth: int) -> None:
        rows.append((
            "  " * depth + node.name,
            node.class_name,
            format_shape(node.output_shape),
            f"{node.own_params:,}",
            f"{node.params:,}",
            _status(node),
        ))
        for note in node.notes:
            rows.append(("  " * (depth + 1) + "note: " + note, "", "", "", "", ""))
        if max_depth is None or depth < max_depth:
            for child in node.children:
                visit(child, depth + 1)

    visit(tree.root, 0)
    return rows


def render_summary(tree: "ModelTree", max_depth: int | None = None) -> str:
    """Render the table, the totals and the signatures of ``tree``."""
    rows = _rows(tree, max_depth)
    table = [HEADERS, *rows]
    note_rows = {i for i, r in enumerate(table) if r[0].lstrip().startswith("note: ")}
    widths = [max(len(r[c]) for i, r in enumerate(table) if c > 0 or i not in note_rows)
              for c in range(len(HEADERS))]
    right = {3, 4}

    def line(row: tuple[str, ...], index: int) -> str:
        if index in note_rows:
            return row[0]
        cells = [cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
                 for c, cell in enumerate(row)]
        return "  ".join(cells).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    root = tree.root
    out = [f'Model: "{root.name}" ({root.class_name}, {tree.framework})', rule, line(HEADERS, 0), rule]
    out += [line(r, i + 1) for i, r in enumerate(rows)]
    out += [
        rule,
        f"Total params: {root.params:,} ({format_bytes(root.nbytes)})",
        f"Trainable params: {root.trainable_params:,}",
        f"Non-trainable params: {root.non_trainable_params:,}",
    ]
    signatures = [s for node in tree for s in node.signatures]
    if signatures:
        out.append("Signatures:")
        out += [f"  {s}" for s in signatures]
    return "\n".join(out)
