"""binder/ builds: its requirements install into a clean virtual environment, where
hubwidgets imports, its C kernel is compiled, it inspects a model and computes statistics,
and the widget front-end extensions are present."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_binder_files_are_what_repo2docker_reads():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert (ROOT / "binder" / "requirements.txt").read_text().split() == ["."]


def test_binder_requirements_install_into_a_clean_venv(tmp_path):
    env_dir = tmp_path / "binder-env"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-r", "binder/requirements.txt"], cwd=ROOT, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([str(python), "-c", (
        "import sys, hubwidgets as hw\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import keras\n"
        "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name='d')], name='m')\n"
        "from hubwidgets.model import _host_reduce  # the C kernel, compiled by pip\n"
        "stats = hw.weight_stats(model)['m/d/kernel']\n"
        "assert stats.counts.sum() == 6, stats\n"
        "print(hw.inspect(model).root.params, hw.__file__)\n")],
        cwd=tmp_path, capture_output=True, text=True, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert check.returncode == 0, check.stderr[-3000:]
    params, location = check.stdout.split()
    assert params == "8" and location.startswith(str(env_dir))
    extensions = subprocess.run([str(env_dir / "bin" / "jupyter"), "labextension", "list"],
                                capture_output=True, text=True)
    listed = extensions.stdout + extensions.stderr
    assert "anywidget" in listed and "@jupyter-widgets/jupyterlab-manager" in listed
