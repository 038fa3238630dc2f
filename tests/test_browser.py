"""End to end: a real Jupyter server, driven by headless Chromium through Playwright, in both
front ends that ``pip install`` sets up: JupyterLab 4 and Notebook 7, and in Voilà.

Opens a notebook that builds a small nested model and calls explore(model), expands a nested
layer, clicks its freeze toggle, and reads back from the kernel that the model changed.  On
MobileNetV2 (``weights=None``: nothing downloaded) in JupyterLab Light, Dark and Dark High
Contrast, every text of the dashboard (HTML and the plots' SVG) is measured against the colour
under it (>= 4.5:1), the panels' layout is checked at two widths, and the README's pictures are
taken.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
EVIL = "<img src=x onerror=alert(1)>"
OUTPUT_DIR = Path(__file__).parent.parent / "test-output"
DOCS = Path(__file__).parent.parent / "docs"
CONTRAST_JS = (Path(__file__).parent / "contrast.js").read_text()
WCAG_AA = 4.5
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
MOBILENET_CELL = ("import keras, hubwidgets as hw\n"
                  "keras.utils.set_random_seed(0)\n"
                  "model = keras.applications.MobileNetV2(weights=None)  # nothing downloaded\n"
                  "hw.explore(model)")

BACKGROUND_CELL = (  # every model "large": its statistics come from the background thread
    "import keras, hubwidgets as hw\n"
    "from hubwidgets.model import session_stats\n"
    "session_stats.SYNC_BYTES = -1\n"
    "session_stats.BATCH_BYTES = 1  # one variable a step: many updates from the thread\n"
    "keras.utils.set_random_seed(0)\n"
    "model = keras.Sequential([keras.Input((64,))] + [keras.layers.Dense(64, name=f'd{i}')\n"
    "                          for i in range(12)], name='large')\n"
    "dash = hw.explore(model)\n"
    "dash")
BACKGROUND_WAIT = ("print('WAITED', dash.wait(timeout=120), "
                   "int(dash.weights.overview.density.max(axis=1).min()))")

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LAB_LOGS: list[Path] = []  # the JupyterLab server's log (its kernels' stderr too), per fixture


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import keras, hubwidgets as hw\n"
            "block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='inner_a'),\n"
            f"    keras.layers.Dense(4, name={EVIL!r})], name='block')\n"
            "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='stem'),"
            " block], name='e2e')\n"
            "hw.explore(model)"),
        nbformat.v4.new_code_cell(
            "print('TRAINABLE', model.get_layer('block').get_layer('inner_a').trainable)"),
    ]
    nbformat.write(nb, path)


def _write_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)


def _one_cell_notebook(path: Path, source: str) -> None:
    _write_notebook(path, source)


def _edits_notebook(path: Path) -> None:
    _write_notebook(
        path,
        "import keras, hubwidgets as hw\n"
        "keras.utils.set_random_seed(0)\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='stem'),\n"
        "    keras.layers.Dense(2, name='head')], name='edits')\n"
        "original = model.get_layer('stem').kernel.numpy().copy()\n"
        "hw.explore(model)",
        "kernel = model.get_layer('stem').kernel.numpy()\n"
        "print('DOUBLED', bool((kernel == original * 2).all()))",
        "kernel = model.get_layer('stem').kernel.numpy()\n"
        "print('RESTORED', bool((kernel == original).all()), kernel.tobytes() == "
        "original.tobytes())")


def _lora_notebook(path: Path) -> None:
    _write_notebook(
        path,
        "import keras, hubwidgets as hw\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='stem'),\n"
        "    keras.layers.Dense(2, name='head')], name='lora')\n"
        "model.get_layer('head').quantize('int8')\n"
        "hw.explore(model)",
        "stem = model.get_layer('stem')\n"
        "print('LORA', stem.lora_rank, stem._kernel.trainable, stem.lora_kernel_b.trainable)")


def _training_notebook(path: Path) -> None:
    _write_notebook(
        path,
        "import numpy as np, keras, hubwidgets as hw\n"
        "keras.utils.set_random_seed(0)\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name='base'),\n"
        "    keras.layers.Dense(2, name='head')], name='trained')\n"
        "model.get_layer('base').trainable = False\n"
        "model.compile('sgd', 'mse')\n"
        "x, y = np.random.rand(64, 4).astype('float32'), np.random.rand(64, 2).astype('float32')\n"
        "cb = hw.watch(model)\n"
        "cb",
        "model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[cb])\n"
        "print('FIT DONE', cb.history.intervals)")


def _activations_notebook(path: Path) -> None:
    _write_notebook(
        path,
        "import numpy as np, keras, hubwidgets as hw\n"
        "keras.utils.set_random_seed(0)\n"
        "model = keras.Sequential([keras.Input((12, 12, 1)),\n"
        "    keras.layers.Conv2D(8, 3, activation='relu', name='conv', bias_initializer=\n"
        "        keras.initializers.Constant([-9.0] * 4 + [0.0] * 4)),\n"
        "    keras.layers.Flatten(name='flat'), keras.layers.Dense(3, name='head')],\n"
        "    name='probed')\n"
        "model.get_layer('conv').trainable = False\n"
        "model.compile('sgd', 'mse')\n"
        "x = np.random.rand(6, 12, 12, 1).astype('float32')\n"
        "hw.explore(model, probe=(x, np.zeros((6, 3), 'float32')))")


FUZZ_ORACLE = (  # every weight of these Dense layers (LoRA's too) is created trainable
    "import json, numpy as np\n"
    "ids = {id(v) for v in model.trainable_weights}\n"
    "def layers_of(layer, prefix):\n"
    "    for sub in getattr(layer, 'layers', []):\n"
    "        yield f'{prefix}/{sub.name}', sub\n"
    "        yield from layers_of(sub, f'{prefix}/{sub.name}')\n"
    "def state(layer):\n"
    "    on = [id(v) in ids for v in layer.weights]\n"
    "    return 'trainable' if all(on) else 'frozen' if not any(on) else 'mixed'\n"
    "layers = dict(layers_of(model, model.name))\n"
    "size = lambda vs: int(sum(np.prod(v.shape) for v in vs))\n"
    "layer = model.get_layer('head')\n"
    "drawn = {v.name: np.asarray(v.numpy(), np.float64) for v in layer.weights}\n"
    "if getattr(layer, 'lora_enabled', False):  # the kernel drawn is the effective one\n"
    "    drawn['kernel'] = drawn['kernel'] + (layer.lora_alpha / layer.lora_rank) * (\n"
    "        drawn['lora_kernel_a'] @ drawn['lora_kernel_b'])\n"
    "# a layer's histograms in the dashboard share one range: its weights' min to max\n"
    "low = min(float(w.min()) for w in drawn.values())\n"
    "high = max(float(w.max()) for w in drawn.values())\n"
    "print('ORACLE' + json.dumps(dict(\n"
    "    nodes={p: state(l) for p, l in layers.items() if l.weights},\n"
    "    variables={f'{p}/{v.name}': 'trainable' if id(v) in ids else 'frozen'\n"
    "               for p, l in layers.items() if not getattr(l, 'layers', None)\n"
    "               for v in l.weights},\n"
    "    trainable=size(model.trainable_weights), frozen=size(model.non_trainable_weights),\n"
    "    params=model.count_params(),\n"
    "    head={name: np.histogram(w, bins=64, range=(low, high))[0].tolist()\n"
    "          for name, w in drawn.items()})))")


def _fuzz_notebook(path: Path) -> None:
    _write_notebook(
        path,
        "import keras, hubwidgets as hw\n"
        "keras.utils.set_random_seed(0)\n"
        "block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='inner_a'),\n"
        "    keras.layers.Dense(4, name='inner_b')], name='block')\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='stem'), block,\n"
        "    keras.layers.Dense(2, name='head')], name='fuzz')\n"
        "hw.explore(model)",
        FUZZ_ORACLE)


def _executed_notebook(path: Path) -> None:
    """The notebook, run by nbclient, saved with its outputs and widget state (what
    "Save Widget State Automatically" or ``jupyter nbconvert --execute`` writes)."""
    from nbclient import NotebookClient

    _notebook(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells = nb.cells[:1]
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    # the overview's data is in the saved state, not only in a message that was sent once
    figures = [m["state"]["figure"] for m in state.values() if "figure" in m["state"]]
    assert figures and figures[0]["data"][0]["type"] == "heatmap", figures
    # plotly.js is in the saved state once, however many figures refer to it
    bundles = [m for m in state.values() if len(m["state"].get("plotly_js", "")) > 1_000_000]
    assert len(bundles) == 1
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does).")
    root = tmp_path_factory.mktemp("lab")
    _notebook(root / "e2e.ipynb")
    _notebook(root / "e2e_notebook7.ipynb")
    _executed_notebook(root / "saved_state.ipynb")
    no_state = nbformat.read(root / "saved_state.ipynb", as_version=4)
    no_state.metadata.pop("widgets")  # JupyterLab's default: saved without widget state
    nbformat.write(no_state, root / "no_state.ipynb")
    _one_cell_notebook(root / "mobilenet.ipynb", MOBILENET_CELL)
    _edits_notebook(root / "edits.ipynb")
    _training_notebook(root / "training.ipynb")
    _activations_notebook(root / "activations.ipynb")
    _lora_notebook(root / "lora.ipynb")
    _write_notebook(
        root / "two_views.ipynb",
        "import keras, hubwidgets as hw\n"
        "block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='inner_a')],\n"
        "    name='block')\n"
        "model = keras.Sequential([keras.Input((4,)), block], name='twice')\n"
        "kernel = block.get_layer('inner_a').kernel.numpy().copy()\n"
        "explorer = hw.LayerExplorer(model)\n"
        "display(explorer)\n"
        "display(explorer)",
        "print('VIEWS', explorer.views_shown, 'UNCHANGED',\n"
        "      bool((block.get_layer('inner_a').kernel.numpy() == kernel).all()))")
    _write_notebook(root / "background.ipynb", BACKGROUND_CELL,
                    "print('NEXT CELL RAN')", BACKGROUND_WAIT)
    _fuzz_notebook(root / "fuzz.ipynb")
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1",
           f"--port={port}", "--ServerApp.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None", f"--LabApp.workspaces_dir={root / 'workspaces'}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "lab.log", "w")
    LAB_LOGS.append(root / "lab.log")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JUPYTER_PLATFORM_DIRS="1")
    # as if the user had saved it: JupyterLab signs what it saves, and trusts what it signed
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(root / "saved_state.ipynb")],
                   env=env, check=True, capture_output=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("JupyterLab did not start: " + (root / "lab.log").read_text()[-2000:])
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def run_cell(page, cell) -> None:
    """Run a cell with Shift+Enter, again if the kernel was not ready to take it."""
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(10):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.textContent)",
                                   arg=prompt.element_handle(), timeout=5_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; try again
            continue
    raise AssertionError("the cell never started running")


def _drive_explorer(page, console_errors: list[str], screenshot: str) -> None:
    """Run the first cell, expand ``block``, freeze ``inner_a``, read it back from the kernel."""
    from playwright.sync_api import expect

    first_cell = page.locator(".jp-Notebook .jp-CodeCell").first
    first_cell.wait_for(timeout=60_000)
    run_cell(page, first_cell)
    block = page.locator(".hw-row", has=page.locator(".hw-name", has_text="block"))
    try:
        expect(block).to_be_visible(timeout=120_000)
    except AssertionError:
        page.screenshot(path=str(OUTPUT_DIR / f"failure-{screenshot}"))
        raise AssertionError("the explorer did not render; console errors: "
                             f"{console_errors[-5:]}; outputs: "
                             f"{page.locator('.jp-OutputArea').all_inner_texts()}") from None
    block.locator(".hw-caret").click()
    inner = page.locator(".hw-row", has=page.locator(".hw-name", has_text="inner_a"))
    expect(inner).to_be_visible(timeout=30_000)
    _only_the_live_view(page)
    evil = page.locator(".hw-row .hw-name", has_text=EVIL)
    expect(evil).to_have_text(EVIL)
    assert page.locator(".hw-explorer img").count() == 0
    inner.locator(".hw-toggle").click()
    expect(page.locator(".hw-code")).to_contain_text(
        "model.get_layer('block').get_layer('inner_a').trainable = False", timeout=30_000)
    # picking a layer plots its weights: the selection figure's title names it
    page.locator(".hw-row .hw-name", has_text="stem").click()
    expect(page.locator(".js-plotly-plot .gtitle").first).to_contain_text(
        "e2e/stem: 2 variable(s)", timeout=30_000)
    news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
    if news.count():
        news.first.click()
        expect(news).to_have_count(0, timeout=10_000)
    page.screenshot(path=str(OUTPUT_DIR / screenshot), full_page=False)

    run_cell(page, page.locator(".jp-Notebook .jp-CodeCell").nth(1))
    expect(page.locator(".jp-RenderedText", has_text="TRAINABLE")).to_contain_text(
        "TRAINABLE False", timeout=60_000)


# Counts the frames in which a static copy (.hw-static) and the live explorer both show.
BOTH_SHOWN_JS = """window.__hwBoth = 0;
(function check() {
  const shown = (sel) => [...document.querySelectorAll(sel)].some(
    (e) => e.getClientRects().length && getComputedStyle(e).visibility !== "hidden");
  if (shown(".hw-static") && shown(".hw-explorer")) window.__hwBoth += 1;
  requestAnimationFrame(check);
})();"""


def _only_the_live_view(page) -> None:
    """The static copy is in the page (so the check means something), hidden, and was never
    shown in the same frame as the live explorer."""
    from playwright.sync_api import expect

    static = page.locator(".hw-static")
    assert static.count() >= 1
    expect(static.first).to_be_hidden(timeout=30_000)
    assert page.evaluate("window.__hwBoth") == 0


def _open(p, url: str, console_errors: list[str], dialogs: list[str]):
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.add_init_script(BOTH_SHOWN_JS)
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    return browser, page


def _run_first_cell(page):
    """Wait for the kernel, run the notebook's first cell; the notebook's code cells."""
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    run_cell(page, cells.nth(0))
    return cells


def _our_errors(console_errors: list[str]) -> list[str]:
    keys = ("hubwidgets", "hw-", "explorer", "anywidget")
    return [e for e in console_errors if any(k in e for k in keys)]


def test_explorer_in_jupyterlab(jupyter_lab):
    from playwright.sync_api import sync_playwright

    OUTPUT_DIR.mkdir(exist_ok=True)
    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/e2e.ipynb?reset", console_errors, dialogs)
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
        _drive_explorer(page, console_errors, "explorer.png")
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []


def test_explorer_in_notebook7(jupyter_lab):
    """The same server serves Notebook 7 at /notebooks/: no extra install step."""
    from playwright.sync_api import sync_playwright

    OUTPUT_DIR.mkdir(exist_ok=True)
    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/notebooks/e2e_notebook7.ipynb",
                              console_errors, dialogs)
        page.locator("#jp-NotebookKernelStatus, .jp-Notebook").first.wait_for(timeout=90_000)
        # Notebook 7's single-document shell, not JupyterLab's
        assert page.evaluate("document.body.dataset.notebook") == "notebooks"
        _drive_explorer(page, console_errors, "notebook7.png")
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []


def test_saved_notebook_reopened_shows_the_explorer_without_running(jupyter_lab):
    """Re-opened with saved widget state, the explorer renders before any cell runs."""
    from playwright.sync_api import expect, sync_playwright

    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/saved_state.ipynb?reset", console_errors,
                              dialogs)
        block = page.locator(".hw-row", has=page.locator(".hw-name", has_text="block"))
        expect(block).to_be_visible(timeout=120_000)
        expect(page.locator(".hw-row .hw-name", has_text="stem")).to_be_visible()
        # the figure came back with its data: the overview names the layers
        expect(page.locator(".js-plotly-plot .heatmaplayer image")).to_have_count(1, timeout=30_000)
        expect(page.locator(".js-plotly-plot .y2tick", has_text="stem")).to_have_count(1)
        _only_the_live_view(page)  # the saved static copy stays hidden under the live view
        # nothing ran in this session's kernel: the view came from the saved state
        assert page.locator(".jp-InputPrompt").first.inner_text() in ("[ ]:", "[1]:")
        page.screenshot(path=str(OUTPUT_DIR / "saved_state.png"), full_page=False)
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []


def test_saved_without_widget_state_reopened_shows_the_static_copy(jupyter_lab):
    """JupyterLab's default save has no widget state: reopened, the widget cannot render
    ("model not found"), and the static copy shows instead, its nested model collapsible."""
    from playwright.sync_api import expect, sync_playwright

    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/no_state.ipynb?reset", console_errors,
                              dialogs)
        static = page.locator(".jp-OutputArea-output .hw-static")
        expect(static).to_be_visible(timeout=60_000)
        inner = static.locator(".hw-s-row", has=page.locator(".hw-s-name", has_text="inner_a"))
        expect(inner).to_be_hidden()
        static.locator("summary .hw-s-row", has=page.locator(".hw-s-name", has_text="block")
                       ).click()
        expect(inner).to_be_visible()
        expect(static.locator(".hw-s-name", has_text=EVIL)).to_have_text(EVIL)
        assert page.locator(".hw-explorer").count() == 0
        browser.close()
    assert dialogs == []


# -- the look: themes, contrast, layout, pictures -------------------------------------------

def _set_theme(url: str, theme: str) -> None:
    """JupyterLab's theme setting, through its settings API (what the Settings menu writes)."""
    import json

    body = json.dumps({"raw": json.dumps({"theme": theme})}).encode()
    request = urllib.request.Request(
        f"{url}/lab/api/settings/@jupyterlab/apputils-extension:themes", data=body,
        method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def _solid_text_colour(page) -> str:
    """The explorer's text colour composited over its background, as ``rgb(r, g, b)``."""
    import re

    fg, bg = page.evaluate("(() => { const s = getComputedStyle(document.querySelector("
                           "'.hw-explorer')); return [s.color, s.backgroundColor]; })()")
    f = [float(v) for v in re.findall(r"[\d.]+", fg)] + [1.0]
    b = [float(v) for v in re.findall(r"[\d.]+", bg)]
    return "rgb({}, {}, {})".format(*(round(f[i] * f[3] + b[i] * (1 - f[3])) for i in range(3)))


def _low_contrast(page, root) -> list[dict]:
    texts = page.evaluate(CONTRAST_JS, root.element_handle())
    assert len(texts) > 30, texts  # the tree's rows and the plots' labels were measured
    assert any(t["svg"] for t in texts) and any(not t["svg"] for t in texts), texts
    return [t for t in texts if t["ratio"] < WCAG_AA]


def _boxes(page) -> tuple[dict, dict]:
    explorer = page.locator(".hw-explorer").first.bounding_box()
    plots = page.locator(".hw-weights .js-plotly-plot").first.bounding_box()
    return explorer, plots


def _open_dashboard(page, console_errors):
    """Run MobileNetV2's cell; wait for the tree and the overview's heatmap."""
    from playwright.sync_api import expect

    _run_first_cell(page)
    try:
        expect(page.locator(".hw-row .hw-name", has_text="block_5_project").first).to_be_visible(
            timeout=240_000)
        expect(page.locator(".js-plotly-plot .heatmaplayer image")).to_have_count(1,
                                                                                timeout=60_000)
    except AssertionError:
        page.screenshot(path=str(OUTPUT_DIR / "failure-dashboard.png"))
        raise AssertionError(f"no dashboard; console errors: {console_errors[-5:]}") from None
    news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
    if news.count():
        news.first.click()
    return page.locator(".jp-OutputArea-output", has=page.locator(".hw-explorer")).first


@pytest.mark.parametrize("theme, picture", [
    ("JupyterLab Light", "explorer-light.png"),
    ("JupyterLab Dark", "explorer-dark.png"),
    ("JupyterLab Dark High Contrast", None),
])
def test_every_text_is_readable_in_each_theme(jupyter_lab, theme, picture):
    """MobileNetV2 in JupyterLab: every text >= 4.5:1, tree and plots side by side at 1500 px
    and stacked at 800 px, keyboard and overview selection; the README's pictures."""
    from playwright.sync_api import expect, sync_playwright

    OUTPUT_DIR.mkdir(exist_ok=True)
    console_errors: list[str] = []
    dialogs: list[str] = []
    _set_theme(jupyter_lab, theme)
    try:
        with sync_playwright() as p:
            browser, page = _open(p, f"{jupyter_lab}/lab/tree/mobilenet.ipynb?reset",
                                  console_errors, dialogs)
            output = _open_dashboard(page, console_errors)
            assert page.evaluate("document.body.dataset.jpThemeName") == theme
            # the plots follow the theme: their text has the page's text colour
            expect(page.locator(".js-plotly-plot .gtitle").first).to_have_css(
                "fill", _solid_text_colour(page), timeout=30_000)
            # pick a layer: its row and its histogram
            page.locator(".hw-row .hw-name", has_text="block_5_project").first.click()
            expect(page.locator(".js-plotly-plot .gtitle").first).to_contain_text(
                "mobilenetv2_1.00_224/block_5_project: 1 variable(s)", timeout=60_000)
            # the transfer-learning split: frozen rows above the selection, trainable below
            page.get_by_role("button", name="Freeze up to selected").click()
            expect(page.locator(".hw-row.hw-frozen .hw-name", has_text="block_5_expand_BN")
                   ).to_have_count(1, timeout=30_000)
            expect(page.locator(".hw-row.hw-frozen .hw-name", has_text="block_5_project_BN")
                   ).to_have_count(0)
            bad = _low_contrast(page, output)
            assert bad == [], f"{theme}: texts under {WCAG_AA}:1: {bad[:10]}"

            # side by side at 1500 px (file browser open), stacked at 800 px
            explorer, plots = _boxes(page)
            assert plots["x"] >= explorer["x"] + explorer["width"] - 1, (explorer, plots)
            assert abs(plots["y"] - explorer["y"]) < 80, (explorer, plots)
            if picture:  # tall enough for the whole output, no wider than the page
                page.set_viewport_size({"width": 1500, "height": 1250})
                page.wait_for_timeout(500)
                output.scroll_into_view_if_needed()
                output.screenshot(path=str(DOCS / picture))
                page.set_viewport_size({"width": 1500, "height": 1000})
                assert (DOCS / picture).stat().st_size < 300_000
            if theme != "JupyterLab Light":
                browser.close()
                return

            # keyboard: Down moves the selection, Space freezes, Left goes to the parent
            table = page.locator(".hw-table")
            table.focus()
            page.keyboard.press("ArrowDown")
            expect(page.locator(".hw-row.hw-selected .hw-name")).to_have_text(
                "block_5_project_BN", timeout=30_000)
            page.keyboard.press("Space")
            expect(page.locator(".hw-row.hw-selected.hw-frozen")).to_have_count(1, timeout=30_000)
            expect(page.locator(".hw-code")).to_contain_text(
                "model.get_layer('block_5_project_BN').trainable = False")
            page.keyboard.press("Enter")  # expands: moving statistics are not "frozen"
            expect(page.locator(".hw-var .hw-badge-fixed")).to_have_count(2, timeout=30_000)
            expect(page.locator(".hw-var", has_text="moving_mean")).to_contain_text("not trained")
            expect(page.locator(".hw-var", has_text="moving_mean").locator(".hw-badge-fixed")
                   ).to_have_attribute("title", re.compile("BatchNormalization moving statistic"))
            page.keyboard.press("ArrowLeft")
            expect(page.locator(".hw-var")).to_have_count(0, timeout=30_000)
            page.keyboard.press("Space")  # trainable again
            expect(page.locator(".hw-row.hw-selected.hw-frozen")).to_have_count(0, timeout=30_000)
            assert page.locator(".hw-header").inner_text().count("params") == 1  # one totals line
            assert not page.locator(".hw-totals").is_visible()

            # a click on a layer in the overview selects it in the explorer
            label = page.locator(".js-plotly-plot .y2tick text").nth(3)
            name = label.text_content()
            label.scroll_into_view_if_needed()
            box = page.locator(".js-plotly-plot .nsewdrag[data-subplot='x2y2']").bounding_box()
            y = label.bounding_box()["y"] + label.bounding_box()["height"] / 2
            page.mouse.move(box["x"] + box["width"] / 2 - 5, y)
            page.mouse.move(box["x"] + box["width"] / 2, y)  # plotly clicks what it hovers
            expect(page.locator(".hoverlayer .hovertext")).to_contain_text(name, timeout=10_000)
            page.mouse.click(box["x"] + box["width"] / 2, y)
            expect(page.locator(".hw-row.hw-selected .hw-name")).to_have_text(name,
                                                                           timeout=30_000)

            # switched live from the Settings menu: the figure follows without a re-run
            light_colour = page.evaluate(
                "getComputedStyle(document.querySelector('.hw-explorer')).color")
            page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
            page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
            page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
            page.wait_for_function("document.body.dataset.jpThemeLight === 'false'",
                                   timeout=30_000)
            # the expected colour is read once the explorer's own colour has changed
            page.wait_for_function("before => getComputedStyle(document.querySelector("
                                   "'.hw-explorer')).color !== before", arg=light_colour,
                                   timeout=30_000)
            expect(page.locator(".js-plotly-plot .gtitle").first).to_have_css(
                "fill", _solid_text_colour(page), timeout=30_000)
            assert _solid_text_colour(page) != "rgb(33, 33, 33)"
            bad = _low_contrast(page, output)
            assert bad == [], f"switched to Dark: texts under {WCAG_AA}:1: {bad[:10]}"

            page.set_viewport_size({"width": 800, "height": 1000})
            stacked = ("() => { const e = document.querySelector('.hw-explorer')"
                       ".getBoundingClientRect(); const p = document.querySelector("
                       "'.hw-weights .js-plotly-plot').getBoundingClientRect();"
                       " return p.top >= e.bottom - 1; }")
            page.wait_for_function(stacked, timeout=30_000)  # the layout, once reflowed
            explorer, plots = _boxes(page)
            assert plots["y"] >= explorer["y"] + explorer["height"] - 1, (explorer, plots)
            browser.close()
    finally:
        _set_theme(jupyter_lab, "JupyterLab Light")
    assert dialogs == []
    assert _our_errors(console_errors) == []


FIGURE_VIEW_JS = """async ([source, plotly, state]) => {
  // a StatefulFigure's view (figure.js) as anywidget runs it: render({ model, el, host })
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const view = (await import(url)).default;
  const listeners = {};
  const sent = [];
  const model = {
    get: (key) => state[key], set: (key, value) => { state[key] = value; },
    on: (event, callback) => { (listeners[event] ||= []).push(callback); }, off: () => {},
    send: (message) => sent.push(message), save_changes: () => sent.push("save_changes"),
  };
  window.hw = { sent, change(key, value) {
    state[key] = value;
    for (const callback of listeners["change:" + key] || []) callback();
  } };
  const el = document.createElement("div");
  document.body.append(el);
  await view.render({ model, el, host: { getModel: async () => ({ get: () => plotly }) } });
}"""
THEMES = {  # JupyterLab's variables, as its Light and Dark themes set them on the page
    "light": ("true", "--jp-layout-color0:#ffffff;--jp-content-font-color1:rgb(33, 33, 33);"
                      "--jp-border-color2:#e0e0e0;background:#ffffff"),
    "dark": ("false", "--jp-layout-color0:#111111;--jp-content-font-color1:rgb(240, 240, 240);"
                      "--jp-border-color2:#444444;background:#111111"),
}
THEME_JS = ("([light, style]) => { document.body.setAttribute('style', style);"
            " document.body.dataset.jpThemeLight = light; }")


def test_each_view_draws_the_figure_in_its_own_pages_theme():
    """One figure's state, two views in pages of different themes: each draws the page's
    text colour, follows its page's theme switch, and tells the kernel nothing; a patch
    from the kernel (a new selection's title and bars) shows in the view."""
    import json

    from playwright.sync_api import expect, sync_playwright
    from plotly.offline import get_plotlyjs

    from hubwidgets.widgets.figure import STATIC, StatefulFigure

    fig = StatefulFigure(data=[dict(type="heatmap", z=[[i + j for j in range(40)]
                                                        for i in range(200)])],
                         layout=dict(title=dict(text="before"), height=300, width=400))
    state = json.loads(json.dumps(fig.get_state()))
    source, plotly = (STATIC / "figure.js").read_text(), get_plotlyjs()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        pages = {}
        for theme in ("light", "dark"):
            page = browser.new_page()
            page.set_content("<html><body></body></html>")
            page.evaluate(THEME_JS, list(THEMES[theme]))
            page.evaluate(FIGURE_VIEW_JS, [source, plotly, state])
            pages[theme] = page
        title = {theme: page.locator(".gtitle") for theme, page in pages.items()}
        expect(title["light"]).to_have_css("fill", "rgb(33, 33, 33)", timeout=30_000)
        expect(title["dark"]).to_have_css("fill", "rgb(240, 240, 240)", timeout=30_000)
        pages["dark"].evaluate(THEME_JS, list(THEMES["light"]))  # switched live
        expect(title["dark"]).to_have_css("fill", "rgb(33, 33, 33)", timeout=30_000)
        pages["light"].evaluate(THEME_JS, list(THEMES["dark"]))
        expect(title["light"]).to_have_css("fill", "rgb(240, 240, 240)", timeout=30_000)
        base = fig.figure
        with fig.batch_update():  # a selection: its bars and title, sent as a patch
            fig.add_bar(x=[0.5, 1.5], y=[3, 4], name="bars", xaxis="x", yaxis="y")
            fig.layout.title.text = "after"
        patch = json.loads(json.dumps(fig.patch))
        assert fig.figure == base and patch["data"][0] is None  # the heatmap is not resent
        for theme, page in pages.items():
            page.evaluate("patch => window.hw.change('patch', patch)", patch)
            expect(title[theme]).to_have_text("after", timeout=30_000)
            expect(page.locator(".barlayer .point")).to_have_count(2)
            expect(page.locator(".heatmaplayer image")).to_have_count(1)
            assert page.evaluate("window.hw.sent") == []  # nothing went to the kernel
        browser.close()


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    root = tmp_path_factory.mktemp("voila")
    _one_cell_notebook(root / "app.ipynb", (
        "import keras, hubwidgets as hw\n"
        "block = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name='inner')],\n"
        "    name='block')\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name='stem'),\n"
        "    keras.layers.BatchNormalization(name='norm'), block,\n"
        "    keras.layers.Dense(2, name='head')], name='app')\n"
        "hw.explore(model)"))
    port = _free_port()
    cmd = [sys.executable, "-m", "voila", str(root / "app.ipynb"), "--no-browser",
           f"--port={port}", "--Voila.ip=127.0.0.1"]
    log = open(root / "voila.log", "w")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JUPYTER_PLATFORM_DIRS="1")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/voila/static/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # the server answers
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("voila did not start: " + (root / "voila.log").read_text()[-2000:])
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_voila_shows_the_figures_with_data_before_any_click(voila):
    from playwright.sync_api import expect, sync_playwright

    OUTPUT_DIR.mkdir(exist_ok=True)
    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, voila, console_errors, dialogs)
        expect(page.locator(".hw-row .hw-name", has_text="stem")).to_be_visible(timeout=240_000)
        # before any click: the overview draws every layer with weights
        expect(page.locator(".js-plotly-plot .heatmaplayer image")).to_have_count(1,
                                                                                timeout=60_000)
        expect(page.locator(".js-plotly-plot .y2tick text")).to_have_count(4, timeout=30_000)
        ticks = page.locator(".js-plotly-plot .y2tick text").all_text_contents()
        assert sorted(ticks) == ["block/inner", "head", "norm", "stem"], ticks
        _only_the_live_view(page)
        page.locator(".hw-row .hw-name", has_text="head").click()
        expect(page.locator(".js-plotly-plot .gtitle").first).to_contain_text(
            "app/head: 2 variable(s)", timeout=60_000)
        expect(page.locator(".js-plotly-plot .barlayer .point")).not_to_have_count(0)
        # a click on a nested layer in the overview opens its parent in the tree and selects it
        assert page.locator(".hw-row .hw-name", has_text="inner").count() == 0
        label = page.locator(".js-plotly-plot .y2tick text", has_text="block/inner")
        box = page.locator(".js-plotly-plot .nsewdrag[data-subplot='x2y2']").bounding_box()
        y = label.bounding_box()["y"] + label.bounding_box()["height"] / 2
        page.mouse.move(box["x"] + box["width"] / 2 - 5, y)
        page.mouse.move(box["x"] + box["width"] / 2, y)
        expect(page.locator(".hoverlayer .hovertext")).to_contain_text("block/inner",
                                                                       timeout=10_000)
        page.mouse.click(box["x"] + box["width"] / 2, y)
        expect(page.locator(".hw-row.hw-selected .hw-name")).to_have_text("inner", timeout=30_000)
        expect(page.locator(".js-plotly-plot .gtitle").first).to_contain_text(
            "app/block/inner: 2 variable(s)", timeout=30_000)
        page.screenshot(path=str(OUTPUT_DIR / "voila.png"), full_page=False)
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []


