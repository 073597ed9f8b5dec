"""`run --batch`: the uncached requests go through the provider's batch API (half price).

Each batch id is stored in the cache the moment the batch is created, so a rerun after a
crash resumes polling it and never submits the same work twice. Every answer is written to
the same cache as live answers, so a later normal run is fully cached. Items that failed
inside a batch are not cached: the next run sends them again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import retry
from .engine import Engine, Job, Outcome
from .errors import FatalProviderError
from .providers.base import BatchStatus, ChatResponse, RoundRobin

_T = TypeVar("_T")
MAX_ITEMS = 10_000  # per batch: well under both APIs' limits (50,000 / 100,000 requests)


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
        self._stopping = asyncio.Event()

    def stop(self) -> bool:
        """Ctrl-C: stop polling (the batches stay recorded; a rerun resumes them). A
        submission under way is finished and recorded first, so it is never paid twice.
        False if it was already stopping (a second Ctrl-C: the caller cancels outright)."""
        if self._stopping.is_set():
            return False
        self._stopping.set()
        return True

    def pending(self, jobs: list[Job]) -> dict[str, list[tuple[str, str, int]]]:
        """The unfinished batches (of this provider, model and endpoint) holding any of `jobs`."""
        provider = self.provider
        wanted = {(j.key, j.sample) for j in jobs}
        return {
            batch_id: items
            for batch_id, items in self.engine.cache.pending_batches(
                provider.name, provider.model, provider.endpoints[0]).items()
            if any((key, sample) in wanted for _, key, sample in items)
        }

    async def run(self, jobs: list[Job], submit: bool = True) -> None:
        """Answer `jobs` (all uncached): resume the pending batches that hold some of them,
        and (when `submit`) put the rest in new batches, then poll everything until it ends.
        Before a batch is submitted its items are claimed, like live requests: items another
        process is sending are waited for through the engine instead."""
        engine = self.engine
        by_key = {(j.key, j.sample): j for j in jobs}
        pending = self.pending(jobs)
        covered = {(key, sample) for items in pending.values() for _, key, sample in items}
        fresh = [j for j in jobs if (j.key, j.sample) not in covered] if submit else []
        held: list[Job] = []
        if fresh:
            claims = engine.cache.claim([(j.key, j.sample) for j in fresh], engine.endpoints)
            for key, response in claims.answered.items():
                engine.settle(key, Outcome(response, cached=True))
            mine = set(claims.mine)
            held = [j for j in fresh if (j.key, j.sample) in claims.held]
            fresh = self._within_budget([j for j in fresh if (j.key, j.sample) in mine])
        for start in range(0, len(fresh), MAX_ITEMS):
            if self._stopping.is_set():
                break
            chunk = fresh[start : start + MAX_ITEMS]
            batch_id, stored = await _not_cancelled_midway(self._submit(chunk))
            pending[batch_id] = stored
        for job in fresh:  # submitted, or never to be: the batch rows guard them now
            engine.cache.release(job.key, job.sample)
        try:
            async with asyncio.TaskGroup() as group:  # one failing poll cancels the others
                for batch_id, items in pending.items():
                    group.create_task(self._finish(batch_id, items, by_key))
                if held:
                    group.create_task(engine.send(held))
        except* FatalProviderError as fatal:
            raise fatal.exceptions[0] from None

    async def _submit(self, jobs: list[Job]) -> tuple[str, list[tuple[str, str, int]]]:
        """Create one batch and record it in the cache at once (it is paid for from now on)."""
        provider, engine = self.provider, self.engine
        items = [(f"{j.key[:48]}-{j.sample}", j) for j in jobs]
        self.submitting = True
        try:
            batch_id = await self._call(provider.submit_batch, [(cid, j.request) for cid, j in items])
            stored = [(cid, j.key, j.sample) for cid, j in items]
            engine.cache.add_batch(batch_id, provider.name, provider.model, provider.endpoints[0], stored)
        finally:
            self.submitting = False
        engine.stats.requests += len(items)
        return batch_id, stored

    async def _call(self, fn, *args):
        """A batch API call under the engine's retry policy; what cannot be retried stops
        the run with one clear line."""
        engine = self.engine
        try:
            policy = retry.policy(self.provider.classify, engine.config.max_retries,
                                  engine.config.backoff_initial, engine.count_retry,
                                  asked_wait=self.provider.retry_after)
            return await policy(fn, *args)
        except FatalProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - every provider error is sorted here
            endpoint = self.provider.endpoints[0]
            if fn == self.provider.submit_batch and retry.status_of(exc) in (404, 405, 501):
                raise FatalProviderError(
                    f"--batch: {endpoint} has no batch API (HTTP {retry.status_of(exc)} when "
                    "creating a batch); run without --batch"
                ) from None
            raise FatalProviderError(
                f"{self.provider.name}:{self.provider.model} batch API at {endpoint}: {retry.describe(exc)}"
            ) from None

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

    async def _finish(self, batch_id: str, items: list, by_key: dict) -> None:
        engine = self.engine
        while True:
            status = await self._call(self.provider.poll_batch, batch_id)
            self.progress.batches[batch_id] = status
            if status.done:
                break
            try:
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval)
                engine.stats.stopped_reason = "interrupted"
                return  # still pending in the cache: the next run resumes it
            except TimeoutError:
                pass
        answers = await self._call(self.provider.batch_results, batch_id) if status.state == "ended" else {}
        for custom_id, key, sample in items:
            answer = answers.get(custom_id, f"batch {batch_id} {status.provider_state}: no result")
            job = by_key.get((key, sample))
            if isinstance(answer, ChatResponse):
                outcome = await engine.keep(key, sample, job.request if job else None, answer)
            else:
                outcome = Outcome(None, error=answer)
                engine.stats.failed += 1
            if job is not None:
                engine.settle((key, sample), outcome)
        engine.cache.finish_batch(batch_id, status.provider_state)


async def _not_cancelled_midway(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work` to its end even if the run is cancelled meanwhile (then re-raise the
    cancellation): a batch the provider created must be recorded, or a rerun pays for it again."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError()
    return result
