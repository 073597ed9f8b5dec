"""The one interface every hosted judge provider implements.

A provider translates a `ChatRequest` into its SDK's call and the SDK's answer into a
`ChatResponse`, and owns the facts of its API: its spec prefix, the key and base-URL
variables it reads, the endpoint it talks to, whether it takes a temperature, how its errors
sort (`classify`), how long the server asked to wait (`retry_after`), how its tokens are
counted and priced, and its batch API if it has one. Retrying, rate limiting, concurrency
and caching live in the engine, which never imports an SDK: a provider module imports its
SDK only when it first needs it (importing one costs about a second of CPU).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .. import endpoints, pricing, retry
from ..errors import UsageError
from ..retry import ErrorKind


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral chat request. Everything here is part of the cache key."""

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content); role in system/user/assistant
    max_tokens: int = 1024
    temperature: float | None = 0.0  # None: provider default (reasoning models)
    json_mode: bool = False  # ask for a JSON object (structured output) where the provider can
    top_logprobs: int = 0  # --verdict-probs: token logprobs with this many alternatives (0: none)

    def canonical(self) -> dict[str, Any]:
        canonical = {
            "model": self.model,
            "messages": [list(m) for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "json_mode": self.json_mode,
        }
        if self.top_logprobs:  # (absent otherwise: requests stored before it existed read the same)
            canonical["top_logprobs"] = self.top_logprobs
        return canonical


@dataclass
class ChatResponse:
    text: str
    input_tokens: int = 0  # every input token billed, those read from or written to the prompt cache too
    output_tokens: int = 0  # hidden reasoning included
    model: str = ""
    finish_reason: str | None = None  # normalised: stop | length | refusal | content_filter
    refusal: bool = False  # the provider itself signalled a refusal
    extra: dict[str, Any] = field(default_factory=dict)
    usage_reported: bool = True  # False: the server sent no usage; tokens were counted locally
    cost_usd: float | None = None  # what this answer cost, once priced (None: unknown)
    endpoint: str = ""  # where it came from (endpoints.normalize)
    # of input_tokens, those the provider read from its prompt cache and wrote to it: billed
    # at their own rates (as genai-prices reads each API's usage)
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # the tokens that could state a verdict, with their alternatives' logprobs (verdict_probs.keep);
    # None: the answer came without logprobs
    logprobs: list[dict[str, Any]] | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True)
class BatchStatus:
    id: str
    state: str  # "in_progress" | "ended" (results can be fetched) | "failed" (none will come)
    provider_state: str  # the API's own word: validating, finalizing, canceling, expired, ...
    counts: dict[str, int]  # processing, succeeded, errored (errored includes expired and canceled)

    @property
    def done(self) -> bool:
        return self.state != "in_progress"


BatchItems = Sequence[tuple[str, ChatRequest]]  # (custom_id, request)
BATCH_TAG = "rmb_judge_submission"  # the metadata key (OpenAI) a batch's tag is sent under
CLOCK_SKEW = 600.0  # seconds a provider's clock may be behind ours when its batches are listed
TRANSFER_TIMEOUTS = 10  # a batch file's upload or download may take this many --timeouts
_T = TypeVar("_T")


class BatchResults(dict[str, ChatResponse | str]):
    """custom_id -> its answer, or why it failed. `unreadable`: output lines that could not
    be tied to a request (not JSON, or naming none); their requests have no entry."""

    unreadable: int = 0


def read_batch_output(text: str, custom_id_of: Callable[[Any], Any],
                      answer_of: Callable[[dict[str, Any]], ChatResponse | str]) -> BatchResults:
    """A batch's JSONL output, line by line: a line that is not JSON or names no request is
    counted in `unreadable`; a malformed line fails only its own request (`answer_of` says
    why, never raises); a request answered twice differently has failed (no line wins)."""
    found = BatchResults()
    conflicting: set[str] = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            found.unreadable += 1
            continue
        custom_id = custom_id_of(item)
        if not isinstance(custom_id, str) or not isinstance(item, dict):
            found.unreadable += 1
            continue
        answer = answer_of(item)
        if custom_id in found and not _same(found[custom_id], answer):
            conflicting.add(custom_id)
        found[custom_id] = answer
    for custom_id in conflicting:
        found[custom_id] = "the batch output holds different answers for this request"
    return found


def _same(a: ChatResponse | str, b: ChatResponse | str) -> bool:
    if isinstance(a, ChatResponse) and isinstance(b, ChatResponse):
        return (a.text, a.finish_reason, a.refusal) == (b.text, b.finish_reason, b.refusal)
    return a == b


