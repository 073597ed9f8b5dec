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
import re
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


TRANSIENT_ERRORS = (
    openai.APIConnectionError,  # includes APITimeoutError
    anthropic.APIConnectionError,
    openai.APIResponseValidationError,  # a 200 whose body is not the API's (proxy page, cut off)
    anthropic.APIResponseValidationError,
    json.JSONDecodeError,
    asyncio.TimeoutError,
    ConnectionError,
)


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, TRANSIENT_ERRORS):
        return ErrorKind.TRANSIENT
    status = status_of(exc)
    if status == 429:
        # OpenAI answers an exhausted account with a 429 too; waiting cannot fix that
        code = getattr(exc, "code", None) or (getattr(exc, "body", None) or {}).get("code")
        return ErrorKind.FATAL if code == "insufficient_quota" else ErrorKind.RATE_LIMIT
    if status is not None and (status in RETRY_STATUS or status >= 500):
        return ErrorKind.TRANSIENT
    return ErrorKind.FATAL


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


# API-key-like tokens, including the masked form some 401 bodies repeat ("sk-ab...cdef")
KEY_LIKE = re.compile(r"\b(sk-|sk_|key-)[A-Za-z0-9_\-\*\.]{4,}")


def describe(exc: BaseException) -> str:
    """A short, key-free one-line description of a provider error."""
    status = status_of(exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = KEY_LIKE.sub(r"\1[redacted]", " ".join(str(message).split()))[:300]
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"


RATE_LIMIT_RETRIES = 100


class stop_after_failures:
    """Give up after `max_retries` transient failures, or after RATE_LIMIT_RETRIES 429s:
    a 429 is the server asking us to wait, not a failure, so it has its own, larger budget.
    One instance per request."""

    def __init__(self, max_retries: int):
        self.max_retries = max_retries
        self.counts = {ErrorKind.TRANSIENT: 0, ErrorKind.RATE_LIMIT: 0}

    def __call__(self, retry_state: RetryCallState) -> bool:
        kind = classify(retry_state.outcome.exception())
        if kind in self.counts:
            self.counts[kind] += 1
        return (
            self.counts[ErrorKind.TRANSIENT] > self.max_retries
            or self.counts[ErrorKind.RATE_LIMIT] > RATE_LIMIT_RETRIES
        )


class wait_for_server(wait_exponential_jitter):
    """The server's retry-after when it gives one (plus up to 10% jitter, so a crowd of
    waiting requests does not return in one burst), else exponential backoff with jitter."""

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = retry_after(outcome.exception()) if outcome and outcome.failed else None
        if asked is None:
            return super().__call__(retry_state)
        return min(asked, self.max) * (1 + random.random() * 0.1)
