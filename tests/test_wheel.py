"""What a user installs: ``python -m build`` makes an sdist and a wheel; the wheel carries
every file the package reads at run time, and installed into a clean virtual environment
(its own files only: the dependencies are this environment's, made visible by a ``.pth``
file, so nothing is downloaded) it imports without TensorFlow, inspects a Keras model and
shows ``explore()`` in a kernel of that environment, run by nbclient.

Without a C compiler the wheel still builds, without the optional statistics kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "hubwidgets"
KERNEL_NAME = "hubwidgets-wheel-smoke"


def _package_files() -> set[str]:
    """The package's files in the source tree, as paths inside a wheel (``hubwidgets/...``);
    built and cached files left out."""
    return {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".so", ".pyd")}


def _clean_env(env_dir: Path, **extra: str) -> dict[str, str]:
    """A new user's environment: no PYTHONPATH, this checkout nowhere on the path."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {**keep, "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
            "VIRTUAL_ENV": str(env_dir), **extra}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build``: the sdist, then the wheel built from that sdist. Not isolated:
    the build requirements are the test extra's, so nothing is downloaded."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                          str(ROOT)], capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    [path] = dist.glob("hubwidgets-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory, wheel) -> Path:
    """A clean venv with the wheel installed (``--no-deps``); the running interpreter's
    site-packages are appended to its path for the dependencies, after its own."""
    env_dir = tmp_path_factory.mktemp("wheel") / "env"
    venv.EnvBuilder(with_pip=False, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(  # this environment's pip, installing into the new one
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, env=_clean_env(env_dir))
    assert install.returncode == 0, install.stderr[-3000:]
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # a path line in a .pth file only extends sys.path: the .pth files of the directories it
    # names (this checkout's editable install among them) are not run
    dependencies = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    assert str(ROOT) not in dependencies
    (Path(own) / "_test_environment.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    kernelspec = subprocess.run(
        [str(python), "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME],
        capture_output=True, text=True, env=_clean_env(env_dir))
    assert kernelspec.returncode == 0, kernelspec.stderr[-3000:]
    return env_dir


def test_the_wheel_carries_every_file_of_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    static = {p.relative_to(ROOT).as_posix() for p in (PACKAGE / "widgets" / "static").iterdir()}
    assert {"hubwidgets/widgets/static/explorer.js", "hubwidgets/widgets/static/explorer.css",
            "hubwidgets/widgets/static/figure.js"} <= static
    assert static <= names
    assert _package_files() - names == set()
    # this machine has a C compiler: the statistics kernel is compiled into the wheel
    assert [n for n in names if n.startswith("hubwidgets/model/_host_reduce.") and
            n.endswith(".so")], sorted(names)


def test_the_sdist_carries_the_package_and_its_build_files(dist):
    [sdist] = dist.glob("hubwidgets-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"pyproject.toml", "setup.py", "README.md"} <= names
    assert _package_files() - names == set()


def test_without_a_c_compiler_the_wheel_builds_without_the_kernel(dist, tmp_path):
    """What a platform without a C compiler gets: the same wheel less the optional
    statistics kernel (numpy computes the statistics instead; tests/test_stats.py runs
    them both ways)."""
    [sdist] = dist.glob("hubwidgets-*.tar.gz")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", str(tmp_path), str(sdist)],
        capture_output=True, text=True, env={**os.environ, "CC": "/nonexistent/cc"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    [wheel] = tmp_path.glob("hubwidgets-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _package_files() - names == set()
    assert not [n for n in names if n.endswith((".so", ".pyd"))]


def test_the_installed_wheel_imports_without_tensorflow(wheel_env, tmp_path):
    check = subprocess.run([str(wheel_env / "bin" / "python"), "-c", (
        "import json, sys, hubwidgets\n"
        "print(json.dumps({'file': hubwidgets.__file__, 'path': sys.path,\n"
        "                  'tensorflow': 'tensorflow' in sys.modules}))\n")],
        cwd=tmp_path, capture_output=True, text=True, env=_clean_env(wheel_env))
    assert check.returncode == 0, check.stderr[-3000:]
    found = json.loads(check.stdout)
    assert Path(found["file"]).is_relative_to(wheel_env), found["file"]
    assert not found["tensorflow"]
    assert str(ROOT) not in found["path"] and str(PACKAGE) not in found["path"]


SMOKE_CELLS = [
    "import sys, hubwidgets as hw\n"
    "print('IMPORTED', hw.__file__, 'tensorflow' in sys.modules)",
    "import keras\n"
    "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name='d')], name='m')\n"
    "print('PARAMS', hw.inspect(model).root.params, model.count_params())",
    "dashboard = hw.explore(model)\n"
    "dashboard.wait()\n"
    "dashboard",
]

RUN_SMOKE = """
import json, sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in json.loads(sys.argv[1])])
NotebookClient(nb, timeout=300, kernel_name=sys.argv[2], allow_errors=False).execute()
nbformat.write(nb, sys.argv[3])
"""


def _stdout(outputs: list) -> str:
    return "".join(o["text"] for o in outputs if o.get("name") == "stdout")


def test_explore_runs_in_a_kernel_of_the_installed_wheel(wheel_env, tmp_path):
    executed = tmp_path / "smoke.ipynb"
    run = subprocess.run(
        [str(wheel_env / "bin" / "python"), "-c", RUN_SMOKE, json.dumps(SMOKE_CELLS),
         KERNEL_NAME, str(executed)],
        cwd=tmp_path, capture_output=True, text=True, env=_clean_env(wheel_env))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    nb = nbformat.read(executed, as_version=4)
    imported, inspected, explored = (cell["outputs"] for cell in nb["cells"])
    _, location, tensorflow = _stdout(imported).split()
    assert Path(location).is_relative_to(wheel_env) and tensorflow == "False"
    assert _stdout(inspected).split() == ["PARAMS", "8", "8"]
    [view] = [o for o in explored if o["output_type"] == "execute_result"]
    model_id = view["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state[model_id]["model_name"] == "VBoxModel"
    # the explorer's front end, read from the wheel's static files, is in the widget state
    explorer_js = (PACKAGE / "widgets" / "static" / "explorer.js").read_text()
    assert [m for m in state.values() if m["state"].get("_esm") == explorer_js]
    # where widgets cannot render, the text summary
    assert "Total params: 8 (32 B)" in view["data"]["text/plain"]
