"""The run folder: `summary.json`, `samples.jsonl` and `manifest.json`.

Files are written to a temporary name and renamed, so a reader (or a crash) never sees
half a file.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .retry import redact
from .scoring import Judged

PACKAGES = ("rmb-judge", "openai", "anthropic", "aiohttp", "tenacity", "rich", "genai-prices",
            "transformers", "torch", "tokenizers")


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def sample_line(j: Judged, comparison_correct: float | None, simulated: bool) -> dict[str, Any]:
    c = j.presentation.comparison
    return {
        "simulated": simulated,
        "category_path": c.record.category_path,
        "uid": c.record.uid,
        "loser_index": c.loser_index,
        "order": j.presentation.order,
        "verdict": j.verdict,
        "correct": j.correct,
        "comparison_correct": comparison_correct,
        "raw": j.raw,
        "votes": list(j.votes) if len(j.votes) > 1 else None,
        "cached": j.cached,
        "error": j.error,
        "refused": j.refused,
        "truncated": j.truncated,
        "preferred_model": c.preferred.model,
        "other_model": c.other.model,
    }


def write_samples(path: Path, lines: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def manifest(
    judge: str,
    simulated: bool,
    settings: dict[str, Any],
    data_root: Path,
    files: dict[str, str],
    argv: list[str],
) -> dict[str, Any]:
    """What it takes to reproduce the run: spec, settings, versions, data hashes, command."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "judge": judge,
        "simulated": simulated,
        "settings": settings,
        "command": [safe_argument(a) for a in argv],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "data": {
            "root": str(data_root),
            "files": files,
        },
    }


URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")


def safe_argument(argument: str) -> str:
    """A command-line argument fit for a file: no key, no user:token@ in a URL."""
    return redact(URL_CREDENTIALS.sub(r"\1", argument))