def test_an_edit_and_its_undo_from_the_row_menu(jupyter_lab):
    """Scale a layer's weights from its row menu (the number asked in an inline form in the
    row: a wrong one is answered there, nothing changed), read the doubled values in the
    kernel, undo from the toolbar, and read them back bit for bit.  No browser dialog."""
    from playwright.sync_api import expect, sync_playwright

    console_errors: list[str] = []
    dialogs: list[str] = []

    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/edits.ipynb?reset", console_errors, dialogs)
        cells = _run_first_cell(page)
        stem = page.locator(".hw-row", has=page.locator(".hw-name", has_text="stem"))
        expect(stem).to_be_visible(timeout=120_000)
        expect(page.locator(".hw-undo")).to_be_disabled()
        stem.locator(".hw-menu").select_option("scale_weights")
        form = page.locator(".hw-rows .hw-form")
        expect(form.locator(".hw-form-question")).to_have_text("Multiply the weights by")
        field = form.locator("input")
        expect(field).to_be_focused()
        field.fill("abc")
        field.press("Enter")  # the error comes back to the form that sent it
        expect(form.locator(".hw-form-error")).to_have_text(
            "Action 'scale_weights': 'factor' must be a finite number, got 'abc'.",
            timeout=30_000)
        expect(page.locator(".hw-code")).to_be_hidden()  # nothing was done
        field.fill("2")
        form.locator(".hw-form-ok").click()
        expect(page.locator(".hw-code")).to_contain_text(
            "hubwidgets.scale_weights(model, 'edits/stem', 2.0)", timeout=30_000)
        expect(form).to_have_count(0)
        run_cell(page, cells.nth(1))
        expect(page.locator(".jp-RenderedText", has_text="DOUBLED")).to_contain_text(
            "DOUBLED True", timeout=60_000)
        page.locator(".hw-undo").click()
        expect(page.locator(".hw-code")).to_contain_text("hubwidgets.undo(model)",
                                                         timeout=30_000)
        expect(page.locator(".hw-redo")).to_be_enabled()
        run_cell(page, cells.nth(2))
        expect(page.locator(".jp-RenderedText", has_text="RESTORED")).to_contain_text(
            "RESTORED True True", timeout=60_000)
        browser.close()
    assert _our_errors(console_errors) == []
    assert dialogs == []


