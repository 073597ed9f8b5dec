"""Sorting provider errors, how long to wait, and when to give up.

Each provider sorts its own SDK's exceptions (`Provider.classify`) with the helpers here,
which know HTTP and sockets but no SDK (as inspect_ai's model/_retry.py):
- rate limit: 429 (wait as the server asks; the whole run slows down);
- transient, retried with backoff: 408, 409, 5xx (incl. Anthropic's 529 overloaded),
  timeouts, resets and broken or empty 200 answers;
- connect: nothing reached the server (connection refused, DNS, TLS, connect timeout);
  before the endpoint has answered once this stops the run at once, naming the endpoint;
- rejected: a 400/413/422 about this one request (too long for the context window, caught
  by a content filter): retrying cannot help, but the rest of the run can go on;
- fatal, the whole run stops at once: 401, 403, 404, other 4xx, an exhausted account.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from .endpoints import strip_secrets
from .errors import RmbJudgeError

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
    CONNECT = "connect"
    REJECTED = "rejected"
    FATAL = "fatal"


class BrokenAnswer(Exception):
    """A 200 whose body is no usable answer: not the API's shape (a proxy's page, a body cut
    off) or an answer with no text and no refusal. Retried like a 5xx. `response` holds what
    was read (its usage is billed) when the body was a well-formed but empty answer."""

    def __init__(self, message: str, response: Any = None):
        super().__init__(message)
        self.response = response


class LongWait(Exception):
    """The provider asked to wait longer than --max-wait: the run stops instead of hanging."""

    def __init__(self, seconds: float):
        super().__init__(f"the provider asked to wait {seconds:g} s")
        self.seconds = seconds


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an SDK's error: `status_code` (openai, anthropic), or an HTTP-range
    integer `code` (google-genai's APIError; other SDKs' `code` is a string like "rate_limit")."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) and 100 <= code < 600 else None


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
    return chain


def connect_failure(exc: BaseException) -> str | None:
    """Why no connection was made (so nothing was sent or billed), or None. SDKs wrap these
    differently (the openai SDK reports a refused connection as "Request timed out")."""
    import aiohttp

    chain = causes(exc)
    for link in chain:
        if isinstance(link, socket.gaierror):
            return f"cannot resolve the host ({link.strerror or link})"
        if isinstance(link, ssl.SSLError):
            return f"TLS handshake failed ({link.reason or link})"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, aiohttp.ConnectionTimeoutError):
            return "no connection within the timeout"
    for link in chain:
        if isinstance(link, aiohttp.ClientConnectorError):
            return f"cannot connect ({link.os_error.strerror or link.os_error})"
    return None


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


def sort_error(exc: BaseException, transient: tuple[type[BaseException], ...] = ()) -> ErrorKind:
    """The kind of a provider error; `transient` are the SDK's own exception classes for
    timeouts, dropped connections and bodies it could not read. Our own errors (a fatal
    stop decided mid-attempt) are never retried."""
    import aiohttp

    if isinstance(exc, RmbJudgeError):
        return ErrorKind.FATAL
    if connect_failure(exc):
        return ErrorKind.CONNECT
    if isinstance(exc, (*transient, BrokenAnswer, json.JSONDecodeError, asyncio.TimeoutError,
                        ConnectionError, aiohttp.ClientError)):
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


def may_be_billed(exc: BaseException) -> bool:
    """Whether a failed request may still be billed: it reached the server and no error
    status came back (a timeout, a reset, a broken 200), so the server may have answered."""
    return status_of(exc) is None and connect_failure(exc) is None


def is_content_filter(exc: BaseException) -> bool:
    """A provider's content filter refused the prompt (Azure/OpenAI 400 content_filter)."""
    return status_of(exc) in REJECTED_STATUS and bool(CONTENT_FILTER.search(error_code(exc)))


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, then `retry-after`), if any;
    `inf` for a wait too large to represent. Unreadable values count as not given."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:  # an HTTP date
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError, OverflowError):  # unreadable: our own backoff
                return None
        if math.isnan(seconds):
            continue
        return max(0.0, seconds)
    return None


# API-key-like tokens, including the masked form some 401 bodies repeat ("sk-ab...cdef")
KEY_LIKE = re.compile(r"\b(sk-|sk_|key-|gsk_|AIza)[A-Za-z0-9_\-\*\.]{4,}")
# Variables whose values are secrets whatever the provider: every *_API_KEY, *_AUTH_TOKEN, ...
SECRET_VARIABLE = re.compile(r"(API_KEY|AUTH_TOKEN|SECRET|ACCESS_KEY)$")


