"""`run --batch`: the uncached requests go through the provider's batch API (half price).

Each batch id is stored in the cache the moment the batch is created, so a rerun after a
crash resumes polling it and never submits the same work twice. Every answer is written to
the same cache as live answers, so a later normal run is fully cached. Items that failed
inside a batch are not cached: the next run sends them again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from . import batch_api
from .cache import Cache
from .engine import Job, Outcome, Stats
from .estimate import Estimator
from .judges import RoundRobin
from .providers.base import ChatResponse, Provider

MAX_ITEMS = 10_000  # per batch: well under both APIs' limits (50,000 / 100,000 requests)


@dataclass
class BatchProgress:
    """What the display shows while batches run."""

    batches: dict[str, batch_api.BatchStatus] = field(default_factory=dict)

    def metrics(self) -> dict[str, str]:
        open_ = sum(1 for s in self.batches.values() if not s.done)
        counts = [s.counts for s in self.batches.values()]
        done = sum(c.get("succeeded", 0) + c.get("errored", 0) for c in counts)
        total = done + sum(c.get("processing", 0) for c in counts)
        return {"batches open": f"{open_}/{len(self.batches)}", "batch items done": f"{done}/{total}"}


class BatchRunner:
    def __init__(
        self,
        provider: Provider,
        cache: Cache,
        estimator: Estimator,
        stats: Stats,
        on_outcome: Callable[[tuple[str, int], Outcome], None],
        *,
        template: str,
        template_sha256: str,
        max_cost: float | None,
        poll_interval: float,
    ):
        # several base URLs: a batch lives on one server
        self.provider = provider.providers[0] if isinstance(provider, RoundRobin) else provider
        self.cache = cache
        self.estimator = estimator
        self.stats = stats
        self.on_outcome = on_outcome
        self.template = template
        self.template_sha256 = template_sha256
        self.max_cost = max_cost
        self.poll_interval = poll_interval
        self.progress = BatchProgress()

    async def run(self, jobs: list[Job], outcomes: dict[tuple[str, int], Outcome]) -> None:
        """Answer `jobs` (all uncached): resume this judge's pending batches, then submit
        the rest, then poll everything until it ends."""
        by_key = {(j.key, j.sample): j for j in jobs}
        pending = self.cache.pending_batches(self.provider.name, self.estimator.model)
        covered = {(key, sample) for items in pending.values() for _, key, sample in items}
        fresh = [j for j in jobs if (j.key, j.sample) not in covered]
        fresh = self._within_budget(fresh)
        for start in range(0, len(fresh), MAX_ITEMS):
            chunk = fresh[start : start + MAX_ITEMS]
            items = [(f"{j.key[:48]}-{j.sample}", j) for j in chunk]
            batch_id = await batch_api.submit(self.provider, [(cid, j.request) for cid, j in items])
            self.stats.requests += len(items)
            stored = [(cid, j.key, j.sample) for cid, j in items]
            self.cache.add_batch(batch_id, self.provider.name, self.estimator.model, stored)
            pending[batch_id] = stored
        await asyncio.gather(*(self._finish(bid, items, by_key, outcomes) for bid, items in pending.items()))

    def _within_budget(self, jobs: list[Job]) -> list[Job]:
        if self.max_cost is None:
            return jobs
        spend, kept = 0.0, []
        for job in jobs:
            cost = self.estimator.cost(*self.estimator.tokens(job.request)) or 0.0
            if spend + cost > self.max_cost:
                self.stats.stopped_reason = "budget"
                break
            spend += cost
            kept.append(job)
        return kept

    async def _finish(self, batch_id: str, items: list, by_key: dict, outcomes: dict) -> None:
        while True:
            status = await batch_api.poll(self.provider, batch_id)
            self.progress.batches[batch_id] = status
            if status.done:
                break
            await asyncio.sleep(self.poll_interval)
        answers = await batch_api.results(self.provider, batch_id) if status.state == "ended" else {}
        for custom_id, key, sample in items:
            answer = answers.get(custom_id, f"batch {batch_id} {status.provider_state}: no result")
            job = by_key.get((key, sample))
            if isinstance(answer, ChatResponse):
                self.stats.add_usage(answer, self.estimator.cost(answer.input_tokens, answer.output_tokens))
                self.cache.put_response(key, sample, self.provider.name,
                                        job.request if job else None, answer,
                                        self.template, self.template_sha256)
                outcome = Outcome(answer)
            else:
                outcome = Outcome(None, error=answer)
                self.stats.failed += 1
            if job is not None:
                outcomes[key, sample] = outcome
                self.stats.done += 1
                self.on_outcome((key, sample), outcome)
        self.cache.finish_batch(batch_id, status.provider_state)