async def bounded(call: Awaitable[_T], seconds: float) -> _T:
    """`await call`, given up after `seconds` even if the server keeps trickling bytes, which
    an SDK's read timeout never notices (a retry sorts this TimeoutError like the SDK's own)."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        raise TimeoutError(f"no complete answer within {seconds:g} s") from None


async def post_json(client: Any, path: str, body: dict[str, Any], timeout: float) -> Any:
    """POST `body` through an official SDK client (its auth, headers, base URL, and its own
    exception for every error status) and return the decoded JSON answer. The answer is not
    built into the SDK's typed models, nor the body run through its typed transform: both
    are plain JSON here, and those two steps were most of the client's CPU per request at
    high rates (bin/bench-hotpath). A body that is not JSON is a BrokenAnswer."""
    import httpx2

    answer = await client.post(path, body=body, cast_to=httpx2.Response, options={"timeout": timeout})
    try:
        return json.loads(answer.content)
    except ValueError:
        raise retry.BrokenAnswer("the response body is not JSON") from None


def cache_tokens(input_tokens: int, read: Any, written: Any = 0) -> tuple[int, int]:
    """Of `input_tokens`, how many the provider read from and wrote to its prompt cache, as far
    as the input holds them (a count that is not a whole number is none)."""
    read = min(read, input_tokens) if isinstance(read, int) and read > 0 else 0
    written = min(written, input_tokens - read) if isinstance(written, int) and written > 0 else 0
    return read, written


def json_at(value: Any, *path: str | int) -> Any:
    """`value[path[0]][path[1]]...`, or None where the JSON does not have that shape."""
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value


DEFAULT_CONNECTIONS = 1000


class Provider:
    """A hosted judge. Subclasses set the facts below and implement `complete` (and the
    batch methods when `has_batch_api`)."""

    name: ClassVar[str]  # the spec prefix: `--judge NAME:MODEL`
    key_variables: ClassVar[tuple[str, ...]] = ()  # where the API key comes from, in order
    base_url_variable: ClassVar[str | None] = None  # the SDK's own base-URL variable
    official_endpoint: ClassVar[str] = ""  # where requests go by default
    # The path a base URL given as a bare host stands for, in the endpoint it is recorded as:
    # "" where the SDK adds the API's path itself, "/v1" where the server serves it there.
    api_path: ClassVar[str] = ""
    accepts_temperature: ClassVar[bool] = True
    returns_logprobs: ClassVar[bool] = False  # token logprobs on request (--verdict-probs)
    has_batch_api: ClassVar[bool] = False
    prices_id: ClassVar[str | None] = None  # genai-prices provider id; None: never priced
    batch_discount: ClassVar[float | None] = None  # batch price when genai-prices lacks one
    bytes_per_token: ClassVar[float] = pricing.DEFAULT_BYTES_PER_TOKEN  # token approximation
    simulated: ClassVar[bool] = False  # True only for the offline mock judge
    extra: ClassVar[str | None] = None  # the install extra its SDK comes in (pyproject.toml), if not the core
    batches_per_page: ClassVar[int] = 100  # asked for per page when batches are listed (find_batch)

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None) -> None:
        self.model = model
        self.base_url = base_url  # None: the base-URL variable, else the official endpoint
        self._api_key = api_key  # None: the key variables
        # connections the HTTP client may open: the engine's --concurrency (the SDKs' own
        # default, 1,000, would silently cap a larger one)
        self.connections = DEFAULT_CONNECTIONS

    def http_limits(self) -> Any:
        """The SDK HTTP client's connection limits: as many as requests may be in flight, all
        kept alive between requests (a connection closed after each request costs a new one)."""
        import httpx2

        return httpx2.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints requests go to (several for replicas), as `endpoints.normalize` writes them."""
        variable = os.environ.get(self.base_url_variable) if self.base_url_variable else None
        return (endpoints.normalize(self.base_url or variable or self.official_endpoint, self.api_path),)

    def secrets(self) -> tuple[str, ...]:
        """The keys its requests may carry: the one given, and its key variables' values."""
        return tuple(key for key in (self._api_key, *map(os.environ.get, self.key_variables)) if key)

    def prepare(self) -> None:
        """Check what a request needs before anything is sent (a usable base URL, the API
        key): raise a one-line error naming what is wrong."""
        variable = os.environ.get(self.base_url_variable) if self.base_url_variable else None
        url = self.base_url or variable
        if url and (reason := endpoints.problem(url)):
            where = "--base-url" if self.base_url else self.base_url_variable
            raise UsageError(f"{where} {retry.redact(url)}: {reason}")

    def classify(self, exc: BaseException) -> ErrorKind:
        """Sort one of this provider's errors (see retry.py)."""
        return retry.sort_error(exc)

    def retry_after(self, exc: BaseException) -> float | None:
        """Seconds the server asked us to wait before trying again, if it said."""
        return retry.retry_after(exc)

    @classmethod
    def no_temperature(cls, model: str) -> str | None:
        """Why `model` cannot be given a temperature, or None when it can."""
        return None if cls.accepts_temperature else f"the {cls.name} API accepts no temperature"

    @classmethod
    def no_logprobs(cls, model: str) -> str | None:
        """Why `model`'s answers cannot come with token logprobs, or None when they can."""
        return None if cls.returns_logprobs else f"the {cls.name} API returns no token logprobs"

    @classmethod
    def count_tokens(cls, model: str, messages: Sequence[tuple[str, str]]) -> pricing.TokenCount:
        """Input tokens of a request, as the provider bills them (approximated by default)."""
        return pricing.approx_tokens(messages, cls.bytes_per_token)

    @classmethod
    def count_text(cls, model: str, text: str) -> int:
        """Tokens of a bare text (an answer whose server reported no usage)."""
        return pricing.approx_text(text, cls.bytes_per_token)

    @classmethod
    def price(cls, model: str, input_tokens: int, output_tokens: int, batch: bool = False,
              cache_read: int = 0, cache_write: int = 0) -> float | None:
        """USD for one usage at the provider's published price, or None when it is unknown
        (never a guess); `cache_read` and `cache_write` are input tokens billed at the
        prompt cache's rates."""
        if cls.prices_id is None:
            return None
        return pricing.pricer(cls.prices_id, model, batch, cls.batch_discount)(
            input_tokens, output_tokens, cache_read, cache_write)

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        """One request; raise the SDK's own exceptions (the engine sorts them with `classify`)."""
        raise NotImplementedError

    # Batch API calls: each HTTP call is bounded by `timeout` seconds (`bounded`), a file
    # transfer by TRANSFER_TIMEOUTS of them.

    async def submit_batch(self, items: BatchItems, tag: str, timeout: float) -> str:
        """Create one batch holding every item, tagged `tag` where the API keeps a tag (so
        `find_batch` can find it if the answer to the creation is lost); returns its id."""
        raise NotImplementedError(f"{self.name} has no batch API")

    async def find_batch(self, tag: str, custom_ids: Collection[str], since: float, known: Collection[str],
                         timeout: float) -> str | None:
        """The id of the batch `submit_batch(items, tag)` created at `since` (time.time()) or
        later, if the provider has one: a creation whose answer was lost (an error status, a
        dropped connection, a killed process) is found here instead of paid for again.
        `custom_ids` are the items'; `known` are batch ids that are someone else's."""
        raise NotImplementedError(f"{self.name} has no batch API")

    async def poll_batch(self, batch_id: str, timeout: float) -> BatchStatus:
        raise NotImplementedError(f"{self.name} has no batch API")

    async def batch_results(self, batch_id: str, timeout: float) -> BatchResults:
        """Every item the ended batch reports, answered or failed (a one-line reason)."""
        raise NotImplementedError(f"{self.name} has no batch API")

    async def aclose(self) -> None:
        return None


