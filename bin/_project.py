"""The Python benchmarks run in the project's virtualenv (the one `bin/test` builds), whichever
python starts them, so `bin/bench-...` works as typed; where there is none (a GPU machine set
up by hand), in the python that started them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def use_venv() -> None:
    """Re-run this script under the virtualenv's python, unless it already runs there or
    there is no virtualenv."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() != VENV.resolve() and python.exists():
        os.execv(python, [str(python), *sys.argv])
