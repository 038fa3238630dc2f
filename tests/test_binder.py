"""binder/ builds: its requirements install into a clean virtual environment, where
hubwidgets imports, its C kernel is compiled, it inspects a model and computes statistics,
the widget front-end extensions are present, and every notebook in notebooks/ runs top to
bottom (what a new user's tour does: `bash scripts/start.sh` installs the same extra).

One clean venv serves every check; pip reads its wheels from its cache or index as usual,
and skips byte-compiling what it installs (the slow part), so only what runs is compiled."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# run inside the clean venv: execute each notebook with a kernel of that venv, then one
# extra cell says which hubwidgets the kernel imported
RUN_NOTEBOOKS = """
import json, sys
import nbformat
from nbclient import NotebookClient

workdir, paths = sys.argv[1], sys.argv[2:]
report = {}
for path in paths:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import hubwidgets as _hw, sys as _sys; print('KERNEL', _hw.__file__, _sys.prefix)"))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": workdir}})
    try:
        client.execute()
    except Exception as exc:  # the cell's error is in the outputs; keep going
        report[path] = {"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
        continue
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    kernel = [line for o in outputs for line in (o.get("text") or "").splitlines()
              if line.startswith("KERNEL ")]
    report[path] = {"error": errors[0]["evalue"] if errors else None, "kernel": kernel}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory):
    """A clean venv with `pip install -r binder/requirements.txt`, as repo2docker does."""
    env_dir = tmp_path_factory.mktemp("binder") / "binder-env"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-compile",  # TensorFlow's thousands of modules: compiled when imported instead
         "-r", "binder/requirements.txt"], cwd=ROOT, capture_output=True, text=True,
        env=_clean_env(env_dir))
    assert install.returncode == 0, install.stderr[-3000:]
    return env_dir


def _clean_env(env_dir):
    """The environment a new user has: no PYTHONPATH pointing at this checkout."""
    keep = {k: v for k, v in os.environ.items()
            if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME")
            or k.startswith("PIP_")}
    return {**keep, "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
            "VIRTUAL_ENV": str(env_dir)}


def test_binder_files_are_what_repo2docker_reads():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert (ROOT / "binder" / "requirements.txt").read_text().split() == [".[notebooks]"]
    start = (ROOT / "scripts" / "start.sh").read_text()
    assert "setup-venv.sh notebooks" in start  # the tour installs the same extra


def test_binder_requirements_install_into_a_clean_venv(binder_env, tmp_path):
    python = binder_env / "bin" / "python"
    check = subprocess.run([str(python), "-c", (
        "import sys, hubwidgets as hw\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import keras\n"
        "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name='d')], name='m')\n"
        "from hubwidgets.model import _host_reduce  # the C kernel, compiled by pip\n"
        "stats = hw.weight_stats(model)['m/d/kernel']\n"
        "assert stats.counts.sum() == 6, stats\n"
        "print(hw.inspect(model).root.params, hw.__file__)\n")],
        cwd=tmp_path, capture_output=True, text=True, env=_clean_env(binder_env))
    assert check.returncode == 0, check.stderr[-3000:]
    params, location = check.stdout.split()
    assert params == "8" and location.startswith(str(binder_env))
    extensions = subprocess.run([str(binder_env / "bin" / "jupyter"), "labextension", "list"],
                                capture_output=True, text=True, env=_clean_env(binder_env))
    listed = extensions.stdout + extensions.stderr
    assert "anywidget" in listed and "@jupyter-widgets/jupyterlab-manager" in listed


def test_every_notebook_runs_in_the_binder_env(binder_env, tmp_path):
    assert NOTEBOOKS, "no notebooks found"
    run = subprocess.run(
        [str(binder_env / "bin" / "python"), "-c", RUN_NOTEBOOKS, str(tmp_path),
         *map(str, NOTEBOOKS)],
        cwd=tmp_path, capture_output=True, text=True, env=_clean_env(binder_env))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(map(str, NOTEBOOKS))
    failed = {Path(p).name: r["error"] for p, r in report.items() if r["error"]}
    assert not failed
    for path, result in report.items():
        [line] = result["kernel"]
        _, location, prefix = line.split()
        assert location.startswith(str(binder_env)) and prefix == str(binder_env), path
