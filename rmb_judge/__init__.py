"""rmb-judge: evaluate LLM judges and reward models on the RMB benchmark."""

from .verdicts import parse_verdict

__all__ = ["parse_verdict"]
__version__ = "0.1.0"
