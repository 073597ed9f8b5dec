"""Sorting provider errors into rate-limit, transient and fatal, and how long to wait.

Both SDKs raise exceptions carrying the HTTP status and response, so one classifier
serves every provider (as inspect_ai's model/_retry.py does). Retried: 408, 409, 429,
5xx (incl. Anthropic's 529 overloaded), connection errors, timeouts and malformed bodies.
Fatal (stop the whole run at once): 400, 401, 403, 404, 422 and anything unknown.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from enum import Enum

import anthropic
import openai
from tenacity import RetryCallState, wait_exponential_jitter

RETRY_STATUS = {408, 409, 429}


class ErrorKind(Enum):
    RATE_LIMIT = "rate_limit"
    TRANSIENT = "transient"
    FATAL = "fatal"


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def classify(exc: BaseException) -> ErrorKind:
    status = status_of(exc)
    if status == 429:
        return ErrorKind.RATE_LIMIT
    if status is not None:
        return ErrorKind.TRANSIENT if status in RETRY_STATUS or status >= 500 else ErrorKind.FATAL
    transient = (
        openai.APIConnectionError,  # includes APITimeoutError
        anthropic.APIConnectionError,
        openai.APIResponseValidationError,
        anthropic.APIResponseValidationError,
        json.JSONDecodeError,
        asyncio.TimeoutError,
        ConnectionError,
    )
    return ErrorKind.TRANSIENT if isinstance(exc, transient) else ErrorKind.FATAL


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, then `retry-after`), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def describe(exc: BaseException) -> str:
    """A short, key-free one-line description of a provider error."""
    status = status_of(exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = " ".join(str(message).split())[:300]
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"


class wait_for_server(wait_exponential_jitter):
    """The server's retry-after when it gives one (plus up to 10% jitter, so a crowd of
    waiting requests does not return in one burst), else exponential backoff with jitter."""

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = retry_after(outcome.exception()) if outcome and outcome.failed else None
        if asked is None:
            return super().__call__(retry_state)
        return min(asked, self.max) * (1 + random.random() * 0.1)
