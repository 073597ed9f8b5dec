"""The request engine: cache lookup, then a claim, then rate limits, then the provider
call with retries.

Every answer is written to the cache the moment it arrives; failed requests are never
cached. Before a request is sent it is claimed in the cache, so another process sharing
the cache waits for this answer instead of paying for it again. A fatal error (bad key,
unknown model, bad request, an endpoint that cannot be reached) stops the whole run at
once; rate limits shrink the concurrency of the whole run and it grows back slowly.

Stopping (Ctrl-C, --max-cost, a wait past --max-wait, a failing disk) starts nothing new
and retries nothing, but lets the requests in flight finish and keeps their answers: the
provider bills them whether or not we listen. Only cancelling the run drops them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from . import retry, verdict_probs
from .cache import CLAIM_SECONDS, Answer, Cache, Claims
from .config import EngineConfig
from .errors import CacheError, CacheMiss, FatalProviderError, UsageError
from .limiter import AdaptiveConcurrency, RequestRate, TokenBucket
from .providers.base import ChatRequest, ChatResponse, Provider
from .retry import ErrorKind

FILES_SPARE = 64  # open files a run needs besides its connections (cache, data, stdio, ...)
FAIL_FAST = 10  # this many failures before any answer: stop the run, it is not going to work
TRIAL_ANSWERS = 20  # live answers read, with at most this many requests in flight, before full speed
RECLAIM_SECONDS = 0.5  # how often requests another process is sending are looked for again
_T = TypeVar("_T")


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
    rejected: bool = False  # the provider refused this request on its merits: a retry cannot help


class Pricing(Protocol):
    """Token counts and prices the engine budgets and accounts with (estimate.Estimator)."""

    def tokens(self, request: ChatRequest) -> tuple[int, int]: ...

    def count_output(self, text: str) -> int: ...

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0,
             cache_write: int = 0, batch: bool | None = None) -> float | None: ...


def answer_cost(pricing: Pricing, response: ChatResponse, batch: bool | None = None) -> float | None:
    """What an answer cost: its input (cached tokens at the prompt cache's rates) and output;
    `batch`: whether it came through the batch API (None: as the run sends its requests)."""
    return pricing.cost(response.input_tokens, response.output_tokens, response.cache_read_tokens,
                        response.cache_write_tokens, batch)


class Free:
    """No prices and no token counts: for tests and the benchmark's bare engine."""

    def tokens(self, request: ChatRequest) -> tuple[int, int]:
        return 0, 0

    def count_output(self, text: str) -> int:
        return 0

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
             batch: bool | None = None) -> float | None:
        return None


