"""End to end: a real Jupyter server, driven by headless Chromium through Playwright, in both
front ends that ``pip install`` sets up: JupyterLab 4 and Notebook 7.

Opens a notebook that builds a small nested model and calls explore(model), expands a nested
layer, clicks its freeze toggle, and reads back from the kernel that the model changed.
"""

from __future__ import annotations

import os
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

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import keras, hubwidgets as hw\n"
            "block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='inner_a'),\n"
            f"    keras.layers.Dense(4, name={EVIL!r})], name='block')\n"
            "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name='stem'), block],"
            " name='e2e')\n"
            "hw.explore(model)"),
        nbformat.v4.new_code_cell(
            "print('TRAINABLE', model.get_layer('block').get_layer('inner_a').trainable)"),
    ]
    nbformat.write(nb, path)


def _executed_notebook(path: Path) -> None:
    """The notebook, run by nbclient, saved with its outputs and widget state (what
    "Save Widget State Automatically" or ``jupyter nbconvert --execute`` writes)."""
    from nbclient import NotebookClient

    _notebook(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells = nb.cells[:1]
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata["widgets"]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does).")
    root = tmp_path_factory.mktemp("lab")
    _notebook(root / "e2e.ipynb")
    _notebook(root / "e2e_notebook7.ipynb")
    _executed_notebook(root / "saved_state.ipynb")
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1",
           f"--port={port}", "--ServerApp.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None", f"--LabApp.workspaces_dir={root / 'workspaces'}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "lab.log", "w")
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


def _open(p, url: str, console_errors: list[str], dialogs: list[str]):
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    return browser, page


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
        # nothing ran in this session's kernel: the view came from the saved state
        assert page.locator(".jp-InputPrompt").first.inner_text() in ("[ ]:", "[1]:")
        page.screenshot(path=str(OUTPUT_DIR / "saved_state.png"), full_page=False)
        browser.close()
    assert dialogs == []
    assert _our_errors(console_errors) == []