def test_two_views_of_one_explorer_open_apart(jupyter_lab):
    """One explorer displayed twice: opening a layer in one view opens it there only, and an
    action's error is answered in the view whose click caused it."""
    from playwright.sync_api import expect, sync_playwright

    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/two_views.ipynb?reset",
                              console_errors, dialogs)
        cells = _run_first_cell(page)
        views = page.locator(".hw-explorer")
        expect(views).to_have_count(2, timeout=120_000)
        first, second = views.nth(0), views.nth(1)
        inner = ".hw-row[data-path='twice/block/inner_a']"
        first.locator(".hw-row[data-path='twice/block'] .hw-caret").click()
        expect(first.locator(inner)).to_be_visible(timeout=30_000)
        expect(second.locator(".hw-row[data-path='twice/block']")).to_have_attribute(
            "aria-expanded", "false")
        assert second.locator(inner).count() == 0
        second.locator(".hw-row[data-path='twice/block'] .hw-menu").select_option("prune_weights")
        field = second.locator(".hw-form input")
        field.fill("7")
        field.press("Enter")
        expect(second.locator(".hw-form-error")).to_contain_text("fraction", timeout=30_000)
        assert first.locator(".hw-form").count() == 0
        run_cell(page, cells.nth(1))
        expect(page.locator(".jp-RenderedText", has_text="VIEWS")).to_contain_text(
            "VIEWS 2 UNCHANGED True", timeout=60_000)
        browser.close()
    assert _our_errors(console_errors) == []
    assert dialogs == []


