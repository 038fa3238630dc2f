"""The static view (``hw.to_html``, ``hw.save_html``, ``ModelTree._repr_html_``): the tree as
nested ``<details>`` with the explorer's columns, the totals, the weight pictures as inline
SVG; every count against Keras, every picture against numpy, names as text."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.render.svg import viridis

EVIL = "<img src=x onerror=alert(1)>"


class Elements(HTMLParser):
    """Every start tag (name, attributes) and the text inside each class of interest."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.texts: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.stack.append(dict(attrs).get("class", ""))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for cls in set(" ".join(self.stack).split()):
            self.texts.setdefault(cls, []).append(data)


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def nested(keras):
    keras.utils.set_random_seed(3)
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="inner_a"),
                              keras.layers.Dense(4, name=EVIL)], name="block")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="stem"), block,
                              keras.layers.Dense(3, name="head")], name="static_nested")
    block.trainable = False
    return model, block


def test_the_tree_is_nested_details_top_open_nested_collapsed(nested):
    model, _block = nested
    page = hw.to_html(model)
    details = re.findall(r"<details[^>]*>", page)
    assert details == ['<details class="hw-s-node" open>', '<details class="hw-s-node">']
    # the nested model's layers are inside its (closed) details element, after its summary
    closed = page.index('<details class="hw-s-node">')
    assert closed < page.index('data-path="static_nested/block/inner_a"') < page.index(
        "</details>", closed)


def test_a_hostile_layer_name_is_text(nested):
    model, _block = nested
    page = hw.to_html(model)
    assert EVIL not in page
    parsed = parse(page)
    assert not any(tag == "img" for tag, _ in parsed.tags)
    assert EVIL in parsed.texts["hw-s-name"]
    assert f"block/{EVIL} (kernel)" in parsed.texts["hw-s-overview"]  # the overview row
    assert EVIL in parsed.texts["hw-s-overview"]  # its label: the last segment, as text


def test_columns_and_totals_follow_keras(nested):
    model, block = nested
    parsed = parse(hw.to_html(model))
    rows = {a["data-path"]: a.get("class", "") for t, a in parsed.tags if "data-path" in a}
    tree = hw.inspect(model)
    assert list(rows) == [n.path for n in tree]
    frozen = {p for p, cls in rows.items() if "hw-s-frozen" in cls}
    assert frozen == {n.path for n in tree.find("block").walk()}
    assert parsed.texts["hw-s-total"] == [f"{model.count_params():,}"]
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert parsed.texts["hw-s-trainable"] == [f"{trainable:,}"]
    assert parsed.texts["hw-s-nontrainable"] == [f"{block.count_params():,}"]
    assert parsed.texts["hw-s-class"][:2] == ["Sequential", "Dense"]
    assert parsed.texts["hw-s-shape"][1] == "(None, 4)"
    nums = parsed.texts["hw-s-num"][1:]  # after the header's "Params"
    assert nums == [f"{n.params:,}" for n in tree]
    assert nums[1] == f"{model.get_layer('stem').count_params():,}"
    assert parsed.texts["hw-s-badge"].count("\u2744 frozen") == 3  # block and its two layers


def _png_pixels(page: str) -> np.ndarray:
    data = base64.b64decode(re.search(r'href="data:image/png;base64,([^"]+)"', page).group(1))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    raw = np.frombuffer(zlib.decompress(data[start:start + length]), dtype=np.uint8)
    rows = raw.reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, 3)


def test_the_overview_picture_is_the_live_overview(nested):
    from hubwidgets.widgets.overview import OVERVIEW_BINS, build_overview

    model, _block = nested
    page = hw.to_html(model)
    tree = hw.inspect(model)
    expected = build_overview(tree, hw.weight_stats(tree), bins=OVERVIEW_BINS)
    pixels = _png_pixels(page)
    assert pixels.shape == (4, OVERVIEW_BINS, 3)  # stem, inner_a, the hostile one, head
    assert (pixels == viridis(expected.density)).all()
    assert expected.density.max() == 100


