"""The model's tree as nested ``<details>``/``<summary>``: collapsible without JavaScript.

Each row has the live explorer's columns (name, class, output shape, params, trainable or
frozen, notes).  The top level is open, nested models are collapsed.  Every name comes from
the model file, so every one is escaped: text, never markup.

Colours are inherited from the page (``currentColor``, transparent backgrounds), so the text
has the page's own contrast on light and dark pages, in JupyterLab, GitHub, nbviewer or a
saved page; frozen rows are marked by a ❄ and italics, never by a fainter colour.  Where a
renderer strips ``<style>`` (GitHub), the hidden separators and indents show (GitHub also
drops ``style`` attributes) and each row reads as one indented line:
``name · Class · (None, 4) · 1,234 params · frozen``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from ..model.formatting import format_bytes, format_shape, trainable_label

if TYPE_CHECKING:
    from ..model.tree import ModelTree, Node

INDENT_PX = 14  # per nesting level
EM_SPACE = "\u2003"  # the indent where a renderer drops styles
MAX_ROWS = 400  # rows listed in all (~250 KB); the rest is counted in one line per node

# Scoped to .hw-static: nothing leaks into the page.  No colour is set anywhere: the page's.
STYLE = """
.hw-static{font-family:var(--jp-ui-font-family,system-ui,-apple-system,"Segoe UI",sans-serif);
 font-size:13px;line-height:1.45;color:inherit;background:transparent;max-width:1100px}
.hw-static .hw-s-title{margin:2px 0 6px 0}
.hw-static .hw-s-sep{display:none}
.hw-static .hw-s-tree{border:1px solid currentColor;border-radius:4px;padding:2px 0;
 overflow-x:auto;font-variant-numeric:tabular-nums}
.hw-static .hw-s-row,.hw-static .hw-s-head{display:grid;
 grid-template-columns:minmax(180px,2.2fr) minmax(110px,1.2fr) minmax(110px,1.1fr) 96px 92px;
 column-gap:10px;padding:1px 8px;align-items:baseline}
.hw-static .hw-s-head{font-weight:600;border-bottom:1px solid currentColor}
.hw-static summary{cursor:pointer;list-style:none}
.hw-static summary::-webkit-details-marker{display:none}
.hw-static .hw-s-row .hw-s-name::before{content:"\\00a0\\00a0";display:inline-block;width:1em}
.hw-static details>summary .hw-s-name::before{content:"\\25B8";}
.hw-static details[open]>summary .hw-s-name::before{content:"\\25BE";}
.hw-static .hw-s-name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.hw-static .hw-s-num{text-align:right}
.hw-static .hw-s-frozen{font-style:italic}
.hw-static .hw-s-badge{border:1px solid currentColor;border-radius:3px;padding:0 3px;
 font-size:11px;white-space:nowrap}
.hw-static .hw-s-note{padding:0 8px 1px 8px;font-size:12px;font-style:italic}
.hw-static summary:focus-visible{outline:2px solid currentColor}
.hw-static figure{margin:8px 0;display:inline-block;vertical-align:top}
.hw-static figcaption{font-size:12px;margin-bottom:2px}
.hw-static svg text{font-family:inherit}
"""


def status_badge(node: "Node") -> str:
    """The row's trainable mark: ❄ frozen, ◐ mixed, nothing when all of it trains."""
    flag = node.trainable
    if flag is True:
        return ""
    label = trainable_label(flag)
    mark = "\u2744 " if flag is False else "\u25d0 "
    return f'<span class="hw-s-badge" title="{label}">{mark}{label}</span>'


def _row(node: "Node", depth: int) -> str:
    esc = html.escape
    shape = format_shape(node.output_shape) if node.output_shape is not None else ""
    badges = status_badge(node)
    if node.shared:
        badges += ' <span class="hw-s-badge">shared</span>'
    frozen = " hw-s-frozen" if node.trainable is False else ""
    sep = '<span class="hw-s-sep"> · </span>'
    return (f'<div class="hw-s-row{frozen}" data-path="{esc(node.path)}">'
            f'<span class="hw-s-name" style="padding-left:{depth * INDENT_PX}px" '
            f'title="{esc(node.path)}"><span class="hw-s-sep">{EM_SPACE * depth}</span>'
            f"{esc(node.name)}</span>{sep}"
            f'<span class="hw-s-class">{esc(node.class_name)}</span>{sep}'
            f'<span class="hw-s-shape">{esc(shape)}</span>{sep}'
            f'<span class="hw-s-num">{node.params:,}</span>'
            f'<span class="hw-s-sep"> params</span>'
            f'<span class="hw-s-status">{sep + badges if badges else ""}</span></div>')


def _notes(node: "Node", depth: int) -> str:
    pad = depth * INDENT_PX + 8 + 16
    return "".join(f'<div class="hw-s-note" style="padding-left:{pad}px">note: '
                   f"{html.escape(note)}</div>" for note in node.notes)


def _node(node: "Node", depth: int, open_: bool, out: list[str], budget: list[int]) -> None:
    """``node``'s row, and below it its children's while ``budget[0]`` rows are left (a
    model of thousands of layers keeps a static copy of a few hundred KB)."""
    budget[0] -= 1
    children = node.children if node.has_children else []
    if not children:
        out.append(_row(node, depth))
        out.append(_notes(node, depth))
        return
    out.append(f'<details class="hw-s-node"{" open" if open_ else ""}>'
               f"<summary>{_row(node, depth)}</summary>")
    out.append(_notes(node, depth))
    listed = 0
    for child in children:
        if budget[0] <= 0:
            break
        _node(child, depth + 1, False, out, budget)
        listed += 1
    if listed < len(children):
        pad = (depth + 1) * INDENT_PX + 24
        out.append(f'<div class="hw-s-note hw-s-more" style="padding-left:{pad}px">'
                   f"... and {len(children) - listed:,} more (the live explorer lists "
                   "every one)</div>")
    out.append("</details>")


def totals_html(tree: "ModelTree") -> str:
    """The totals line: name, class, framework, params, trainable, frozen, bytes (escaped)."""
    root = tree.root
    frozen = root.non_trainable_params
    return (f'<div class="hw-s-title"><b>{html.escape(root.name)}</b> '
            f"({html.escape(root.class_name)}, {html.escape(tree.framework)}) · "
            f'<span class="hw-s-total">{root.params:,}</span> params · '
            f'<span class="hw-s-trainable">{root.trainable_params:,}</span> trainable · '
            f'<span class="hw-s-nontrainable">{frozen:,}</span> non-trainable · '
            f"{format_bytes(root.nbytes)}</div>")


def tree_html(tree: "ModelTree") -> str:
    """The tree alone (with its totals line), as a fragment with its scoped style."""
    out: list[str] = [totals_html(tree), '<div class="hw-s-tree" role="tree">',
                      '<div class="hw-s-head"><span>Layer</span><span>Class</span>'
                      '<span>Output shape</span><span class="hw-s-num">Params</span>'
                      "<span>Status</span></div>"]
    _node(tree.root, 0, True, out, [MAX_ROWS])
    out.append("</div>")
    return "".join(out)


def static_tree_fragment(tree: "ModelTree") -> str:
    """``ModelTree._repr_html_``: the tree in a ``.hw-static`` block with its style."""
    return f'<div class="hw-static"><style>{STYLE}</style>{tree_html(tree)}</div>'
