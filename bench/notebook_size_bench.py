"""Bytes of a saved notebook with three dashboards (the issue's test notebook: MobileNetV2
base, frozen, with a new head, and two small models), executed by nbclient: saved with widget
state (what ``jupyter nbconvert --execute`` and "Save Widget State Automatically" write) and
without it (JupyterLab's default), and the HTML pages nbconvert makes of each.  Writes the
figure ``docs/notebook-sizes.svg``.  ``python -m bench.notebook_size_bench``
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .common import ROOT, emit

CELLS = [
    "import keras, hubwidgets as hw\n"
    "keras.utils.set_random_seed(0)\n"
    "base = keras.applications.MobileNetV2(weights=None, include_top=False,\n"
    "                                      input_shape=(224, 224, 3))\n"
    "base.trainable = False\n"
    "model = keras.Sequential([keras.Input((224, 224, 3)), base,\n"
    "    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])\n"
    "hw.explore(model)",
    "small = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name='hidden'),\n"
    "    keras.layers.Dense(4, name='out')], name='small')\n"
    "hw.explore(small)",
    "block = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8)], name='block')\n"
    "nested = keras.Sequential([keras.Input((8,)), block, keras.layers.Dense(2)], name='nested')\n"
    "hw.explore(nested)",
]
# Measured on this branch before plotly.js was shared (each FigureWidget's state carried
# plotly's 5 MB bundle), with the same notebook: the baseline of the figure.
BEFORE = {"with_state": 15_686_300}


def execute(folder: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    os.environ["PYTHONPATH"] = str(ROOT)  # the kernel imports this checkout
    NotebookClient(nb, timeout=900, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def sizes(nb, folder: Path) -> dict[str, float]:
    import nbformat
    from nbconvert import HTMLExporter

    out: dict[str, float] = {}
    without = nbformat.from_dict(nb)
    without.metadata.pop("widgets", None)
    for name, notebook in (("with_state", nb), ("without_state", without)):
        path = folder / f"{name}.ipynb"
        nbformat.write(notebook, path)
        out[f"{name}_bytes"] = path.stat().st_size
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
        out[f"{name}_html_bytes"] = len(body.encode())
    per_cell = [len(json.dumps(c["outputs"])) for c in without.cells]
    out["largest_dashboard_outputs_bytes"] = max(per_cell)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    out["plotly_js_copies"] = sum("plotly_js" in m["state"] or len(m["state"].get("_esm", ""))
                                  > 1_000_000 for m in state.values())
    return out


def figure_svg(result: dict[str, float]) -> str:
    """A bar chart of the sizes (MB), with the targets, as a small standalone SVG."""
    bars = [("with widget state, before", BEFORE["with_state"], 7e6),
            ("with widget state", result["with_state_bytes"], 7e6),
            ("without widget state", result["without_state_bytes"], 3 * 300e3),
            ("nbconvert HTML, with state", result["with_state_html_bytes"], None),
            ("nbconvert HTML, without state", result["without_state_html_bytes"], None)]
    width, left, row = 640, 210, 34
    scale = (width - left - 90) / max(b for _n, b, _t in bars)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{40 + row * len(bars) + 20}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="#ffffff"/>',
             '<text x="0" y="16" font-weight="600" fill="#1f1f1f">Saved notebook with three '
             'dashboards (MobileNetV2 + 2 small): bytes</text>']
    for i, (name, value, target) in enumerate(bars):
        y = 34 + i * row
        colour = "#9e9e9e" if "before" in name else "#1f77b4"
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" fill="#1f1f1f">'
                     f"{name}</text>")
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{value * scale:.1f}" height="18" '
                     f'fill="{colour}"/>')
        end = left + max(value, target or 0) * scale
        parts.append(f'<text x="{end + 6:.1f}" y="{y + 16}" fill="#1f1f1f">'
                     f"{value / 1e6:.2f} MB</text>")
        if target:
            x = left + target * scale
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 24}" '
                         'stroke="#d62728" stroke-width="2"/>')
    parts.append(f'<text x="{left}" y="{40 + row * len(bars) + 12}" fill="#1f1f1f">red: the '
                 "target (7 MB with state; 3 x 300 KB without)</text></svg>")
    return "".join(parts)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = sizes(execute(folder), folder)
    (ROOT / "docs" / "notebook-sizes.svg").write_text(figure_svg(result))
    emit(result)


if __name__ == "__main__":
    main()