def test_the_training_panel_draws_a_short_fit(jupyter_lab):
    """``hw.watch(model)`` shown in a cell draws the loss curve and the update ratios while
    ``fit`` runs in the next cell."""
    from playwright.sync_api import expect, sync_playwright

    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/training.ipynb?reset", console_errors,
                              dialogs)
        cells = _run_first_cell(page)
        panel = cells.nth(0).locator(".jp-OutputArea")
        expect(panel.locator(".js-plotly-plot")).to_have_count(3, timeout=120_000)
        run_cell(page, cells.nth(1))
        expect(page.locator(".jp-RenderedText", has_text="FIT DONE")).to_contain_text(
            "FIT DONE 3", timeout=120_000)
        # the loss curve (3 epochs: 3 points) and one update-ratio line per layer (base, head),
        # each waited for as the condition it is: a figure drawn from its state, whenever the
        # view got there (plotly.js still loading, or the fit's updates already sent)
        curves = panel.locator(".js-plotly-plot", has=page.locator(".gtitle",
                                                                    has_text="Loss and metrics"))
        ratios = panel.locator(".js-plotly-plot", has=page.locator(".gtitle",
                                                                    has_text="Update ratio"))
        expect(curves.locator(".scatterlayer .trace")).to_have_count(1, timeout=30_000)
        expect(curves.locator(".scatterlayer .trace .points path")).to_have_count(3,
                                                                               timeout=30_000)
        expect(ratios.locator(".scatterlayer .trace")).to_have_count(2, timeout=30_000)
        expect(ratios.locator(".legendtext", has_text="base (0: no update)")).to_have_count(1)
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []


