# Sourced by bin/test and bin/rmb-judge: create or update .venv from pyproject.toml.
# Re-installs only when pyproject.toml is newer than the last install stamp.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.rmb-judge-installed"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" >&2
fi
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  echo "rmb-judge: installing into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # torch first, pinned: the CPU build comes from local disk; unpinned would pull a CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT[local,test]" >&2
  touch "$STAMP"
fi