@dataclass
class Stats:
    """Live counters the display reads; the engine is their only writer."""

    total: int = 0
    done: int = 0
    cache_hits: int = 0
    answered_elsewhere: int = 0  # answers another process sharing the cache paid for
    waiting_elsewhere: int = 0  # requests another process is sending right now
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    rate_limited: int = 0
    failed: int = 0
    rejected: int = 0
    connect_errors: int = 0
    in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    unconfirmed_cost_usd: float = 0.0  # reservations of requests that failed after being sent
    cost_known: bool = True
    usage_counted: int = 0  # answers whose server sent no usage: tokens counted locally
    unsaved: int = 0  # answers the cache could not store (a full disk)
    dropped: int = 0  # requests cancelled in flight (a second Ctrl-C): they may be billed
    concurrency_limit: float = 0.0
    paused_until: float = 0.0  # time.monotonic() until which the provider asked us to wait
    started: float = field(default_factory=time.monotonic)
    stopped_reason: str | None = None  # "budget" | "interrupted" | "wait" | "cache"
    stop_detail: str | None = None  # a sentence on why, for the user

    def add_usage(self, response: ChatResponse) -> None:
        """Count an answer's tokens and its cost (None: the model's price is unknown)."""
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        self.cache_read_tokens += response.cache_read_tokens
        self.cache_write_tokens += response.cache_write_tokens
        if response.cost_usd is None:
            self.cost_known = False
        else:
            self.cost_usd += response.cost_usd

    @property
    def spent(self) -> float:
        """Dollars this run has spent or may have been billed for."""
        return self.cost_usd + self.unconfirmed_cost_usd

    def requests_per_second(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.requests / elapsed if elapsed > 0 else 0.0


@dataclass
class Trial:
    """A run's first live answers, read before it goes at full concurrency: until
    TRIAL_ANSWERS have come, at most that many requests are in flight, and if more than
    `most` of them hold no verdict (a template the judge does not follow, a server answering
    something else) the run stops, having paid for a few dozen requests instead of all."""

    readable: Callable[[ChatResponse], bool | None]  # a verdict; none (False); a refusal (None)
    style: str  # the template's verdict style, for the message
    form: str  # what that style reads, e.g. "[[A]] or [[B]]"
    most: float = 0.5  # share of unreadable answers above which the run stops
    answers: int = 0
    unreadable: int = 0
    cut: int = 0  # of the unreadable, answers cut off at the request's max_tokens
    max_tokens: int | None = None

    def add(self, request: ChatRequest, response: ChatResponse) -> None:
        """Count one live answer."""
        self.answers += 1
        if self.readable(response) is False:
            self.unreadable += 1
            self.cut += response.truncated
            self.max_tokens = request.max_tokens

    def verdict(self) -> str | None:
        """Once TRIAL_ANSWERS have come: why the run should stop, or None to go on."""
        if self.unreadable <= self.most * self.answers:
            return None
        if 2 * self.cut > self.unreadable:  # the template is not at fault: the answers ran out of tokens
            return (f"{self.unreadable} of the first {self.answers} answers state no verdict, {self.cut} of them cut "
                    f"off at --max-tokens {self.max_tokens} before they came to one, so the rest would be paid for "
                    "losses; raise --max-tokens (a model that reasons spends tokens on it first; the answers "
                    "received are cached)")
        return (f"{self.unreadable} of the first {self.answers} answers state no verdict in the form the "
                f"template's verdict style {self.style!r} ({self.form}) asks for, so the rest would be paid for "
                "losses; check --template against what the judge answers (the answers received are cached; "
                "--max-unparsed 1 goes on anyway)")


class Store(Protocol):
    """Where the engine keeps answers and claims the requests it sends."""

    def claim(self, wanted: list[tuple[str, int]]) -> Claims:
        """Claim `wanted` (see Cache.claim): what is answered, what is this process's to send,
        what another process is sending."""

    def put(self, answers: list[Answer]) -> None:
        """Keep answers (one transaction; their claims end with it)."""

    def keep_aside(self, answer: Answer) -> dict[str, Any] | None:
        """An answer `put` could not keep: kept beside the cache for the next run, else returned
        for the run folder (None: nothing to keep)."""


class AnswerStore:
    """Answers in the cache's responses table (the engine's default store)."""

    def __init__(self, cache: Cache, endpoints: tuple[str, ...]):
        self.cache = cache
        self.endpoints = endpoints

    def claim(self, wanted: list[tuple[str, int]]) -> Claims:
        return self.cache.claim(wanted, self.endpoints)

    def put(self, answers: list[Answer]) -> None:
        self.cache.put_answers(answers)

    def keep_aside(self, answer: Answer) -> dict[str, Any] | None:
        """Into the side file, else returned for the run folder; the next run adds it to the
        cache (a duplicate is harmless)."""
        row = {
            "key": answer.key, "sample": answer.sample, "provider": answer.provider,
            "request": answer.request.canonical() if answer.request else None,
            "response": {k: v for k, v in asdict(answer.response).items() if k != "extra"},
            "template": answer.template, "template_sha256": answer.template_sha256,
        }
        return None if self.cache.save_unsaved([row]) else row


class Stopped(Exception):
    """The run is stopping: this request was not sent (or not retried)."""


class Engine:
    def __init__(
        self,
        provider: Provider,
        cache: Cache,
        config: EngineConfig,
        *,
        template: str = "",
        template_sha256: str = "",
        pricing: Pricing | None = None,
        stats: Stats | None = None,
        on_outcome: Callable[[tuple[str, int], Outcome], None] = lambda key, outcome: None,
        endpoints: tuple[str, ...] | None = None,
        trial: Trial | None = None,
        store: Store | None = None,
    ):
        self.provider = provider
        self.cache = cache
        self.config = config
        self.template = template
        self.template_sha256 = template_sha256
        self.pricing = pricing or Free()
        self.stats = stats or Stats()
        self.on_outcome = on_outcome
        # answers from these endpoints serve this run: its own, and any declared equivalent
        self.endpoints = endpoints or provider.endpoints
        self._secrets = retry.secret_values(*provider.secrets())  # kept out of every answer stored
        if not config.offline:
            make_room_for(config.concurrency)
        self.concurrency = AdaptiveConcurrency(config.concurrency)
        self.trial = trial
        if trial is not None:
            self.concurrency.ceiling = TRIAL_ANSWERS
        self.rpm = RequestRate(config.rpm) if config.rpm else None
        self.tpm = TokenBucket(config.tpm) if config.tpm else None
        self._reserved_cost = 0.0
        self._answered = 0
        self._budget = asyncio.Condition()  # --max-cost reservations of requests in flight
        self._reservations = 0
        self._input_ratio = 1.0  # the provider's input tokens per counted token, at most
        self._stop_event = asyncio.Event()
        self._queue: deque[Job] = deque()
        self._group: asyncio.TaskGroup | None = None  # the workers of a `send` under way
        self._workers = 0
        self._ready: deque[tuple[Job, float]] = deque()  # claimed, with when
        self._held: dict[tuple[str, int], Job] = {}  # claimed by another process
        self._taking = 0  # claims being made right now
        self._fatal: ErrorKind | None = None  # why the run is failing, once it is
        self._taken = asyncio.Condition()  # a claim ended: jobs may be ready
        self._last_reclaim = 0.0
        self.outcomes: dict[tuple[str, int], Outcome] = {}  # filled as answers arrive
        self.unsaved: list[dict[str, Any]] = []  # answers neither the cache nor its side file took
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="rmb-judge-cache")
        self.store: Store = store or AnswerStore(cache, self.endpoints)
        self._writes = GroupWrites(self._db, self.store.put)

    def close(self) -> None:
        """End the cache thread; a statement still waiting on another process's lock (the run
        was cancelled meanwhile) is interrupted rather than waited for."""
        self.cache.abandon = True
        self._db_thread.shutdown(wait=True, cancel_futures=True)

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def stop(self, reason: str, detail: str | None = None) -> None:
        """Start no new requests and retry none; requests in flight finish (their answers
        are kept) unless the caller cancels the run."""
        if not self.stopping:
            self._stop_event.set()
            self.stats.stopped_reason = reason
            self.stats.stop_detail = detail

    async def run(self, jobs: list[Job]) -> dict[tuple[str, int], Outcome]:
        """Answer every job from the cache or the provider. If the run is cancelled
        (Ctrl-C), `self.outcomes` still holds every answer received so far."""
        by_key = {(j.key, j.sample): j for j in jobs}
        await self.send([by_key[k] for k in self.lookup(list(by_key))])
        return self.outcomes

    def lookup(self, wanted: list[tuple[str, int]], strict: bool = True) -> list[tuple[str, int]]:
        """Answer what the cache holds of `wanted` (request key, sample), distinct; return
        the misses. With --offline a miss is an error raised before anything is sent, unless
        not `strict` (a --precision run needs only some of them: it checks its own)."""
        self.stats.total += len(wanted)
        found = self.cache.get_responses(wanted, self.endpoints)
        self.stats.cache_hits += len(found)
        self.stats.done += len(found)
        for key, response in found.items():
            self._scrub(response)  # (a row an older version stored with a key in it)
            self.outcomes[key] = Outcome(response, cached=True)
            self.on_outcome(key, self.outcomes[key])
        misses = [k for k in wanted if k not in found]
        if strict:
            self.offline_misses(misses)
        return misses

    def offline_misses(self, misses: list[tuple[str, int]]) -> None:
        """With --offline, the requests missing from the cache (of the `stats.total` looked up)
        are an error, before anything is sent."""
        if not misses or not self.config.offline:
            return
        elsewhere = self.cache.other_endpoints(misses, self.endpoints)
        hint = (f" (it holds {elsewhere.answered} of them from {', '.join(elsewhere.endpoints)}: "
                "--equivalent-endpoint URL uses them)") if elsewhere.answered else ""
        raise CacheMiss(
            f"--offline: {len(misses)} of {self.stats.total} requests are not in the cache "
            f"{self.cache.path} for {', '.join(self.endpoints)}{hint}; nothing was sent"
        )

    async def send(self, misses: list[Job]) -> None:
        """Send the misses; returns when all are settled, or the run stopped and the
        requests in flight have ended."""
        if not misses:
            return
        self.cache.writable(f"{len(misses)} new answers")
        self._queue.extend(misses)
        heartbeat = asyncio.create_task(self._renew_claims())
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._more_workers()
        except* FatalProviderError as fatal:
            raise fatal.exceptions[0] from None
        finally:
            self._group = None
            heartbeat.cancel()
            self.stats.waiting_elsewhere = 0

    def add(self, jobs: list[Job]) -> bool:
        """More jobs for a `send` under way (the follow-up turns its answers call for), sent
        as its own are; False when no send is under way (the caller sends them later)."""
        if self._group is None or not self._workers:  # (no worker left: the send is ending)
            return False
        self._queue.extendleft(reversed(jobs))  # first: they finish what was begun
        self.stats.total += len(jobs)
        self._more_workers()
        return True

    def _more_workers(self) -> None:
        """Workers up to --concurrency for the jobs queued (a worker ends when none is left)."""
        assert self._group is not None
        for _ in range(min(self.config.concurrency - self._workers, len(self._queue))):
            self._workers += 1
            self._group.create_task(self._worker())

    async def _db(self, method: Callable[..., _T], *args: Any) -> _T:
        """A cache call in the cache's own thread: a cache locked by another process, or a
        slow disk, never stalls the requests in flight or Ctrl-C."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, method, *args)

    async def _renew_claims(self) -> None:
        """Keep this process's claims alive while it works on them."""
        while True:
            await asyncio.sleep(CLAIM_SECONDS / 4)
            await self._cache_step(self.cache.renew_claims)

    async def _cache_step(self, method: Callable[..., Any], *args: Any) -> Any:
        """A claim's bookkeeping: if the cache cannot take it (a full disk), the run stops
        starting requests, but those in flight finish and are kept."""
        try:
            return await self._db(method, *args)
        except CacheError as exc:
            self.stop("cache", f"{exc}; nothing new was started")
            return None

    async def _worker(self) -> None:
        try:
            while (job := await self._next_job()) is not None:
                outcome = await self._one(job)
                if outcome is not None:
                    self.settle((job.key, job.sample), outcome)
                if outcome is None or outcome.response is None:
                    # not sent, stopped before an answer, or failed for good: free it for others
                    await self._cache_step(self.cache.release, job.key, job.sample)
        finally:
            self._workers -= 1

    async def _next_job(self) -> Job | None:
        """The next job this process may send: claimed in the cache, in chunks. Jobs another
        process holds are looked at again every RECLAIM_SECONDS until they are answered
        (served like cache hits) or their claim lapses (then sent from here). A job whose
        claim may have lapsed while the process was paused is claimed again first."""
        while not self.stopping:
            if self._ready:
                job, claimed = self._ready.popleft()
                if time.monotonic() - claimed < CLAIM_SECONDS / 2:
                    return job
                await self._take([job])
                continue
            if self._queue:
                size = max(1, min(64, self.config.concurrency))
                await self._take([self._queue.popleft() for _ in range(min(size, len(self._queue)))])
                continue
            if self._taking:  # another worker is claiming jobs: wait for them
                async with self._taken:
                    await self._taken.wait()
                continue
            if not self._held:
                return None
            if time.monotonic() - self._last_reclaim >= RECLAIM_SECONDS:
                self._last_reclaim = time.monotonic()
                held, self._held = list(self._held.values()), {}
                await self._take(held)
                continue
            await self._sleep(RECLAIM_SECONDS)
        return None

    async def _take(self, jobs: list[Job]) -> None:
        by_key = {(j.key, j.sample): j for j in jobs}
        self._taking += 1
        try:
            claims = await self._cache_step(self.claim, list(by_key))
        finally:
            self._taking -= 1
            async with self._taken:
                self._taken.notify_all()
        if claims is None:
            return
        for key, response in claims.answered.items():
            self.stats.answered_elsewhere += 1
            self.settle(key, Outcome(response, cached=True))
        now = time.monotonic()
        self._ready.extend((by_key[k], now) for k in claims.mine)
        self._held.update((k, by_key[k]) for k in claims.held)
        self.stats.waiting_elsewhere = len(self._held)

    def claim(self, wanted: list[tuple[str, int]]) -> Claims:
        """Claim `wanted` in the store (in the cache's thread); see Cache.claim."""
        return self.store.claim(wanted)

    async def _one(self, job: Job) -> Outcome | None:
        """One job through budget, retries and error sorting: its Outcome, or None when it
        was not answered because the run is stopping."""
        reserved = await self._reserve(job)
        if reserved is None:
            self.stop("budget")
            return None
        est_tokens, est_cost = reserved
        try:
            policy = retry.policy(
                self._kind, self.config.max_retries, self.config.backoff_initial, self.count_retry,
                retryable=frozenset({ErrorKind.RATE_LIMIT, ErrorKind.TRANSIENT, ErrorKind.CONNECT}),
                stopping=lambda: self.stopping, sleep=self._sleep, asked_wait=self.provider.retry_after,
            )
            response: ChatResponse = await policy(self._attempt, job, est_tokens, est_cost)
        except (FatalProviderError, CacheError):
            raise
        except (Stopped, retry.LongWait):
            return None
        except Exception as exc:  # noqa: BLE001 - every provider error is sorted here
            kind = self._kind(exc)
            if kind is ErrorKind.FATAL:
                self._fatal = self._fatal or ErrorKind.FATAL  # the requests it cancels are not dropped answers
                raise FatalProviderError(
                    f"{self.provider.name}:{job.request.model}: {retry.describe(exc)}"
                ) from None
            if self.stopping and kind is not ErrorKind.REJECTED:
                return None  # would have been retried: left for the next run
            if retry.is_content_filter(exc):
                # the provider refused the prompt itself: that is its answer to this request,
                # kept like any other, and read as a refusal
                response = ChatResponse(retry.describe(exc), finish_reason="content_filter",
                                        refusal=True, endpoint=self.endpoints[0])
            else:
                self.stats.failed += 1
                self.stats.rejected += kind is ErrorKind.REJECTED
                if not self._answered and self.stats.failed >= FAIL_FAST:
                    self._fatal = self._fatal or ErrorKind.FATAL
                    raise FatalProviderError(
                        f"{self.provider.name}:{job.request.model}: the first {self.stats.failed} "
                        f"requests all failed, which points at the setup (model, --max-tokens, "
                        f"server); last: {retry.describe(exc)}"
                    ) from None
                return Outcome(None, error=retry.describe(exc), rejected=kind is ErrorKind.REJECTED)
        finally:
            if self.config.max_cost is not None:
                async with self._budget:
                    self._reserved_cost -= est_cost
                    self._reservations -= 1
                    self._budget.notify_all()
        outcome = await self.keep(job.key, job.sample, job.request, response, batch=False)
        if self.trial is not None:
            await self._try(self.trial, job.request, response)
        return outcome

    async def _try(self, trial: Trial, request: ChatRequest, response: ChatResponse) -> None:
        """Count a live answer of the trial; with the last one, stop the run or lift its cap."""
        trial.add(request, response)
        if trial.answers < TRIAL_ANSWERS:
            return
        self.trial = None
        if reason := trial.verdict():
            self.stop("unreadable", reason)
        await self.concurrency.set_ceiling(None)

    def _kind(self, exc: BaseException) -> ErrorKind:
        return self.provider.classify(exc)

    async def keep(
        self, key: str, sample: int, request: ChatRequest | None, response: ChatResponse, *, batch: bool
    ) -> Outcome:
        """Count an answer (live or, `batch`, from a batch: priced as such), price it and write
        it to the cache at once. `request` is None for a batch item of another run (paid for, so kept too).
        A server that sent no usage has its tokens counted here. If the cache cannot store
        the answer, it goes to the side file (or, that failing too, stays in `unsaved` for
        the run folder) and the run stops; this run still uses it."""
        self._answered += 1
        if not response.usage_reported:
            self.stats.usage_counted += 1
            if request is not None:
                response.input_tokens = self.pricing.tokens(request)[0]
            response.output_tokens = self.pricing.count_output(response.text)
        response.cost_usd = answer_cost(self.pricing, response, batch)
        response.endpoint = response.endpoint or self.endpoints[0]
        self._scrub(response)
        self.stats.add_usage(response)
        template, sha = (self.template, self.template_sha256) if request else ("", "")
        answer = Answer(key, sample, self.provider.name, request, response, template, sha)
        try:
            await self._writes.put(answer)
        except CacheError as exc:
            self._keep_aside(answer)
            self.stop("cache", f"{exc}; answers received from then on were kept beside it for the next run")
        except asyncio.CancelledError:  # the run is cancelled while the cache waits on a lock
            self._keep_aside(answer)
            raise
        return Outcome(response)

    def _keep_aside(self, answer: Answer) -> None:
        """An answer the store could not take: kept aside by it, else held for the run folder."""
        if (row := self.store.keep_aside(answer)) is not None:
            self.unsaved.append(row)
        self.stats.unsaved += 1

    def _scrub(self, response: ChatResponse) -> None:
        """A server that echoes the API key in its answer: the key goes no further."""
        response.text, response.logprobs = verdict_probs.scrubbed(response.text, response.logprobs, self._secrets)
        response.model = retry.without_secrets(response.model, self._secrets)

    def settle(self, key: tuple[str, int], outcome: Outcome) -> None:
        """A job is answered or has failed for good: record it and tell the run."""
        if outcome.response is not None:
            self._scrub(outcome.response)
        if outcome.error:  # (a batch item's failure is the server's own words)
            outcome.error = retry.without_secrets(outcome.error, self._secrets)
        self.outcomes[key] = outcome
        self.stats.done += 1
        self.on_outcome(key, outcome)

    # -- budget ---------------------------------------------------------------------------

    async def _reserve(self, job: Job) -> tuple[int, float] | None:
        """Set aside what `job` may cost under --max-cost, or None when the budget cannot
        take it. While requests in flight hold reservations (each up to its --max-tokens of
        output), wait for them to settle at their real cost; refuse only when this request
        alone would pass the budget. Until the first answer shows how the provider counts
        tokens, requests go one at a time; the reservation is reckoned after the wait, with
        what the answers so far have taught."""
        if self.config.max_cost is None:
            return self.reservation(job)
        async with self._budget:
            while True:
                tokens, cost = self.reservation(job)
                if not self._reservations or (
                    self._answered and self.stats.spent + self._reserved_cost + cost <= self.config.max_cost
                ):
                    break
                await self._budget.wait()
            if self.stopping or self.stats.spent + cost > self.config.max_cost:
                return None
            self._reserved_cost += cost
            self._reservations += 1
            return tokens, cost

    def reservation(self, job: Job) -> tuple[int, float]:
        """Tokens (for --tpm) and dollars (for --max-cost) to reserve before sending: the
        counted input, scaled by the most the provider has counted over ours so far, plus
        the most output the request may produce. Counting is skipped when neither limit is set."""
        if not self.tpm and self.config.max_cost is None:
            return 0, 0.0
        return self.worst_case(job.request)

    def worst_case(self, request: ChatRequest) -> tuple[int, float]:
        """The most tokens and dollars one request can cost."""
        counted, _ = self.pricing.tokens(request)
        input_tokens = math.ceil(counted * self._input_ratio)
        output_tokens = request.max_tokens
        return input_tokens + output_tokens, self.pricing.cost(input_tokens, output_tokens) or 0.0

    def learn_ratio(self, ratio: float) -> None:
        """How many tokens the provider counts per token we count, at least (from answers
        already in the cache, or live ones)."""
        self._input_ratio = max(self._input_ratio, ratio)

    def _learn_ratio(self, request: ChatRequest, response: ChatResponse) -> None:
        if response.usage_reported and self.config.max_cost is not None:
            counted = self.pricing.tokens(request)[0]
            if counted:
                self.learn_ratio(response.input_tokens / counted)

    def _over_budget(self) -> bool:
        return self.config.max_cost is not None and self.stats.spent + self._reserved_cost > self.config.max_cost

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self, job: Job, est_tokens: int, est_cost: float) -> ChatResponse:
        if self.stopping:
            raise Stopped()
        if self._over_budget():  # a retry after a billed failure would pass --max-cost
            self.stop("budget")
            raise Stopped()
        if not self.concurrency.try_acquire():
            await self._unless_stopping(self.concurrency.acquire())
        self.stats.concurrency_limit = self.concurrency.limit
        try:
            if self.rpm:
                await self._unless_stopping(self.rpm.acquire())
            if self.tpm:
                await self._unless_stopping(self.tpm.acquire(est_tokens))
            if self.stopping:
                raise Stopped()
            self.stats.requests += 1
            self.stats.in_flight += 1
            try:
                async with asyncio.timeout(self.config.timeout + 5):  # the SDK's own should fire first
                    response = await self.provider.complete(job.request, self.config.timeout)
            except asyncio.CancelledError:
                if self._fatal == ErrorKind.CONNECT:  # the endpoint is unreachable: nothing went out
                    self.stats.requests -= 1
                elif self._fatal is None:  # dropped in flight (a second Ctrl-C): may be billed
                    self.stats.dropped += 1
                    self.stats.unconfirmed_cost_usd += est_cost or self.worst_case(job.request)[1]
                raise
            finally:
                self.stats.in_flight -= 1
        except Stopped:
            raise
        except Exception as exc:
            await self._account_failure(exc, est_cost or self.worst_case(job.request)[1])
            raise
        finally:
            await self.concurrency.release()
        await self.concurrency.success()
        self._learn_ratio(job.request, response)
        if self.tpm:
            self.tpm.refund(est_tokens - response.input_tokens - response.output_tokens)
        return response

    async def _account_failure(self, exc: Exception, est_cost: float) -> None:
        """What a failed attempt means for the run: a possible bill, a rate limit to honour,
        an endpoint that was never reached, or a wait too long to sit through."""
        kind = self._kind(exc)
        if isinstance(exc, retry.BrokenAnswer) and exc.response is not None:
            broken: ChatResponse = exc.response  # an empty answer is billed like any other
            broken.cost_usd = answer_cost(self.pricing, broken, batch=False)
            self.stats.add_usage(broken)
        elif retry.may_be_billed(exc):
            self.stats.unconfirmed_cost_usd += est_cost
        if kind is ErrorKind.CONNECT:
            self.stats.requests -= 1  # no connection: nothing was sent
            self.stats.connect_errors += 1
            if not self._answered:
                endpoint = getattr(exc, "endpoint", None) or self.endpoints[0]
                self._fatal = ErrorKind.CONNECT
                raise FatalProviderError(
                    f"cannot reach {endpoint}: {retry.connect_failure(exc)}; check --base-url "
                    "and the server (nothing was answered there)"
                ) from None
        asked = self.provider.retry_after(exc) if kind in (ErrorKind.RATE_LIMIT, ErrorKind.TRANSIENT) else None
        if asked is not None and asked > self.config.max_wait:
            until = time.strftime("%H:%M:%S", time.localtime(time.time() + asked)) if asked < 1e7 else None
            when = f"after {until}" if until else "much later"
            self.stop("wait", f"the provider asked to wait {asked:g} s, longer than --max-wait "
                              f"{self.config.max_wait:g} s; rerun {when} to continue from the cache")
            raise retry.LongWait(asked) from None
        if kind is ErrorKind.RATE_LIMIT:
            self.stats.rate_limited += 1
            await self.concurrency.rate_limited(asked)
            self.stats.paused_until = self.concurrency.paused_until

    async def _unless_stopping(self, waiting: Awaitable[_T]) -> _T:
        """`await waiting`, unless the run starts stopping first (then Stopped, and what it
        waited for is cancelled, and awaited, before it took anything)."""
        task = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the run is being cancelled
            await _cancelled(task)
            raise
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        await _cancelled(task)
        raise Stopped()

    async def _sleep(self, seconds: float) -> None:
        """A pause that ends early when the run starts stopping."""
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except TimeoutError:
            pass

    def count_retry(self, state: Any) -> None:
        self.stats.retries += 1