# -- the static copy: exported notebooks, no kernel, no network, with or without JavaScript --

STATIC_CELL = (
    "import keras, hubwidgets as hw\n"
    "keras.utils.set_random_seed(0)\n"
    "block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='inner_a'),\n"
    f"    keras.layers.Dense(4, name={EVIL!r})], name='block')\n"
    "block.trainable = False\n"
    "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='stem'), block,\n"
    "    keras.layers.Dense(3, name='head')], name='shared_nb')\n"
    "hw.explore(model)")
STATIC_COUNTS = "print('COUNTS', model.count_params(), block.count_params())"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A notebook executed by nbclient with widget state, exported by nbconvert (lab
    template) with and without that state, in the light and dark themes."""
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    root = tmp_path_factory.mktemp("exported")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [nbformat.v4.new_code_cell(STATIC_CELL), nbformat.v4.new_code_cell(STATIC_COUNTS)]
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(root)}}).execute()
    counts = [int(n) for n in nb.cells[1].outputs[0]["text"].split()[1:]]
    pages = {}
    for state in (True, False):
        copy = nbformat.from_dict(nb)
        if not state:
            copy.metadata.pop("widgets")
        for theme in ("light", "dark"):
            body, _ = HTMLExporter(template_name="lab", theme=theme).from_notebook_node(copy)
            path = root / f"{'with' if state else 'without'}_state_{theme}.html"
            path.write_text(body)
            pages[state, theme] = path
    return pages, counts


def _offline_page(p, path: Path, javascript: bool, color_scheme: str = "light"):
    """``path`` in Chromium with every request but the file itself refused."""
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
    context = browser.new_context(java_script_enabled=javascript, color_scheme=color_scheme,
                                  viewport={"width": 1200, "height": 1000})
    refused: list[str] = []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        "file:") else (refused.append(route.request.url), route.abort()))
    page = context.new_page()
    page.goto(path.as_uri())
    return browser, page, refused


@pytest.mark.parametrize("state", [True, False], ids=["with-widget-state", "without-state"])
@pytest.mark.parametrize("javascript", [True, False], ids=["js-on", "js-off"])
def test_an_exported_notebook_reads_offline(exported, state, javascript):
    """nbconvert's page with no kernel and no network: the tree (nested model collapsed,
    then opened), its totals and frozen marks, the overview picture, names as text."""
    from playwright.sync_api import expect, sync_playwright

    pages, (total, frozen) = exported
    with sync_playwright() as p:
        browser, page, refused = _offline_page(p, pages[state, "light"], javascript)
        static = page.locator(".hw-static")
        expect(static).to_have_count(1)
        expect(static).to_be_visible()
        assert page.locator(".hw-s-title").inner_text().startswith("shared_nb (Sequential")
        assert page.locator(".hw-s-total").inner_text() == f"{total:,}"
        assert page.locator(".hw-s-nontrainable").inner_text() == f"{frozen:,}"
        assert page.locator(".hw-s-trainable").inner_text() == f"{total - frozen:,}"
        inner = page.locator(".hw-s-row", has=page.locator(".hw-s-name", has_text="inner_a"))
        expect(inner).to_be_hidden()  # the nested model is collapsed
        block = page.locator("summary .hw-s-row", has=page.locator(".hw-s-name",
                                                                    has_text="block"))
        expect(block).to_contain_text("\u2744 frozen")
        block.click()
        expect(inner).to_be_visible()
        expect(inner).to_contain_text("\u2744 frozen")
        assert "hw-s-frozen" in inner.get_attribute("class")
        stem = page.locator(".hw-s-row", has=page.locator(".hw-s-name", has_text="stem"))
        expect(stem).not_to_contain_text("frozen")
        evil = page.locator(".hw-s-name", has_text=EVIL)
        expect(evil).to_have_text(EVIL)
        assert page.locator(".hw-static img").count() == 0
        overview = page.locator("svg.hw-s-overview")
        expect(overview).to_be_visible()
        assert overview.bounding_box()["height"] > 4 * 11
        assert page.locator("svg.hw-s-overview image").count() == 1
        expect(page.locator("svg.hw-s-histogram")).to_be_visible()
        if state and javascript:  # the widget manager would come from a CDN: refused
            assert refused, "the page asked for nothing from the network"
        browser.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_static_copy_is_readable_in_light_and_dark_pages(exported, keras, tmp_path, theme):
    """Every text of the static view >= 4.5:1: in nbconvert's light and dark themes, and in
    the standalone page of ``hw.save_html`` under the reader's light or dark preference."""
    from playwright.sync_api import sync_playwright

    import hubwidgets as hw

    pages, _counts = exported
    keras.utils.set_random_seed(0)  # the model: a frozen MobileNetV2 base, a new head
    base = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35,
                                          input_shape=(96, 96, 3))
    base.trainable = False
    model = keras.Sequential([keras.Input((96, 96, 3)), base,
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, name="head")], name="transfer")
    standalone = hw.save_html(model, tmp_path / "model.html")
    with sync_playwright() as p:
        for path in (pages[True, theme], standalone):
            browser, page, _refused = _offline_page(p, path, True, color_scheme=theme)
            if path == standalone and theme == "light":  # the README's picture
                page.set_viewport_size({"width": 1000, "height": 820})
                page.screenshot(path=str(DOCS / "static-view.png"))
            page.locator("details:not([open]) > summary").evaluate_all(
                "els => els.forEach(e => e.click())")  # every row shown and measured
            texts = page.evaluate(CONTRAST_JS, page.locator(".hw-static").element_handle())
            assert len(texts) > 20 and any(t["svg"] for t in texts), texts
            bad = [t for t in texts if t["ratio"] < WCAG_AA]
            assert bad == [], f"{path.name} {theme}: {bad[:10]}"
            browser.close()


