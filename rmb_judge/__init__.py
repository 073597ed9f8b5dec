"""rmb-judge: evaluate LLM judges and reward models on the RMB benchmark."""

from __future__ import annotations

from typing import Any

__all__ = ["parse_verdict"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`from rmb_judge import parse_verdict`, imported when first asked for (the command
    line starts without it)."""
    if name == "parse_verdict":
        from .verdicts import parse_verdict

        return parse_verdict
    raise AttributeError(f"module 'rmb_judge' has no attribute {name!r}")
