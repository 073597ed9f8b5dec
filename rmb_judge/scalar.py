"""Scalar reward models' part of a run (`hf:` judges, and what `vllm-rm:` judges share with
them): every unique answer scored once, rewards cached, and each presentation decided by its
answers' rewards as its benchmark reads them (`Benchmark.reward_verdict`).

An answer shown in several judgments (a Best-of-N best answer, a pair in two orders) is scored
(and cached) once. Scoring runs in chunks in a worker thread: each chunk is written to the
cache as soon as it is scored, the live display keeps running, and a stop takes effect between
chunks. Third-party progress bars and warnings are kept out of the live view (warnings go to
the summary instead).

`Rewards` is what both reward model pipelines share (the plan of answers to score, the cached
rewards, the verdicts, usage and warnings); each holds one and adds its own way of scoring:
`LocalRewardJudge` here, `ServedRewardJudge` in served_rm.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import hub
from .benchmark import Benchmark
from .cache import Cache, CachedReward, cache_file, text_sha256
from .config import RunConfig
from .endpoints import LOCAL
from .errors import CacheMiss, FatalProviderError
from .judgments import Judged, Presentation
from .pipeline import AnswerCallback, Plan, Status, settings_of
from .records import Dataset
from .summary import Results, Usage

if TYPE_CHECKING:
    from .local_rm import LocalRewardModel, ScoreItem

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


class RewardPlan:
    """The unique texts to score and, per presentation, which of them decide it (the answers
    it shows, in shown order)."""

    def __init__(self, render: Callable[[ScoreItem], str], config: RunConfig, benchmark: Benchmark,
                 dataset: Dataset):
        from .local_rm import ScoreItem

        task = config.task
        order = task.order_for(benchmark)
        self.presentations: list[Presentation] = []
        self.items: dict[str, Any] = {}  # text sha256 -> ScoreItem
        self.digests: list[list[Hashable]] = []  # per presentation: its answers' digests, in shown order
        rendered: dict[ScoreItem, str] = {}
        for record in dataset.records:
            conversation = tuple((m.role, m.content) for m in record.conversation)
            for judgment in benchmark.judgments(record, "scalar"):
                for shown in benchmark.orders_for(judgment, order, task.selection.seed, scalar=True):
                    presentation = Presentation(judgment, shown)
                    digests: list[Hashable] = []
                    for answer in presentation.shown:
                        item = ScoreItem(conversation, answer.text)
                        if item not in rendered:
                            rendered[item] = text_sha256(render(item))
                            self.items.setdefault(rendered[item], item)
                        digests.append(rendered[item])
                    self.presentations.append(presentation)
                    self.digests.append(digests)


class Rewards:
    """What every reward model's pipeline shares: its plan, the rewards it has (cached or
    scored in this run), each presentation's verdict from them, and what the summary says of
    them."""

    def __init__(self, config: RunConfig, benchmark: Benchmark):
        self.config = config
        self.benchmark = benchmark
        self.settings = settings_of(config, benchmark, None)
        self.identity = ""  # the model's, which its rewards are cached under (known once prepared)
        self.meter: Meter | None = None  # this run's scoring, for the live view (once prepared)
        self.cache: Cache | None = None  # where rewards are looked up and kept (once looked up)
        self.plan_: RewardPlan | None = None
        self.values: dict[str, CachedReward] = {}
        self.cached: set[str] = set()
        self.missing: list[str] = []
        self.on_answer: AnswerCallback = lambda key: None

    def plan(self, render: Callable[[ScoreItem], str], dataset: Dataset) -> Plan:
        self.plan_ = RewardPlan(render, self.config, self.benchmark, dataset)
        return Plan(self.plan_.presentations, self.plan_.digests)

    def lookup(self, cache: Cache, on_answer: AnswerCallback) -> int:
        """Report what the cache holds; what is still to score. --offline: a miss is an error
        (a --precision run needs only some of them: it checks its own)."""
        plan, meter = self.plan_, self.meter
        assert plan is not None and meter is not None
        self.cache, self.on_answer = cache, on_answer
        self.values = cache.get_rewards(self.identity, plan.items)
        self.cached = set(self.values)
        for digest in list(self.values):
            on_answer(digest)
        self.missing = [d for d in plan.items if d not in self.values]
        if self.missing and self.config.execution.engine.offline and self.config.task.precision is None:
            raise CacheMiss(
                f"--offline: {len(self.missing)} of {len(plan.items)} answers have no cached reward "
                f"for {self.config.task.judge.spec} in {cache.path}; nothing was scored"
            )
        meter.to_score = len(self.missing)
        return meter.to_score

    def wanted(self, only: set[Hashable] | None) -> list[str]:
        """The answers still to score (those in `only`, a --precision round's)."""
        return self.missing if only is None else [d for d in self.missing if d in only]

    def add(self, digest: str, reward: CachedReward, cached: bool = False) -> None:
        """A reward scored (or, `cached`, found scored by another process meanwhile)."""
        self.values[digest] = reward
        if cached:
            self.cached.add(digest)
        self.on_answer(digest)

    def verdict(self, index: int) -> Judged | None:
        """A presentation's verdict from its answers' rewards, as its benchmark reads them
        (RMB: the chosen answer must get a strictly higher reward; equal rewards are a loss,
        counted apart, as in the RMB reference code)."""
        plan = self.plan_
        assert plan is not None
        digests = plan.digests[index]
        if any(d not in self.values for d in digests):
            return None
        rewards = [self.values[d] for d in digests]  # type: ignore[index]
        presentation = plan.presentations[index]
        return Judged(
            presentation=presentation,
            verdict=self.benchmark.reward_verdict(presentation, [r.reward for r in rewards]),
            raw=[r.reward for r in rewards],
            cached=all(d in self.cached for d in digests),
            truncated=any(r.truncated for r in rewards),
            scalar=True,
        )

    def usage(self, judged: list[Judged]) -> Usage:
        meter = self.meter
        assert self.plan_ is not None and meter is not None
        used = [self.values[d] for d in self.plan_.items if d in self.values]
        return Usage(
            cache_hits=sum(1 for j in judged if j.cached),
            truncated=sum(1 for j in judged if j.truncated),
            input_tokens=meter.tokens,
            answers_scored=meter.answers,
            unique_answers=len(self.plan_.items),
            truncated_inputs=sum(1 for r in used if r.truncated),
            equal_rewards=sum(1 for j in judged if j.verdict == "tie"),
            answers_per_second=round(meter.rate(), 2),
            results=Results(answers=len(used), input_tokens=sum(r.tokens for r in used), cost_usd=0.0),
        )

    def warnings(self, max_length: int | None, heard: list[str]) -> list[str]:
        assert self.plan_ is not None
        noticed = []
        used = [self.values[d] for d in self.plan_.items if d in self.values]
        truncated = sum(1 for r in used if r.truncated)
        if used and truncated / len(used) > TRUNCATION_WARNING:
            noticed.append(
                f"{truncated} of {len(used)} scored inputs ({100 * truncated / len(used):.1f}%) were "
                f"longer than --max-length {max_length} tokens and lost their beginning"
            )
        spec = self.config.task.judge.spec
        noticed.extend(f"{spec}: {w}" for w in dict.fromkeys(heard))
        return noticed

    def estimate(self, render: Callable[[ScoreItem], str], dataset: Dataset) -> dict[str, Any]:
        """What `rmb-judge estimate` says of a reward model: answers to score, none priced."""
        plan = RewardPlan(render, self.config, self.benchmark, dataset)
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
            "comparisons": len(plan.presentations),
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


class LocalRewardJudge:
    """An `hf:` reward model's pipeline (pipeline.Pipeline): the model loaded here, scoring the
    answers the cache lacks chunk by chunk."""

    progress_rows = "answers"

    def __init__(self, config: RunConfig, benchmark: Benchmark):
        self.config = config
        self.rewards = Rewards(config, benchmark)
        self.settings = self.rewards.settings
        self.model: LocalRewardModel | None = None
        self.heard: list[str] = []  # third-party warnings, for the summary
        self._stopping: str | None = None

    async def prepare(self) -> None:
        """Load the model's config and tokenizer (a missing folder or a non-reward model is
        an error before the data loads) and know its identity."""
        check_available(self.config.task.judge.model)
        with quiet_libraries(self.heard):
            self.model = load_model(self.config)
        self.rewards.identity = self.settings.model_identity = self.model.identity()
        self.rewards.meter = Meter(self.model)

    def probe(self) -> Awaitable[list[str | None]] | None:
        return None

    def plan(self, dataset: Dataset) -> Plan:
        assert self.model is not None
        return self.rewards.plan(self.model.render, dataset)

    def lookup(self, cache: Cache, on_answer: AnswerCallback) -> int:
        return self.rewards.lookup(cache, on_answer)

    async def before_sending(self, cache: Cache, probe: Awaitable[list[str | None]] | None) -> None:
        cache.writable(f"{len(self.rewards.missing)} new rewards")
        assert self.model is not None
        with quiet_libraries(self.heard):  # before the live view, which a loading model must not scribble over
            await asyncio.to_thread(self.model.load)
        spec = self.config.task.judge.spec
        print(f"rmb-judge: {spec}: {self.model.placement_line()}", file=sys.stderr)
        print(f"rmb-judge: {spec}: {self.model.batching}", file=sys.stderr)

    async def fetch(self, only: set[Hashable] | None = None) -> None:
        """Score the missing answers (those in `only`, a --precision round's) chunk by chunk in a
        worker thread, caching each chunk."""
        rewards, model = self.rewards, self.model
        meter, cache = rewards.meter, rewards.cache
        assert model is not None and meter is not None and cache is not None and rewards.plan_ is not None
        missing = rewards.wanted(only)
        with quiet_libraries(self.heard):
            for start in range(0, len(missing), CHUNK):
                if self._stopping:
                    break
                chunk = missing[start : start + CHUNK]
                scored = await asyncio.to_thread(model.score, [rewards.plan_.items[d] for d in chunk], meter.update)
                new = {d: CachedReward(r.value, r.truncated, r.tokens, LOCAL)
                       for d, r in zip(chunk, scored, strict=True)}
                meter.chunk_done(sum(r.truncated for r in new.values()))
                cache.put_rewards(rewards.identity, self.config.task.judge.model, new.items())
                for digest, reward in new.items():
                    rewards.add(digest, reward)

    def stop(self, reason: str) -> str:
        self._stopping = reason
        return "the chunk being scored"

    def verdict(self, index: int) -> Judged | None:
        return self.rewards.verdict(index)

    def metrics(self) -> dict[str, str]:
        return self.rewards.meter.metrics() if self.rewards.meter else {}

    def status(self) -> Status:
        meter, plan = self.rewards.meter, self.rewards.plan_
        assert meter is not None and plan is not None
        return Status(self._stopping, None, bool(meter.answers), len(plan.items), len(self.rewards.cached),
                      meter.answers)

    def report(self, judged: list[Judged], indices: list[int]) -> tuple[Usage, list[str]]:
        assert self.model is not None
        return self.rewards.usage(judged), self.rewards.warnings(self.model.max_length, self.heard)

    async def aclose(self) -> None:
        return None

    def estimate(self, dataset: Dataset) -> dict[str, Any]:
        assert self.model is not None
        return self.rewards.estimate(self.model.render, dataset)


def estimate(config: RunConfig, benchmark: Benchmark) -> dict[str, Any]:
    """`estimate` for a reward model (`hf:` or `vllm-rm:`): its answers to score, none priced."""
    from .session import load_dataset

    judge = config.task.judge.kind.pipeline(config, benchmark)
    asyncio.run(judge.prepare())
    result: dict[str, Any] = judge.estimate(load_dataset(config, benchmark))
    return result


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