def test_the_activations_tab_draws_the_probe(jupyter_lab):
    """``explore(model, probe=(x, y))``: the Activations tab draws the heatmap (the dead
    convolution marked), the gradient bars (the frozen convolution at zero) and the feature
    maps; the explorer's row carries the dead badge."""
    from playwright.sync_api import expect, sync_playwright

    OUTPUT_DIR.mkdir(exist_ok=True)
    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/activations.ipynb?reset",
                              console_errors, dialogs)
        cell = _run_first_cell(page).nth(0)
        out = cell.locator(".jp-OutputArea")
        expect(out.locator(".hw-badge-dead").first).to_contain_text("dead 50%", timeout=120_000)
        out.get_by_role("tab", name="Activations").click()
        panel = out.locator(".hw-activations")
        expect(panel.locator(".js-plotly-plot")).to_have_count(3, timeout=60_000)
        expect(panel.locator(".gtitle", has_text="Activations on a batch of 6")).to_be_visible()
        expect(panel.locator(".gtitle", has_text="Gradient norm per layer")).to_be_visible()
        expect(panel.locator(".gtitle", has_text="conv: 8 of 8 channels, sample 0")).to_be_visible()
        expect(panel.locator(".ytick", has_text="conv  ☠ 50% dead")).to_have_count(1)
        expect(panel.locator(".ytick", has_text="conv ❄")).to_have_count(1)
        expect(panel.locator(".bartext", has_text="frozen")).to_have_count(1)
        expect(panel.locator(".heatmaplayer image, .heatmaplayer path")).not_to_have_count(0)
        panel.screenshot(path=str(DOCS / "activations.png"))  # the README's picture
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []


