"""Sorting provider errors, how long to wait, and when to give up.

Both SDKs raise exceptions carrying the HTTP status and response, so one classifier
serves every provider (as inspect_ai's model/_retry.py does):
- rate limit: 429 (wait as the server asks; the whole run slows down);
- transient, retried with backoff: 408, 409, 5xx (incl. Anthropic's 529 overloaded),
  connection errors, timeouts and malformed bodies;
- rejected: a 400/413/422 about this one request (too long for the context window, caught
  by a content filter): retrying cannot help, but the rest of the run can go on;
- fatal, the whole run stops at once: 401, 403, 404, other 4xx, an exhausted account.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

import anthropic
import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

RETRY_STATUS = {408, 409, 429}
REJECTED_STATUS = {400, 413, 422}
CONTENT_FILTER = re.compile(
    r"content[_ ]?(filter|management|policy)|responsibleai|safety system|invalid_prompt", re.I
)
TOO_LONG = re.compile(
    r"context[_ ]length|maximum context|prompt is too long|too many tokens|request_too_large"
    r"|input is too long",
    re.I,
)


class ErrorKind(Enum):
    RATE_LIMIT = "rate_limit"
    TRANSIENT = "transient"
    REJECTED = "rejected"
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


def error_code(exc: BaseException) -> str:
    """The API's error code and message, whatever shape the body came in (proxies send text)."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    parts = [getattr(exc, "code", None), getattr(exc, "message", None)]
    if isinstance(body, dict):
        parts += [body.get("code"), body.get("type"), body.get("message")]
    elif isinstance(body, str):
        parts.append(body)
    return " ".join(str(p) for p in parts if p)


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, TRANSIENT_ERRORS):
        return ErrorKind.TRANSIENT
    status = status_of(exc)
    if status == 429:
        # OpenAI answers an exhausted account with a 429 too; waiting cannot fix that
        return ErrorKind.FATAL if "insufficient_quota" in error_code(exc) else ErrorKind.RATE_LIMIT
    if status is not None and (status in RETRY_STATUS or status >= 500):
        return ErrorKind.TRANSIENT
    if status in REJECTED_STATUS and (is_content_filter(exc) or TOO_LONG.search(error_code(exc))):
        return ErrorKind.REJECTED
    return ErrorKind.FATAL


def is_content_filter(exc: BaseException) -> bool:
    """A provider's content filter refused the prompt (Azure/OpenAI 400 content_filter)."""
    return status_of(exc) in REJECTED_STATUS and bool(CONTENT_FILTER.search(error_code(exc)))


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
        pass
    try:  # an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):  # unreadable: fall back to our own backoff
        return None


# API-key-like tokens, including the masked form some 401 bodies repeat ("sk-ab...cdef")
KEY_LIKE = re.compile(r"\b(sk-|sk_|key-|gsk_|AIza)[A-Za-z0-9_\-\*\.]{4,}")


KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def redact(text: str) -> str:
    """Remove the configured API keys, and anything shaped like a key, from `text`."""
    for name in KEY_VARIABLES:
        key = os.environ.get(name, "")
        if len(key) >= 8:
            text = text.replace(key, "[redacted]")
    return KEY_LIKE.sub(r"\1[redacted]", text)


def describe(exc: BaseException) -> str:
    """A short, key-free one-line description of a provider error."""
    status = status_of(exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = redact(" ".join(str(message).split()))[:300]
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"


RATE_LIMIT_RETRIES = 100


def policy(
    max_retries: int,
    backoff_initial: float = 1.0,
    on_retry: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """How every provider call is retried (live requests and batch API calls alike):
    rate limits and transient errors are retried, rejected and fatal ones are not."""
    return AsyncRetrying(
        retry=retry_if_exception(lambda e: classify(e) in (ErrorKind.RATE_LIMIT, ErrorKind.TRANSIENT)),
        stop=stop_after_failures(max_retries),
        wait=wait_for_server(multiplier=backoff_initial, max=60, jitter=backoff_initial),
        before_sleep=on_retry,
        reraise=True,
    )


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