FAILURES_IN_A_ROW = 3  # transient failures of one replica, none answered between, that pass it over
DOWN_SECONDS = 30.0  # how long a replica passed over gets no requests


class RoundRobin(Provider):
    """Spreads requests over several servers of the same model (e.g. vLLM replicas); a
    failure carries the endpoint that failed, so a message can name it. A replica that
    refuses connections (stopped, crashed), or fails FAILURES_IN_A_ROW requests in a row
    (hung: timeouts; broken: resets, 5xx), is passed over for DOWN_SECONDS, so the retries
    of its requests go to the others and a run survives losing it; then it is tried again."""

    def __init__(self, providers: list[Provider]):
        first = providers[0]
        super().__init__(first.model)
        self.providers = providers
        self.connections = first.connections
        self.name = first.name  # type: ignore[misc]
        self.simulated = first.simulated  # type: ignore[misc]
        self.accepts_temperature = first.accepts_temperature  # type: ignore[misc]
        self._next = itertools.cycle(providers)
        self._down_until: dict[int, float] = {}  # id(provider) -> time.monotonic()
        self._failures: dict[int, int] = {}  # id(provider) -> its failures since its last answer
        self.answered: dict[str, int] = dict.fromkeys(self.endpoints, 0)  # answers per replica

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(e for p in self.providers for e in p.endpoints)

    def _pick(self) -> Provider:
        """The next replica in turn that has not refused a connection lately (all of them
        have: the next one anyway)."""
        now = time.monotonic()
        for _ in self.providers:
            provider = next(self._next)
            if self._down_until.get(id(provider), 0.0) <= now:
                return provider
        return provider

    def secrets(self) -> tuple[str, ...]:
        return tuple(key for provider in self.providers for key in provider.secrets())

    def prepare(self) -> None:
        for provider in self.providers:
            provider.prepare()

    def classify(self, exc: BaseException) -> ErrorKind:
        return self.providers[0].classify(exc)

    def retry_after(self, exc: BaseException) -> float | None:
        return self.providers[0].retry_after(exc)

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        provider = self._pick()
        try:
            response = await provider.complete(request, timeout)
        except Exception as exc:
            exc.endpoint = provider.endpoints[0]  # type: ignore[attr-defined]
            kind = provider.classify(exc)
            if kind in (ErrorKind.TRANSIENT, ErrorKind.CONNECT):
                failures = self._failures[id(provider)] = self._failures.get(id(provider), 0) + 1
                if retry.connect_failure(exc) or failures >= FAILURES_IN_A_ROW:
                    self._down_until[id(provider)] = time.monotonic() + DOWN_SECONDS
            raise
        self._failures[id(provider)] = 0
        self.answered[provider.endpoints[0]] += 1
        return response

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()