def test_lora_from_the_row_menu_asks_first_and_badges_the_layer(jupyter_lab):
    """"LoRA…" in a row menu: its inline form says it cannot be undone before anything changes,
    Keras' own code is shown, the row gets its "LoRA r4" badge (an int8 layer its "int8"), and
    the kernel has the adapters with the base frozen."""
    from playwright.sync_api import expect, sync_playwright

    console_errors: list[str] = []
    dialogs: list[str] = []

    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/lora.ipynb?reset", console_errors, dialogs)
        cells = _run_first_cell(page)
        stem = page.locator(".hw-row", has=page.locator(".hw-name", has_text="stem"))
        expect(stem).to_be_visible(timeout=120_000)
        head = page.locator(".hw-row", has=page.locator(".hw-name", has_text="head"))
        expect(head.locator(".hw-badge-quant")).to_have_text("int8", timeout=30_000)
        stem.locator(".hw-menu").select_option("enable_lora")
        form = page.locator(".hw-rows .hw-form")  # asks first, in the row: nothing changed yet
        expect(form.locator(".hw-form-question")).to_contain_text("cannot be undone")
        assert page.locator(".hw-badge-lora").count() == 0
        expect(form.locator("input")).to_have_value("4")
        form.locator("input").press("Enter")
        expect(page.locator(".hw-code")).to_contain_text(
            "model.get_layer('stem').enable_lora(4)", timeout=30_000)
        expect(stem.locator(".hw-badge-lora")).to_have_text("LoRA r4", timeout=30_000)
        expect(page.locator(".hw-message")).to_contain_text("cannot be undone")
        run_cell(page, cells.nth(1))
        expect(page.locator(".jp-RenderedText", has_text="LORA")).to_contain_text(
            "LORA 4 False True", timeout=60_000)
        browser.close()
    assert _our_errors(console_errors) == []
    assert dialogs == []


def test_where_styles_are_stripped_each_row_reads_as_one_indented_line(keras):
    """GitHub drops <style> and style attributes from a notebook's HTML: the static copy's
    rows then read as ``name · Class · shape · N params · status`` lines, nested ones
    indented, and the nested model still opens."""
    import re as regex

    from playwright.sync_api import expect, sync_playwright

    import hubwidgets as hw

    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="inner_a")],
                             name="block")
    block.trainable = False
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="stem"), block],
                             name="plain")
    stripped = regex.sub(r"<style>.*?</style>", "", hw.to_html(model), flags=regex.S)
    stripped = regex.sub(r' style="[^"]*"', "", stripped)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_content(stripped)
        rows = page.locator(".hw-s-row")
        assert rows.nth(1).inner_text() == "\u2003stem · Dense · (None, 4) · 20 params"
        assert rows.nth(2).inner_text().startswith("\u2003block · Sequential · (None, 4) · "
                                                   "20 params · \u2744 frozen")
        expect(rows.nth(3)).to_be_hidden()
        page.locator("summary", has_text="block").click()
        expect(rows.nth(3)).to_have_text(regex.compile("^\u2003\u2003inner_a · Dense"))
        browser.close()


def test_a_large_models_overview_fills_in_from_the_background(jupyter_lab):
    """explore() of a "large" model returns with the tree; the statistics come from a
    thread, step by step, while the next cell runs; the browser's overview ends with every
    row drawn and the progress bar gone, with no console error."""
    from playwright.sync_api import expect, sync_playwright

    console_errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/background.ipynb?reset",
                              console_errors, dialogs)
        cells = _run_first_cell(page)
        expect(page.locator(".hw-row .hw-name", has_text="d11")).to_be_visible(timeout=120_000)
        run_cell(page, cells.nth(1))  # the kernel is free while the thread works
        expect(cells.nth(1).locator(".jp-RenderedText")).to_contain_text("NEXT CELL RAN",
                                                                         timeout=60_000)
        run_cell(page, cells.nth(2))
        expect(cells.nth(2).locator(".jp-RenderedText")).to_contain_text("WAITED True 100",
                                                                         timeout=120_000)
        expect(page.locator(".hw-weights .widget-hprogress")).to_be_hidden(timeout=30_000)
        # the heatmap the browser draws has a non-empty row for each of the 12 layers
        rows = page.wait_for_function(
            """() => {
                const plot = document.querySelector('.hw-weights .js-plotly-plot');
                const heat = plot && (plot._fullData || []).find(t => t.type === 'heatmap');
                if (!heat || !heat.z || heat.z.length !== 12) return null;
                const filled = Array.from(heat.z, row => Math.max(...Array.from(row)));
                return filled.every(v => v > 0) ? filled.length : null;
            }""", timeout=60_000).json_value()
        assert rows == 12
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []
# -- random clicks, keys and text in the dashboard ------------------------------------------

