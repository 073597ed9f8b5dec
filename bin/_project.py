"""The Python benchmarks run in the project's virtualenv (the one `bin/test` builds), whichever
python starts them, so `bin/bench-...` works as typed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def use_venv() -> None:
    """Re-run this script under the virtualenv's python, unless it already runs there."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run bin/test once (it builds the virtualenv)")
    os.execv(python, [str(python), *sys.argv])
