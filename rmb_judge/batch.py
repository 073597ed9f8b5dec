"""`run --batch`: the uncached requests go through the provider's batch API (half price).

A batch is recorded in the cache before the provider is asked to create it (an intent, with
a tag the provider keeps with the batch where it can: OpenAI's metadata, Gemini's display
name), and by its id the moment the provider answers. A creation whose answer is lost (an
error status or a dropped connection after the provider made it, a process killed while the
answer was on its way) is looked for at the provider before it is tried again, so the same
work is never paid for twice. A rerun resumes recorded batches and unfinished creations
alike; a batch the provider no longer knows is forgotten with one line saying what was lost.
Every answer is written to the same cache as live answers, so a later normal run is fully
cached. Items that failed inside a batch (or whose output line could not be read) are not
cached: the next run sends them again.

Every batch API call is bounded by --timeout (a file transfer by TRANSFER_TIMEOUTS of them),
and a stop (Ctrl-C, SIGTERM) abandons the status calls and waits at once; a creation under
way is finished, as long as it takes, unless the run is cancelled (its intent then lets the
next run find it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from . import retry
from .cache import CLAIM_SECONDS, PendingBatch
from .engine import Engine, Job, Outcome
from .errors import CacheError, FatalProviderError
from .providers.base import BatchResults, BatchStatus, ChatResponse, RoundRobin

_T = TypeVar("_T")
MAX_ITEMS = 10_000  # per batch: well under both APIs' limits (50,000 / 100,000 requests)


class _Stopped(Exception):
    """The run is stopping: a batch API call was abandoned (the batch stays recorded)."""


class _Lost(Exception):
    """The provider does not know the batch (HTTP 404): its answers cannot be collected."""


@dataclass
class BatchProgress:
    """What the display shows while batches run."""

    batches: dict[str, BatchStatus] = field(default_factory=dict)

    def metrics(self) -> dict[str, str]:
        open_ = sum(1 for s in self.batches.values() if not s.done)
        counts = [s.counts for s in self.batches.values()]
        done = sum(c.get("succeeded", 0) + c.get("errored", 0) for c in counts)
        total = done + sum(c.get("processing", 0) for c in counts)
        return {"batches open": f"{open_}/{len(self.batches)}", "batch items done": f"{done}/{total}"}


class BatchRunner:
    """Sends the engine's uncached jobs through the batch API instead of live requests,
    sharing the engine's cache, counters, retry policy and budget reckoning."""

    def __init__(self, engine: Engine, poll_interval: float):
        self.engine = engine
        provider = engine.provider
        # several base URLs: a batch lives on one server
        self.provider = provider.providers[0] if isinstance(provider, RoundRobin) else provider
        self.poll_interval = poll_interval
        self.progress = BatchProgress()
        self.submitting = False  # a batch is being created: a stop waits until it is recorded
        self.notices: list[str] = []  # what was lost on the way (forgotten batches, unreadable lines)
        self._stopping = asyncio.Event()

    def stop(self) -> bool:
        """Ctrl-C: stop polling (the batches stay recorded; a rerun resumes them). A
        creation under way is finished and recorded first. False if it was already stopping
        (a second Ctrl-C: the caller cancels outright)."""
        if self._stopping.is_set():
            return False
        self._stopping.set()
        return True

    def pending(self, jobs: list[Job]) -> list[PendingBatch]:
        """The unfinished batches and creations (of this provider, model and endpoint) holding any of `jobs`."""
        provider = self.provider
        wanted = {(j.key, j.sample) for j in jobs}
        return [
            entry for entry in self.engine.cache.pending_batches(provider.name, provider.model, provider.endpoints[0])
            if any((key, sample) in wanted for _, key, sample in entry.items)
        ]

    async def resume(self, jobs: list[Job]) -> list[PendingBatch]:
        """The pending batches holding any of `jobs`, checked with the provider first: a
        batch it no longer knows is forgotten (its jobs are then free to be sent again); an
        interrupted creation whose process is gone is looked for at the provider, and
        recorded when found, dropped when not (nothing was created). Creations another live
        process is making are kept: their batches are waited for."""
        kept = []
        for entry in self.pending(jobs):
            try:
                if entry.creating:
                    if self.engine.cache.take_batch_intent(entry.id):
                        taken = await self._take_over(entry)
                        if taken is None:
                            continue
                        entry = taken
                    kept.append(entry)
                    continue
                self.progress.batches[entry.id] = await self._call(
                    self.provider.poll_batch, entry.id, self.engine.config.timeout, lost=True)
            except _Lost as lost:
                self._forget(entry, str(lost), "its requests are sent again")
                continue
            except _Stopped:
                return kept
            kept.append(entry)
        return kept

    async def run(self, jobs: list[Job]) -> None:
        """Answer `jobs` (all uncached): resume the pending batches that hold some of them,
        put the rest in new batches, then poll everything until it ends. Before a batch is
        submitted its items are claimed, like live requests: items another process is
        sending are waited for through the engine instead."""
        engine = self.engine
        pending = await self.resume(jobs)
        covered = batched(pending)
        fresh = [j for j in jobs if (j.key, j.sample) not in covered]
        held: list[Job] = []
        if fresh and not self._stopping.is_set():
            claims = engine.cache.claim([(j.key, j.sample) for j in fresh], engine.endpoints)
            for key, response in claims.answered.items():
                engine.settle(key, Outcome(response, cached=True))
            mine = set(claims.mine)
            held = [j for j in fresh if (j.key, j.sample) in claims.held]
            fresh = self._within_budget([j for j in fresh if (j.key, j.sample) in mine])
        else:
            fresh = []
        try:
            for start in range(0, len(fresh), MAX_ITEMS):
                if self._stopping.is_set():
                    break
                entry = await self._submit(fresh[start : start + MAX_ITEMS])
                if entry is not None:
                    pending.append(entry)
        finally:
            for job in fresh:  # submitted, or never to be: the batch rows guard them now
                engine.cache.release(job.key, job.sample)
        await self.collect(pending, jobs, engine.send(held) if held else None)

    async def collect(self, pending: list[PendingBatch], jobs: list[Job],
                      also: Coroutine[Any, Any, None] | None = None) -> None:
        """Poll `pending` (from `resume`) until each ends, and settle `jobs` with their answers;
        `also` runs beside them. The first fatal error stops them all."""
        by_key = {(j.key, j.sample): j for j in jobs}
        try:
            async with asyncio.TaskGroup() as group:  # one failing poll cancels the others
                for entry in pending:
                    group.create_task(self._finish(entry, by_key))
                if also is not None:
                    group.create_task(also)
        except* FatalProviderError as fatal:
            raise fatal.exceptions[0] from None

    # -- creating a batch ---------------------------------------------------------------

    async def _submit(self, jobs: list[Job]) -> PendingBatch | None:
        """Record the intent, then create one batch: a failed attempt is followed by a look
        for the batch it may have created before the next. The batch is paid for from then on,
        and counted. None if the run stopped first (the intent stays for the next run)."""
        provider, cache = self.provider, self.engine.cache
        items = [(f"{j.key[:48]}-{j.sample}", j) for j in jobs]
        tag = f"rmb-judge-{uuid.uuid4().hex}"
        entry = cache.add_batch_intent(tag, provider.name, provider.model, provider.endpoints[0],
                                       [(cid, j.key, j.sample) for cid, j in items])
        requests = [(cid, j.request) for cid, j in items]
        tried = maybe_created = False

        async def create() -> str:
            nonlocal tried, maybe_created
            if self._stopping.is_set():
                raise _Stopped()
            if tried and (found := await self._find(entry)):
                return found
            tried = True
            try:
                return await provider.submit_batch(requests, tag, self.engine.config.timeout)
            except Exception as exc:
                status = retry.status_of(exc)
                maybe_created = maybe_created or status is None or status >= 500  # (a 4xx: refused)
                raise

        self.submitting = True
        try:
            async with self._holding(tag):
                batch_id = await self._call(create, interruptible=False)
        except (_Stopped, FatalProviderError) as stopped:
            if not maybe_created:  # the provider has no batch of it: nothing to look for later
                cache.drop_batch_intent(tag)
            if isinstance(stopped, _Stopped):
                return None
            raise
        finally:
            self.submitting = False
        return self._record(entry, batch_id)

    async def _find(self, entry: PendingBatch) -> str | None:
        """The batch the provider created for `entry`, if any."""
        cache = self.engine.cache
        return await self.provider.find_batch(
            entry.tag or entry.id, [cid for cid, _, _ in entry.items], entry.created_at,
            cache.batch_ids(entry.endpoint), self.engine.config.timeout,
        )

    async def _take_over(self, entry: PendingBatch) -> PendingBatch | None:
        """An interrupted creation this process has taken over (`take_batch_intent`): the
        batch the provider made of it, recorded; None, its intent dropped, if it made none."""
        async with self._holding(entry.id):
            found = await self._call(self._find, entry)
        if found is None:
            self.engine.cache.drop_batch_intent(entry.id)
            return None
        return self._record(entry, found)

    def _record(self, entry: PendingBatch, batch_id: str) -> PendingBatch:
        """The provider has `entry`'s batch as `batch_id`: record it and count its requests."""
        self.engine.cache.batch_created(entry.id, batch_id)
        self.engine.stats.requests += len(entry.items)
        return replace(entry, id=batch_id, state="submitted", owner=None, lease_until=None)

    @contextlib.asynccontextmanager
    async def _holding(self, tag: str) -> AsyncIterator[None]:
        """Keep this process's hold on the creation recorded as `tag` while it works on it, and
        let it go if the work ends without a batch."""
        async def renew() -> None:
            while True:
                await asyncio.sleep(CLAIM_SECONDS / 4)
                self.engine.cache.renew_batch_lease(tag)

        task = asyncio.create_task(renew())
        try:
            yield
        except BaseException:  # stopped, cancelled or failed: the next run may take it over at once
            with contextlib.suppress(CacheError):
                self.engine.cache.release_batch_intent(tag)
            raise
        finally:
            task.cancel()

    async def _created_elsewhere(self, entry: PendingBatch, by_key: dict) -> PendingBatch | None:
        """Wait for another process to create `entry`'s batch, taking the creation over if that
        process goes away; None (its jobs failed, to be sent again) if no batch came of it."""
        cache = self.engine.cache
        while True:
            now = cache.batch_tagged(entry.tag or entry.id)
            if now is not None and not now.creating:
                return now
            if now is None or cache.take_batch_intent(entry.id):  # (None: its intent was dropped already)
                created = await self._take_over(entry) if now is not None else None
                if created is None:
                    self._fail(entry, by_key, "the process creating its batch stopped before the batch was made")
                return created
            if await self._stopped_within(self.poll_interval):
                raise _Stopped()

    # -- collecting a batch -------------------------------------------------------------

    async def _finish(self, entry: PendingBatch, by_key: dict) -> None:
        engine, provider = self.engine, self.provider
        timeout = engine.config.timeout
        try:
            if entry.creating:
                created = await self._created_elsewhere(entry, by_key)
                if created is None:
                    return
                entry = created
            status = self.progress.batches.get(entry.id)
            while status is None or not status.done:
                if status is not None and await self._stopped_within(self.poll_interval):
                    raise _Stopped()
                status = await self._call(provider.poll_batch, entry.id, timeout, lost=True)
                self.progress.batches[entry.id] = status
                with contextlib.suppress(CacheError):  # (only what `cache batches` shows)
                    engine.cache.note_batch_state(entry.id, status.provider_state)
            answers = (await self._call(provider.batch_results, entry.id, timeout, lost=True)
                       if status.state == "ended" else BatchResults())
        except _Stopped:
            engine.stats.stopped_reason = "interrupted"
            return  # still pending in the cache: the next run resumes it
        except _Lost as lost:
            self._forget(entry, str(lost), "its requests fail here and the next run sends them again")
            self._fail(entry, by_key, f"batch {entry.id} is unknown to the provider")
            return
        missing = f"batch {entry.id} {status.provider_state}: no result for this request"
        if answers.unreadable:
            missing = f"batch {entry.id}: no readable result for this request"
            self._notice(f"{answers.unreadable} lines of the output of batch {entry.id} could not be read; "
                         "their requests failed and the next run sends them again")
        for custom_id, key, sample in entry.items:
            answer = answers.get(custom_id, missing)
            job = by_key.get((key, sample))
            if isinstance(answer, ChatResponse):
                outcome = await engine.keep(key, sample, job.request if job else None, answer, batch=True)
            else:
                outcome = Outcome(None, error=answer)
                engine.stats.failed += 1
            if job is not None:
                engine.settle((key, sample), outcome)
        engine.cache.finish_batch(entry.id, status.provider_state)

    def _fail(self, entry: PendingBatch, by_key: dict, why: str) -> None:
        """Settle the jobs of `entry` as failed (not cached: a rerun sends them again)."""
        for _, key, sample in entry.items:
            if (key, sample) in by_key:
                self.engine.stats.failed += 1
                self.engine.settle((key, sample), Outcome(None, error=why))

    def _forget(self, entry: PendingBatch, reason: str, then: str) -> None:
        """The provider does not know `entry`: stop waiting for it, and say what was lost."""
        self.engine.cache.finish_batch(entry.id, "lost")
        self._notice(f"{entry.describe()} is unknown to the provider ({reason}): forgotten, with its answers "
                     f"(if it ran, it was paid for); {then}")

    def _notice(self, line: str) -> None:
        print(f"rmb-judge: {line}", file=sys.stderr, flush=True)
        self.notices.append(line)

    # -- calls --------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Awaitable[_T]], *args: Any, interruptible: bool = True,
                    lost: bool = False) -> _T:
        """A batch API call under the engine's retry policy; what cannot be retried stops
        the run with one clear line. `interruptible`: a stop abandons it (_Stopped); `lost`:
        a 404 means the provider does not know the batch (_Lost)."""
        engine, provider = self.engine, self.provider

        async def attempt(*args: Any) -> _T:
            if not interruptible:
                return await fn(*args)
            return await self._unless_stopping(fn(*args))

        try:
            policy = retry.policy(provider.classify, engine.config.max_retries,
                                  engine.config.backoff_initial, engine.count_retry,
                                  asked_wait=provider.retry_after, stopping=self._stopping.is_set,
                                  sleep=self._pause)
            return await policy(attempt, *args)
        except (_Stopped, FatalProviderError):
            raise
        except Exception as exc:  # noqa: BLE001 - every provider error is sorted here
            status = retry.status_of(exc)
            if lost and status == 404:
                raise _Lost(retry.describe(exc)) from None
            if self._stopping.is_set():
                raise _Stopped() from None
            endpoint = provider.endpoints[0]
            if not interruptible and status in (404, 405, 501):
                raise FatalProviderError(
                    f"--batch: {endpoint} has no batch API (HTTP {status} when creating a batch); run without --batch"
                ) from None
            raise FatalProviderError(
                f"{provider.name}:{provider.model} batch API at {endpoint}: {retry.describe(exc)}"
            ) from None

    async def _unless_stopping(self, call: Awaitable[_T]) -> _T:
        """`await call`, unless the run starts stopping first (then _Stopped, the call cancelled)."""
        task = asyncio.ensure_future(call)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.cancelled():
            raise _Stopped()
        return task.result()

    async def _pause(self, seconds: float) -> None:
        """A wait between retries, which a stop cuts short."""
        await self._stopped_within(seconds)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the run starts stopping: whether it is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    def _within_budget(self, jobs: list[Job]) -> list[Job]:
        """The jobs whose reserved cost (as the engine reckons it for a live request) fits."""
        max_cost = self.engine.config.max_cost
        if max_cost is None:
            return jobs
        spend, kept = 0.0, []
        for job in jobs:
            cost = self.engine.reservation(job)[1]
            if spend + cost > max_cost:
                self.engine.stats.stopped_reason = "budget"
                break
            spend += cost
            kept.append(job)
        return kept


def batched(pending: Collection[PendingBatch]) -> set[tuple[str, int]]:
    """(key, sample) of every item in `pending`."""
    return {(key, sample) for entry in pending for _, key, sample in entry.items}
