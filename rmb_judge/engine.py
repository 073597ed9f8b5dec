"""The request engine: cache lookup, then rate limits, then the provider call with retries.

Every answer is written to the cache the moment it arrives. Failed requests are never
cached. A fatal error (bad key, unknown model, bad request) stops the whole run at once;
rate limits shrink the concurrency of the whole run and it grows back slowly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


from . import retry
from .cache import Cache
from .errors import CacheMiss, FatalProviderError
from .limiter import AdaptiveConcurrency, TokenBucket
from .providers.base import ChatRequest, ChatResponse, Provider


FAIL_FAST = 10  # this many failures before any answer: stop the run, it is not going to work


@dataclass(frozen=True)
class Job:
    key: str
    sample: int
    request: ChatRequest


@dataclass
class Outcome:
    response: ChatResponse | None
    error: str | None = None
    cached: bool = False


@dataclass
class EngineConfig:
    concurrency: int = 32
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 8
    timeout: float = 120.0
    offline: bool = False
    max_cost: float | None = None
    backoff_initial: float = 1.0  # seconds before the first retry of a transient error


@dataclass
class Stats:
    """Live counters the display reads; the engine is their only writer."""

    total: int = 0
    done: int = 0
    cache_hits: int = 0
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    rate_limited: int = 0
    failed: int = 0
    in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    concurrency_limit: float = 0.0
    started: float = field(default_factory=time.monotonic)
    stopped_reason: str | None = None  # "budget" | "interrupted"

    def add_usage(self, response: ChatResponse, cost: float | None) -> None:
        """Count an answer's tokens and its cost (None: the model's price is unknown)."""
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        if cost is None:
            self.cost_known = False
        else:
            self.cost_usd += cost

    def requests_per_second(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.requests / elapsed if elapsed > 0 else 0.0


class Engine:
    def __init__(
        self,
        provider: Provider,
        cache: Cache,
        config: EngineConfig,
        *,
        template: str = "",
        template_sha256: str = "",
        estimate_tokens: Callable[[ChatRequest], tuple[int, int]] = lambda r: (0, 0),
        cost_of: Callable[[int, int], float | None] = lambda i, o: None,
        stats: Stats | None = None,
        on_outcome: Callable[[tuple[str, int], Outcome], None] = lambda key, outcome: None,
    ):
        self.provider = provider
        self.cache = cache
        self.config = config
        self.template = template
        self.template_sha256 = template_sha256
        self.estimate_tokens = estimate_tokens
        self.cost_of = cost_of
        self.stats = stats or Stats()
        self.on_outcome = on_outcome
        self.concurrency = AdaptiveConcurrency(config.concurrency)
        self.rpm = TokenBucket(config.rpm) if config.rpm else None
        self.tpm = TokenBucket(config.tpm) if config.tpm else None
        self._reserved_cost = 0.0
        self._answered = 0
        self._budget = asyncio.Condition()  # --max-cost reservations of requests in flight
        self._reservations = 0
        self._stopping = False
        self.outcomes: dict[tuple[str, int], Outcome] = {}  # filled as answers arrive

    def stop(self, reason: str) -> None:
        """Start no new requests (Ctrl-C, budget); requests in flight finish or are cancelled."""
        if not self._stopping:
            self._stopping = True
            self.stats.stopped_reason = reason

    async def run(self, jobs: list[Job]) -> dict[tuple[str, int], Outcome]:
        """Answer every job from the cache or the provider. If the run is cancelled
        (Ctrl-C), `self.outcomes` still holds every answer received so far."""
        await self.send(self.lookup(jobs))
        return self.outcomes

    def lookup(self, jobs: list[Job]) -> list[Job]:
        """Answer what the cache holds; return the misses. With --offline a miss is an
        error raised before anything is sent."""
        unique = list({(j.key, j.sample): j for j in jobs}.values())
        self.stats.total = len(unique)
        found = self.cache.get_responses((j.key, j.sample) for j in unique)
        self.stats.cache_hits = self.stats.done = len(found)
        for key, response in found.items():
            self.outcomes[key] = Outcome(response, cached=True)
            self.on_outcome(key, self.outcomes[key])
        misses = [j for j in unique if (j.key, j.sample) not in found]
        if misses and self.config.offline:
            raise CacheMiss(
                f"--offline: {len(misses)} of {len(unique)} requests are not in the cache "
                f"{self.cache.path}; nothing was sent"
            )
        return misses

    async def send(self, misses: list[Job]) -> None:
        queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in misses:
            queue.put_nowait(job)
        workers = min(self.config.concurrency, len(misses))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._worker(queue))
        except* FatalProviderError as fatal:
            raise fatal.exceptions[0] from None

    async def _worker(self, queue: asyncio.Queue[Job]) -> None:
        while not self._stopping:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcome = await self._one(job)
            if outcome is not None:
                self.settle((job.key, job.sample), outcome)

    async def _one(self, job: Job) -> Outcome | None:
        est_tokens, est_cost = self.reservation(job)
        if not await self._reserve(est_cost):
            self.stop("budget")
            return None
        try:
            policy = retry.policy(self.config.max_retries, self.config.backoff_initial, self.count_retry)
            response = await policy(self._attempt, job, est_tokens)
        except FatalProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - every provider error is sorted here
            kind = retry.classify(exc)
            if kind is retry.ErrorKind.FATAL:
                raise FatalProviderError(
                    f"{self.provider.name}:{job.request.model}: {retry.describe(exc)}"
                ) from None
            if retry.is_content_filter(exc):
                # the provider refused the prompt itself: that is its answer to this request,
                # kept like any other, and read as a refusal
                response = ChatResponse(retry.describe(exc), finish_reason="content_filter", refusal=True)
            else:
                self.stats.failed += 1
                if not self._answered and self.stats.failed >= FAIL_FAST:
                    raise FatalProviderError(
                        f"{self.provider.name}:{job.request.model}: the first {self.stats.failed} "
                        f"requests all failed, which points at the setup (model, --max-tokens, "
                        f"server); last: {retry.describe(exc)}"
                    ) from None
                return Outcome(None, error=retry.describe(exc))
        finally:
            if self.config.max_cost is not None:
                async with self._budget:
                    self._reserved_cost -= est_cost
                    self._reservations -= 1
                    self._budget.notify_all()
        return self.keep(job.key, job.sample, job.request, response)

    def keep(
        self, key: str, sample: int, request: ChatRequest | None, response: ChatResponse
    ) -> Outcome:
        """Count an answer (live or from a batch) and write it to the cache at once.
        `request` is None for a batch item of another run (paid for, so kept too)."""
        self._answered += 1
        self.stats.add_usage(response, self.cost_of(response.input_tokens, response.output_tokens))
        template, sha = (self.template, self.template_sha256) if request else ("", "")
        self.cache.put_response(key, sample, self.provider.name, request, response, template, sha)
        return Outcome(response)

    def settle(self, key: tuple[str, int], outcome: Outcome) -> None:
        """A job is answered or has failed for good: record it and tell the run."""
        self.outcomes[key] = outcome
        self.stats.done += 1
        self.on_outcome(key, outcome)

    async def _reserve(self, cost: float) -> bool:
        """Set aside `cost` under --max-cost. While requests in flight hold reservations
        (each up to its --max-tokens of output), wait for them to settle at their real cost;
        refuse only when this request alone would pass the budget."""
        if self.config.max_cost is None:
            return True
        async with self._budget:
            while self.stats.cost_usd + self._reserved_cost + cost > self.config.max_cost:
                if not self._reservations:
                    return False
                await self._budget.wait()
            self._reserved_cost += cost
            self._reservations += 1
            return True

    def reservation(self, job: Job) -> tuple[int, float]:
        """Tokens (for --tpm) and dollars (for --max-cost) to reserve before sending: the
        counted input plus the most output the request may produce; corrected from usage.
        Counting is skipped when neither limit is set."""
        if not self.tpm and self.config.max_cost is None:
            return 0, 0.0
        input_tokens, _ = self.estimate_tokens(job.request)
        output_tokens = job.request.max_tokens
        return input_tokens + output_tokens, self.cost_of(input_tokens, output_tokens) or 0.0

    async def _attempt(self, job: Job, est_tokens: int) -> ChatResponse:
        await self.concurrency.acquire()
        self.stats.concurrency_limit = self.concurrency.limit
        try:
            if self.rpm:
                await self.rpm.acquire(1)
            if self.tpm:
                await self.tpm.acquire(est_tokens)
            self.stats.requests += 1
            self.stats.in_flight += 1
            try:
                response = await asyncio.wait_for(
                    self.provider.complete(job.request, self.config.timeout),
                    self.config.timeout + 5,  # the SDK's own timeout should fire first
                )
            finally:
                self.stats.in_flight -= 1
        except Exception as exc:
            if retry.classify(exc) is retry.ErrorKind.RATE_LIMIT:
                self.stats.rate_limited += 1
                await self.concurrency.rate_limited(retry.retry_after(exc))
            raise
        finally:
            await self.concurrency.release()
        await self.concurrency.success()
        if self.tpm:
            self.tpm.refund(est_tokens - response.input_tokens - response.output_tokens)
        return response

    def count_retry(self, state) -> None:
        self.stats.retries += 1