FUZZ_SECONDS = 30
FUZZ_SEED = 27
UI_STATE_JS = """() => {
  const root = document.querySelector('.jp-OutputArea-output .hw-explorer');
  const toggle = (r) => { const t = r.querySelector('.hw-toggle');
    return !t ? null : t.indeterminate ? 'mixed' : t.checked ? 'trainable' : 'frozen'; };
  const label = (r) => { const b = r.querySelector('.hw-badge-fixed');
    if (b) return 'not trained';
    const t = r.querySelector('.hw-train-label');
    return t ? (t.textContent.startsWith('trainable') ? 'trainable' : 'frozen') : null; };
  return {
    totals: root.querySelector('.hw-totals').textContent,
    nodes: [...root.querySelectorAll('.hw-row[data-kind=node]')].map(r => [r.dataset.path, toggle(r)]),
    variables: [...root.querySelectorAll('.hw-row[data-kind=variable]')].map(r => [r.dataset.path, label(r)]),
  };
}"""
HEAD_BARS_JS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(
    (p) => (p.querySelector('.gtitle') || {}).textContent?.includes('fuzz/head'));
  if (plots.length !== 1) return null;
  return (plots[0]._fullData || []).filter((t) => t.type === 'bar').map(
    (t) => [t.name, Array.from(t.y || [], Number)]);
}"""


def _fuzz_step(page, rng, explorer) -> str:
    """One random action on the dashboard: what was done, for the failure message."""
    kind = rng.choice(["row", "row", "caret", "toggle", "toggle", "menu", "menu", "search",
                       "button", "button", "key", "key", "key"])
    if kind == "search":
        text = rng.choice(["", "", "inner", "head", "stem|head", "[", "(a", ".*", "<b>x",
                           "block/inner_b", "zzz", "\\", "a" * 300])
        explorer.locator(".hw-search").fill(text)
        return f"search {text[:20]!r}"
    if kind == "key":
        key = rng.choice(["ArrowDown", "ArrowUp", "ArrowLeft", "ArrowRight", "Enter", " ",
                          "Escape", "Home", "z", "Delete"])
        explorer.locator(".hw-table").focus()
        page.keyboard.press("Space" if key == " " else key)
        return f"key {key!r}"
    if kind == "button":
        buttons = explorer.locator(".hw-toolbar button")
        shown = buttons.count()  # counted once: the rows redraw under the pointer
        if shown == 0:
            return "button: no explorer shown"
        target = buttons.nth(rng.randrange(shown))
        name = target.inner_text()
        if target.is_enabled():
            target.click(timeout=2_000)
        return f"button {name!r}" + _answer_form(rng, explorer)
    selector = {"row": ".hw-row .hw-name", "caret": ".hw-caret", "toggle": ".hw-toggle",
                "menu": ".hw-menu"}[kind]
    targets = explorer.locator(selector)
    shown = targets.count()
    if shown == 0:
        return f"{kind}: none shown"
    index = rng.randrange(shown)
    target = targets.nth(index)
    if kind == "menu":
        value = rng.choice(["scale_weights", "reset_weights", "prune_weights", "add_noise",
                            "restore_snapshot", "enable_lora", ""])
        target.select_option(value, timeout=2_000)
        return f"menu {index} {value}" + _answer_form(rng, explorer)
    target.click(timeout=2_000)
    return f"{kind} {index}"


def _answer_form(rng, explorer) -> str:
    """Answer the inline form an action opened, if one is open: a good, bad or no number,
    sent with Enter or OK, or closed with Escape or Cancel."""
    form = explorer.locator(".hw-form")
    if form.count() == 0:
        return ""
    field = form.first.locator("input").first
    if rng.random() < 0.15:
        if rng.random() < 0.5:
            field.press("Escape", timeout=2_000)
        else:
            form.first.locator(".hw-form-cancel").click(timeout=2_000)
        return ", form closed"
    text = rng.choice(["2", "0.5", "0", "-1", "abc", "", "1e400", "nan", "4", "0.01", " 3 ",
                       "1e-30"])
    field.fill(text, timeout=2_000)
    if rng.random() < 0.5:
        field.press("Enter", timeout=2_000)
    else:
        form.first.locator(".hw-form-ok").click(timeout=2_000)
    return f", form {text!r}"


def test_random_clicks_keys_and_text_leave_the_ui_and_the_model_in_agreement(jupyter_lab):
    """For a bounded time, random (seeded) clicks on rows, carets, toggles and toolbar
    buttons, random row-menu edits (their inline forms answered with good, bad and no
    numbers, or closed), with no browser dialog ever,
    random text in the search box and random keys in the table.  Then: no console error of
    ours, no traceback in any output, and a cell that reads the model with Keras and numpy
    agrees with what the page shows: every row's toggle, every variable's label, the totals,
    and the histograms of the selected layer's weights."""
    import json
    import random

    from playwright.sync_api import expect, sync_playwright

    rng = random.Random(FUZZ_SEED)
    console_errors: list[str] = []
    dialogs: list[str] = []
    done: list[str] = []

    with sync_playwright() as p:
        browser, page = _open(p, f"{jupyter_lab}/lab/tree/fuzz.ipynb?reset", console_errors, dialogs)
        cells = _run_first_cell(page)
        explorer = cells.nth(0).locator(".hw-explorer")
        expect(explorer.locator(".hw-row .hw-name", has_text="head")).to_be_visible(
            timeout=120_000)
        news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
        if news.count():
            news.first.click()
        log_start = LAB_LOGS[-1].stat().st_size
        end = time.monotonic() + FUZZ_SECONDS
        while time.monotonic() < end:
            try:
                done.append(_fuzz_step(page, rng, explorer))
            except Exception as error:  # noqa: BLE001 - a row redrawn under the pointer
                if "Timeout" not in type(error).__name__:
                    raise
                done.append(f"(timed out: {done[-1] if done else ''})")
            page.wait_for_timeout(rng.choice([0, 20, 100, 300]))
        # settle: every message handled, every row listed, the head selected
        explorer.locator(".hw-search").fill("")
        page.wait_for_timeout(500)  # the search box sends its text after 150 ms
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
        closed = explorer.locator(".hw-row[data-kind=node][data-expandable='1']"
                                  "[data-expanded='']")
        for _ in range(20):  # expand every node (the rows redraw after each)
            if closed.count() == 0:
                break
            path = closed.first.get_attribute("data-path")
            closed.first.locator(".hw-caret").click()
            expect(explorer.locator(f".hw-row[data-kind=node][data-path='{path}']")).to_have_attribute(
                "data-expanded", "1", timeout=10_000)
        explorer.locator(".hw-row[data-kind=node] .hw-name", has_text="head").click()
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
        run_cell(page, cells.nth(1))
        oracle_text = page.locator(".jp-RenderedText", has_text="ORACLE")
        expect(oracle_text).to_be_visible(timeout=60_000)
        oracle = json.loads(oracle_text.inner_text().split("ORACLE", 1)[1].splitlines()[0])
        trail = f"after {len(done)} actions: {done[-15:]}"

        def shown_and_expected():
            ui = page.evaluate(UI_STATE_JS)
            numbers = [int(n.replace(",", "")) for n in re.findall(r"[\d,]+(?= (?:params|"
                                                                    r"trainable|non-))",
                                                                    ui["totals"])]
            shown = dict(totals=numbers,
                         nodes={p: s for p, s in ui["nodes"] if p in oracle["nodes"]},
                         variables=dict(ui["variables"]))
            expected = dict(totals=[oracle["params"], oracle["trainable"], oracle["frozen"]],
                            nodes=oracle["nodes"],
                            variables={p: oracle["variables"].get(p)
                                       for p in shown["variables"]})
            return shown, expected

        deadline = time.monotonic() + 20
        shown, expected = shown_and_expected()
        while shown != expected and time.monotonic() < deadline:
            page.wait_for_timeout(250)
            shown, expected = shown_and_expected()
        assert shown == expected, trail
        assert len(shown["variables"]) >= 8, shown  # every layer's variables were listed
        bars = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            bars = page.evaluate(HEAD_BARS_JS)
            drawn = {name.rsplit("/", 1)[-1]: y for name, y in bars or []}
            if drawn == oracle["head"]:
                break
            page.wait_for_timeout(250)
        drawn = {name.rsplit("/", 1)[-1]: y for name, y in bars or []}
        assert drawn == oracle["head"], json.dumps([drawn, oracle, trail])
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        stderr = page.locator(".jp-OutputArea-output[data-mime-type="
                              "'application/vnd.jupyter.stderr']").all_inner_texts()
        browser.close()
    assert not [o for o in outputs if "Traceback" in o], (outputs, trail)
    assert not [o for o in stderr if "Error" in o], (stderr, trail)
    with open(LAB_LOGS[-1], errors="replace") as log:  # a comm handler's error goes here
        log.seek(log_start)
        kernel_log = log.read()
    assert "Traceback" not in kernel_log, (kernel_log[-3000:], trail)
    assert _our_errors(console_errors) == [], trail
    assert dialogs == [], trail
    assert len(done) >= 40, done  # the fuzz did run for its time
