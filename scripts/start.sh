#!/usr/bin/env bash
# Install hubwidgets (with the notebooks' extra) into .venv and open JupyterLab on the tour
# notebook; every notebook in notebooks/ runs in that environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh notebooks  # hubwidgets and what every notebook imports
ROOT_FLAG=()
[ "$(id -u)" = 0 ] && ROOT_FLAG=(--allow-root)
exec .venv/bin/jupyter lab --ip 127.0.0.1 "${ROOT_FLAG[@]}" notebooks/01_tour.ipynb