SHORTEST_SECRET = 8  # characters: a shorter value ("EMPTY", a vLLM key) would match ordinary words


def secret_values(*given: str | None) -> tuple[str, ...]:
    """The secrets this process knows: the values of secret-holding environment variables
    (the API keys of every provider) and `given` (keys passed in code), longest first."""
    values = {value.strip() for name, value in os.environ.items() if SECRET_VARIABLE.search(name)}
    values.update(value.strip() for value in given if value)
    return tuple(sorted((v for v in values if len(v) >= SHORTEST_SECRET), key=len, reverse=True))


def without_secrets(text: str, secrets: Sequence[str]) -> str:
    """`text` with each of `secrets` replaced, and nothing else changed: for a judge's own
    words (an answer that echoes the key must not carry it into the cache or the run folder)."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def redact(text: str) -> str:
    """`text` without the values of secret-holding environment variables (API keys of every
    provider), anything shaped like a key, or URL credentials and query strings."""
    return KEY_LIKE.sub(r"\1[redacted]", strip_secrets(without_secrets(text, secret_values())))


def describe(exc: BaseException) -> str:
    """A short, key-free one-line description of a provider error."""
    status = status_of(exc)
    reason = connect_failure(exc)
    message = reason or getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = redact(" ".join(str(message).split()))[:300]
    if status:
        return f"HTTP {status}: {message}"
    return message if reason else f"{type(exc).__name__}: {message}"


RATE_LIMIT_RETRIES = 100
BACKOFF_MAX = 60.0
MIN_WAIT = 0.5  # seconds: the least we wait when a server asks us to retry at once


def policy(
    classify: Callable[[BaseException], ErrorKind],
    max_retries: int,
    backoff_initial: float = 1.0,
    on_retry: Callable[[RetryCallState], None] | None = None,
    *,
    retryable: frozenset[ErrorKind] = frozenset({ErrorKind.RATE_LIMIT, ErrorKind.TRANSIENT}),
    stopping: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    asked_wait: Callable[[BaseException], float | None] = retry_after,
) -> AsyncRetrying:
    """How a provider call is retried (live requests and batch API calls alike): the kinds
    in `retryable` are retried until their budget is spent or `stopping()` turns true,
    waiting as long as `asked_wait` says the server asked (the provider's reading)."""
    return AsyncRetrying(
        retry=retry_if_exception(lambda e: classify(e) in retryable),
        stop=stop_after_failures(classify, max_retries, stopping),
        wait=wait_for_server(backoff_initial, BACKOFF_MAX, asked_wait),
        before_sleep=on_retry,
        sleep=sleep,
        reraise=True,
    )


class stop_after_failures:
    """Give up after `max_retries` transient failures, or after RATE_LIMIT_RETRIES 429s
    (a 429 is the server asking us to wait, not a failure, so it has its own, larger
    budget), or at once when the run is stopping. One instance per request."""

    def __init__(self, classify: Callable[[BaseException], ErrorKind], max_retries: int,
                 stopping: Callable[[], bool]):
        self.classify = classify
        self.max_retries = max_retries
        self.stopping = stopping
        self.counts = {ErrorKind.RATE_LIMIT: 0}

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.stopping():
            return True
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        kind = ErrorKind.RATE_LIMIT if exc and self.classify(exc) is ErrorKind.RATE_LIMIT else None
        if kind:
            self.counts[kind] += 1
        transient = retry_state.attempt_number - self.counts[ErrorKind.RATE_LIMIT]
        return transient > self.max_retries or self.counts[ErrorKind.RATE_LIMIT] > RATE_LIMIT_RETRIES


class wait_for_server:
    """The server's retry-after when it gives one (plus up to 10% jitter, so a crowd of
    waiting requests does not return in one burst), else exponential backoff with jitter:
    `initial * 2**(n-1)` plus up to `initial`, at most `maximum` (tenacity's
    wait_exponential_jitter, whose arguments were renamed in 9.2, while google-genai holds
    tenacity below 9.2). (Waits longer than --max-wait never get here: the engine stops the
    run first.)"""

    def __init__(self, initial: float, maximum: float,
                 asked: Callable[[BaseException], float | None] = retry_after) -> None:
        self.initial, self.maximum, self.asked = initial, maximum, asked

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome and outcome.failed else None
        asked = self.asked(failure) if failure is not None else None
        if asked is None:
            backoff = self.initial * 2 ** (retry_state.attempt_number - 1) + random.uniform(0, self.initial)
            return min(backoff, self.maximum)
        # a server asking for no wait at all (0, or negative) gets our smallest backoff, not a flood
        return max(asked, MIN_WAIT) * (1 + random.random() * 0.1)