def test_the_largest_layers_histogram_is_numpys(keras):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, name="small"),
                              keras.layers.Dense(40, name="wide")], name="hist")
    page = hw.to_html(model, bins=16)
    kernel = model.get_layer("wide").kernel.numpy()
    counts, _edges = np.histogram(kernel, bins=16)
    assert "Largest layer: hist/wide (kernel, 120 values)" in page
    svg = re.search(r'<svg[^>]*hw-s-histogram.*?</svg>', page).group(0)
    heights = [float(h) for h in re.findall(r"v-([\d.]+)h", svg)]
    plot_h = 200 - 22 - 34
    assert heights == pytest.approx([c / counts.max() * plot_h for c in counts if c > 0],
                                    abs=0.06)
    assert f"mean {kernel.mean():.3g}" in svg


def test_repr_html_of_a_tree_is_the_static_tree(nested):
    model, _block = nested
    tree = hw.inspect(model)
    fragment = tree._repr_html_()
    assert fragment.startswith('<div class="hw-static">')
    assert "<details" in fragment and EVIL not in fragment
    assert "hw-s-overview" not in fragment  # the tree alone: no statistics computed


def test_save_html_writes_a_standalone_page_whole_or_not_at_all(nested, tmp_path):
    model, _block = nested
    out = hw.save_html(model, tmp_path / "model.html")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "prefers-color-scheme: dark" in page
    assert "<script" not in page
    with pytest.raises(hw.HubWidgetsError, match="does not exist"):
        hw.save_html(model, tmp_path / "missing" / "model.html")
    with pytest.raises(hw.HubWidgetsError, match="is a folder"):
        hw.save_html(model, tmp_path)
    with pytest.raises(hw.HubWidgetsError, match="needs a file path"):
        hw.save_html(model, 42)
    with pytest.raises(hw.HubWidgetsError):
        hw.to_html(42)  # not a model: inspect's own error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.html"]


def test_the_renderer_imports_no_widget_library():
    code = ("import sys, hubwidgets.render.static_html, hubwidgets.render.svg; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('ipywidgets', 'anywidget', 'plotly', 'tensorflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(__import__("pathlib").Path(hw.__file__).parent.parent))
    assert out.stdout.strip() == "[]"


def test_a_dashboards_outputs_without_widget_state_stay_under_300_kb(keras):
    """What a notebook saved without widget state keeps of ``explore(model)`` for the issue's
    model (a frozen MobileNetV2 base, 158 rows): the static copy and the text summary."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False,
                                          input_shape=(224, 224, 3))
    base.trainable = False
    model = keras.Sequential([keras.Input((224, 224, 3)), base,
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    dashboard = hw.explore(model)
    dashboard.wait()
    shell = InteractiveShell.instance()  # before capturing: capture_output looks for it
    with capture_output() as shown:
        bundle, _ = shell.display_formatter.format(dashboard)
    static = shown.outputs[0].data["text/html"]
    assert "hw-s-overview" in static and "hw-s-histogram" in static
    saved = len(static.encode()) + len(bundle["text/plain"].encode())
    assert saved < 300_000, saved
    dashboard.close()


def test_a_model_of_hundreds_of_layers_keeps_a_small_static_copy(keras):
    """600 layers: the tree lists its first rows and counts the rest, the overview keeps a
    row per layer (thinner) and names every k-th, and the whole stays under 300 KB."""
    from bench.models import many_layers

    from hubwidgets.render.svg import MAX_LABELS
    from hubwidgets.render.tree_html import MAX_ROWS

    page = hw.to_html(many_layers(600))
    parsed = parse(page)
    rows = [a for t, a in parsed.tags if "data-path" in a]
    assert len(rows) == MAX_ROWS
    assert f"... and {600 - (MAX_ROWS - 1):,} more" in page
    assert _png_pixels(page).shape[0] == 600  # every layer in the picture
    labels = [t for t in parsed.texts["hw-s-overview"] if t.startswith("dense_")]
    assert 0 < len(labels) // 2 <= MAX_LABELS  # each name: its label and its tooltip
    assert len(page.encode()) < 300_000, len(page.encode())
