"""Scalar reward models' part of a run (`hf:` judges): every unique answer scored once,
rewards cached, and each comparison decided by its two rewards.

A Best-of-N best answer is shared by all its comparisons, so it is scored (and cached)
once. Scoring runs in chunks in a worker thread: each chunk is written to the cache as
soon as it is scored, the live display keeps running, and a stop takes effect between
chunks. Third-party progress bars and warnings are kept out of the live view (warnings go
to the summary instead).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import comparisons as cmp
from . import hub
from .benchmark import Benchmark
from .cache import Cache, CachedReward, cache_file, text_sha256
from .config import RunConfig
from .endpoints import LOCAL
from .errors import CacheMiss, FatalProviderError
from .records import Dataset
from .scoring import Judged
from .summary import Results, Usage

if TYPE_CHECKING:
    from .local_rm import LocalRewardModel

CHUNK = 256  # answers per cache write and per interruption check
TRUNCATION_WARNING = 0.01  # more than this share of inputs cut: say so


def check_available(model: str) -> None:
    """Before transformers is imported: a model that cannot be had (hub.py) is one line, and
    one in the hub cache while the hub cannot be reached loads from the cache alone (the
    hub client reads HF_HUB_OFFLINE when imported), not after half a minute of retries."""
    problem, cache_only = hub.availability(model)
    if problem:
        raise FatalProviderError(problem)
    if cache_only:
        os.environ["HF_HUB_OFFLINE"] = "1"
        print(f"rmb-judge: {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')} cannot be reached: "
              f"hf:{model} is loaded from the hub cache", file=sys.stderr)


def load_model(config: RunConfig) -> LocalRewardModel:
    from .local_rm import LocalRewardModel

    task, local = config.task, config.task.local
    return LocalRewardModel(
        task.judge.model,
        max_length=local.max_length,
        batch_tokens=local.batch_tokens,
        devices=list(local.devices) if local.devices else None,
        trust_remote_code=local.trust_remote_code,
        reward_field=local.reward_field,
        revision=local.revision,
    )


class ScalarPlan:
    """The unique texts to score and, per comparison, which two of them decide it."""

    def __init__(self, model: LocalRewardModel, dataset: Dataset):
        from .local_rm import ScoreItem

        self.comparisons = cmp.comparisons_of(dataset.records)
        self.presentations = [cmp.Presentation(c, "AB") for c in self.comparisons]
        self.items: dict[str, Any] = {}  # text sha256 -> ScoreItem
        self.pairs: list[tuple[str, str]] = []  # (preferred digest, other digest)
        rendered: dict[ScoreItem, str] = {}
        for c in self.comparisons:
            conversation = tuple((m.role, m.content) for m in c.record.conversation)
            digests = []
            for answer in (c.preferred, c.other):
                item = ScoreItem(conversation, answer.text)
                if item not in rendered:
                    rendered[item] = text_sha256(model.render(item))
                    self.items.setdefault(rendered[item], item)
                digests.append(rendered[item])
            self.pairs.append((digests[0], digests[1]))


def verdict(comparison: cmp.Comparison, preferred: CachedReward, other: CachedReward, cached: bool) -> Judged:
    """The preferred answer must get a strictly higher reward; equal rewards are a loss,
    counted apart (as in the RMB reference code)."""
    if preferred.reward > other.reward:
        said = "A"
    elif preferred.reward == other.reward:
        said = "tie"
    else:
        said = "B"
    return Judged(
        presentation=cmp.Presentation(comparison, "AB"),
        verdict=said,
        raw=[preferred.reward, other.reward],
        cached=cached,
        truncated=preferred.truncated or other.truncated,
        scalar=True,
    )


class Meter:
    """Answers, tokens and truncated inputs scored in this run, for the live view. `score`
    reports running totals per call; the meter adds the calls (chunks) up."""

    def __init__(self, model: LocalRewardModel):
        self.model = model
        self.to_score = 0
        self.answers = self.tokens = self.truncated = 0
        self._chunk = (0, 0)  # the running totals of the chunk being scored
        self.started = time.monotonic()

    def update(self, answers: int, tokens: int) -> None:
        previous = self._chunk
        self._chunk = (answers, tokens)
        self.answers += answers - previous[0]
        self.tokens += tokens - previous[1]

    def chunk_done(self, truncated: int) -> None:
        self._chunk = (0, 0)
        self.truncated += truncated

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.answers / elapsed if elapsed > 0 else 0.0

    def metrics(self) -> dict[str, str]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        shown = {
            "answers scored": f"{self.answers}/{self.to_score}",
            "answers/s": f"{self.answers / elapsed:.1f}",
            "tokens/s": f"{self.tokens / elapsed:,.0f}",
            "inputs truncated": str(self.truncated),
        }
        memory = self.model.gpu_memory()
        if memory:
            shown["GPU memory"] = memory
        return shown


class ScalarBackend:
    """A local reward model's part of a session (see session.Backend)."""

    progress_rows = "answers"

    def __init__(self, config: RunConfig, benchmark: Benchmark):
        from .generative import settings_of

        self.config = config
        self.settings = settings_of(config, None)
        self.model: LocalRewardModel | None = None
        self.heard: list[str] = []  # third-party warnings, for the summary
        self._stopping: str | None = None
        self.meter: Meter | None = None

    async def prepare(self) -> None:
        """Load the model's config and tokenizer (a missing folder or a non-reward model is
        an error before the data loads) and know its identity."""
        check_available(self.config.task.judge.model)
        with quiet_libraries(self.heard):
            self.model = load_model(self.config)
        self.identity = self.model.identity()
        self.settings.model_identity = self.identity
        self.meter = Meter(self.model)

    def open_cache(self) -> Cache:
        return Cache(self.config.execution.cache)

    def probe(self) -> Awaitable[list[str | None]] | None:
        return None

    def plan(self, dataset: Dataset) -> Sequence[Sequence[Hashable]]:
        assert self.model is not None
        self.plan_ = ScalarPlan(self.model, dataset)
        return [tuple(set(pair)) for pair in self.plan_.pairs]

    def units(self) -> Sequence[cmp.Presentation]:
        return self.plan_.presentations

    def lookup(self, cache: Cache, on_answer) -> int:
        plan = self.plan_
        self.rewards = cache.get_rewards(self.identity, plan.items)
        self.cached = set(self.rewards)
        for digest in list(self.rewards):
            on_answer(digest)
        self.missing = [d for d in plan.items if d not in self.rewards]
        # a --precision run needs only some of them: it checks its own
        if self.missing and self.config.execution.engine.offline and self.config.task.precision is None:
            raise CacheMiss(
                f"--offline: {len(self.missing)} of {len(plan.items)} answers have no cached reward "
                f"for {self.config.task.judge.spec} in {cache.path}; nothing was scored"
            )
        assert self.meter is not None
        self.meter.to_score = len(self.missing)
        return len(self.missing)

    async def before_sending(self, cache: Cache, probe: Awaitable[list[str | None]] | None) -> None:
        cache.writable(f"{len(self.missing)} new rewards")
        assert self.model is not None
        with quiet_libraries(self.heard):  # before the live view, which a loading model must not scribble over
            await asyncio.to_thread(self.model.load)
        spec = self.config.task.judge.spec
        print(f"rmb-judge: {spec}: {self.model.placement_line()}", file=sys.stderr)
        print(f"rmb-judge: {spec}: {self.model.batching}", file=sys.stderr)

    async def work(self, cache: Cache, on_answer, only: set[Hashable] | None = None) -> None:
        """Score the missing answers (those in `only`, a --precision round's) chunk by chunk in a
        worker thread, caching each chunk."""
        assert self.model is not None and self.meter is not None
        plan, model, meter = self.plan_, self.model, self.meter
        missing = self.missing if only is None else [d for d in self.missing if d in only]
        with quiet_libraries(self.heard):
            for start in range(0, len(missing), CHUNK):
                if self._stopping:
                    break
                chunk = missing[start : start + CHUNK]
                scored = await asyncio.to_thread(model.score, [plan.items[d] for d in chunk], meter.update)
                new = {d: CachedReward(r.value, r.truncated, r.tokens, LOCAL)
                       for d, r in zip(chunk, scored, strict=True)}
                meter.chunk_done(sum(r.truncated for r in new.values()))
                cache.put_rewards(self.identity, self.config.task.judge.model, new.items())
                self.rewards.update(new)
                for digest in new:
                    on_answer(digest)

    def stop(self, reason: str) -> str:
        self._stopping = reason
        return "the chunk being scored"

    def judge(self, index: int) -> Judged | None:
        a, b = self.plan_.pairs[index]
        if a not in self.rewards or b not in self.rewards:
            return None
        return verdict(self.plan_.comparisons[index], self.rewards[a], self.rewards[b],
                       cached=a in self.cached and b in self.cached)

    @property
    def stopped_reason(self) -> str | None:
        return self._stopping

    @property
    def stop_detail(self) -> str | None:
        return None

    @property
    def sent_anything(self) -> bool:
        return bool(self.meter and self.meter.answers)

    def record_run(self, cache: Cache) -> None:
        assert self.meter is not None
        cache.record_run(self.config.task.judge.spec, len(self.plan_.items), len(self.cached), self.meter.answers)

    def metrics(self) -> dict[str, str]:
        return self.meter.metrics() if self.meter else {}

    def usage(self, judged: list[Judged], indices: list[int]) -> Usage:
        assert self.meter is not None
        used = [self.rewards[d] for d in self.plan_.items if d in self.rewards]
        return Usage(
            cache_hits=sum(1 for j in judged if j.cached),
            truncated=sum(1 for j in judged if j.truncated),
            input_tokens=self.meter.tokens,
            answers_scored=self.meter.answers,
            unique_answers=len(self.plan_.items),
            truncated_inputs=sum(1 for r in used if r.truncated),
            equal_rewards=sum(1 for j in judged if j.verdict == "tie"),
            answers_per_second=round(self.meter.rate(), 2),
            results=Results(answers=len(used), input_tokens=sum(r.tokens for r in used), cost_usd=0.0),
        )

    def warnings(self) -> list[str]:
        noticed = []
        used = [self.rewards[d] for d in self.plan_.items if d in self.rewards]
        truncated = sum(1 for r in used if r.truncated)
        if used and truncated / len(used) > TRUNCATION_WARNING:
            assert self.model is not None
            noticed.append(
                f"{truncated} of {len(used)} scored inputs ({100 * truncated / len(used):.1f}%) were "
                f"longer than --max-length {self.model.max_length} tokens and lost their beginning"
            )
        spec = self.config.task.judge.spec
        noticed.extend(f"{spec}: {w}" for w in dict.fromkeys(self.heard))
        return noticed

    async def aclose(self) -> None:
        return None

    def unsaved(self) -> list[dict[str, Any]]:
        return []

    def estimate(self, dataset: Dataset) -> dict[str, Any]:
        """What `rmb-judge estimate` says of a reward model: answers to score, none priced."""
        plan = ScalarPlan(self.model, dataset)  # type: ignore[arg-type]
        cached: dict[str, CachedReward] = {}
        if cache_file(self.config.execution.cache).exists():  # an estimate creates no cache
            cache = Cache(self.config.execution.cache, create=False)
            try:
                cached = cache.get_rewards(self.identity, plan.items)
            finally:
                cache.close()
        return {
            "judge": self.config.task.judge.spec,
            "simulated": False,
            "template": None,
            "records": len(dataset.records),
            "comparisons": len(plan.comparisons),
            "total_requests": len(plan.items),
            "requests": len(plan.items) - len(cached),
            "cached": len(cached),
            "input_tokens": None,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "full_cost_usd": 0.0,
            "batch": False,
            "token_method": None,
            "output_tokens_per_request": 0,
            "output_tokens_note": "a local reward model: 'requests' are unique answers to score",
            "price_source": "local model (no API cost)",
        }


@contextmanager
def quiet_libraries(heard: list[str]) -> Iterator[None]:
    """No third-party progress bars or warnings on the terminal while we draw the live view;
    the warnings are collected into `heard` for the summary instead."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        heard.extend(" ".join(str(w.message).split())[:200] for w in caught)
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
