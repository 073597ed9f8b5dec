"""Work a rerun need not redo: the request keys a plan renders and hashes (for all of RMB,
~115 MB of prompt text). Kept in the user cache folder (`memo/`), named by a fingerprint of
everything the keys depend on (the data files' SHA-256, the selection, the template, the
request settings, and the source of the code that renders and keys requests), written
atomically, pruned to the most recently used, and ignored whenever unreadable. A memo never
decides a result: with the same fingerprint the keys are the same ones a fresh plan would
compute.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from .records import user_cache_dir

KEEP = 16  # memo files kept (the most recently used)


@cache
def code_digest(*modules: str) -> str:
    """SHA-256 over the source of these modules (paths under rmb_judge/): a memo made by
    other code is never read."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes())
    return digest.hexdigest()


@cache
def file_digest(path: str) -> str:
    """SHA-256 of a source file (a benchmark's module, wherever it is)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _path(name: str) -> Path:
    return user_cache_dir() / "memo" / f"{name}.marshal"


def read(name: str) -> Any:
    """The memo's value, or None when there is none (or it cannot be read)."""
    path = _path(name)
    try:
        with path.open("rb") as f:
            value = marshal.load(f)
        os.utime(path)  # recently used: kept longest
        return value
    except (OSError, EOFError, ValueError, TypeError):
        return None


def write(name: str, value: Any) -> None:
    """Store a memo atomically (best effort: a full disk or a read-only home costs only time)."""
    path = _path(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                marshal.dump(value, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        old = sorted(path.parent.glob("*.marshal"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]
        for stale in old:
            stale.unlink(missing_ok=True)
    except OSError:
        pass
