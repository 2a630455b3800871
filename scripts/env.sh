# Sourced by main.sh and test.sh: create the virtual environment (VENV, default .venv) if needed and
# install xentcheck with every extra, pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
VENV="$(cd "$VENV" && pwd)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt ".[all,test]"
export PATH="$VENV/bin:$PATH"