def make_room_for(connections: int) -> None:
    """Let this process open `connections` at once: raise its open-file limit toward the hard
    limit when needed, or refuse --concurrency with one line when even that is too low (a
    connection the system refuses would otherwise look like an unreachable server)."""
    try:
        import resource
    except ImportError:  # (not a Unix)
        return
    need = connections + FILES_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    if hard != resource.RLIM_INFINITY and need > hard:
        raise UsageError(
            f"--concurrency {connections} needs about {need} open files (one per connection), but "
            f"this process may open at most {hard} (ulimit -Hn); lower --concurrency or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class GroupWrites:
    """Answers go to the cache in groups: every answer that arrived while the last write was
    committing is written in the next transaction, so under load one commit serves many
    answers, and alone an answer is written at once. `put` returns once its answer is
    committed (or raises what the write raised), as a write of its own would."""

    def __init__(self, run: Callable[..., Awaitable[Any]], write: Callable[[list[Answer]], None]):
        self._run = run  # runs `write` in the cache's thread
        self._write = write
        self._waiting: list[tuple[Answer, asyncio.Future[None]]] = []
        self._writing = False

    async def put(self, answer: Answer) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((answer, done))
        if not self._writing:
            self._writing = True
            asyncio.ensure_future(self._drain())
        await asyncio.shield(done)  # (a cancelled put leaves its answer in the group)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    await self._run(self._write, [answer for answer, _ in group])
                except BaseException as exc:  # noqa: BLE001 - each answer's writer decides
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc if isinstance(exc, Exception) else CacheError(str(exc)))
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, done in group:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writing = False


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has ended (a task left pending blocks the run's exit)."""
    task.cancel()
    try:
        await task
    except BaseException:  # noqa: BLE001 - it was cancelled, or failed on its way out
        pass
