"""One run, end to end: records → comparisons → requests → engine → verdicts → scores → OUT/.

The run folder is written whatever happens after the data loads: a completed run, a
budget stop, Ctrl-C or a fatal provider error all leave a summary (`"complete": false`
unless every comparison was judged) and every answer received stays in the cache.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import comparisons as cmp
from . import outputs, records, scoring, templates
from .batch import BatchRunner
from .cache import Cache
from .display import Display, RunProgress
from .engine import Engine, EngineConfig, Job, Outcome, Stats
from .errors import FatalProviderError, UsageError
from .estimate import Estimator
from .fetch import load_manifest
from .judges import JudgeSpec, make_provider
from .scoring import Judged, majority
from .verdicts import looks_like_refusal, parse_rating, parse_verdict, verdict_from_ratings


@dataclass
class LocalOptions:
    """Settings of `hf:` judges."""

    max_length: int | None = None
    batch_tokens: int = 16384
    devices: list[str] | None = None
    trust_remote_code: bool = False
    reward_field: str | None = None
    revision: str | None = None


@dataclass
class RunConfig:
    judge: JudgeSpec
    data: Path
    out: Path
    selection: records.Selection = field(default_factory=records.Selection)
    template: str = "rmb"
    order: str = "random"
    samples: int = 1
    temperature: float | None = 0.0
    max_tokens: int = 2048
    engine: EngineConfig = field(default_factory=EngineConfig)
    cache: Path = Path("cache")
    base_urls: list[str] = field(default_factory=list)
    live: bool = False
    progress_interval: float = 10.0
    batch: bool = False
    poll_interval: float = 30.0
    local: LocalOptions = field(default_factory=LocalOptions)
    argv: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    summary: dict[str, Any]
    complete: bool
    stopped_reason: str | None  # budget | interrupted | fatal | error


class GenerativePlan:
    """Which requests (cache key and sample index) decide each presentation's verdict."""

    def __init__(self, config: RunConfig, dataset: records.Dataset, template: templates.Template):
        self.template = template
        self.samples = config.samples
        order = "fixed" if template.kind == "pointwise" else config.order
        self.presentations = cmp.presentations(
            cmp.comparisons_of(dataset.records), order, config.selection.seed
        )
        settings = cmp.RequestSettings(
            config.judge.provider, config.judge.model, config.max_tokens, config.temperature
        )
        self.requests: dict[str, Any] = {}
        self.keys: list[tuple[str, ...]] = []
        for p in self.presentations:
            pairs = cmp.requests_for(p, template, settings)
            self.requests.update(pairs)
            self.keys.append(tuple(key for key, _ in pairs))

    def jobs(self) -> list[Job]:
        return [Job(k, s, r) for k, r in self.requests.items() for s in range(self.samples)]

    def judge(self, index: int, outcomes: dict[tuple[str, int], Outcome]) -> Judged | None:
        """The presentation's verdict, or None while any of its answers is missing."""
        keys = self.keys[index]
        wanted = [[outcomes.get((k, s)) for k in keys] for s in range(self.samples)]
        if any(o is None for sample in wanted for o in sample):
            return None
        votes: list[str | None] = []
        raws: list[Any] = []
        errors, refusals, truncated = [], 0, False
        for sample in wanted:
            if any(o.error for o in sample):
                errors.append(next(o.error for o in sample if o.error))
                votes.append(None)
                raws.append(None)
                continue
            responses = [o.response for o in sample]
            texts = [r.text for r in responses]
            if self.template.kind == "pairwise":
                vote = parse_verdict(texts[0], self.template.style)
                raws.append(texts[0])
            else:
                vote = verdict_from_ratings(parse_rating(texts[0]), parse_rating(texts[1]))
                raws.append({"A": texts[0], "B": texts[1]})
            truncated |= any(r.truncated for r in responses)
            if vote is None and any(r.refusal or looks_like_refusal(r.text) for r in responses):
                refusals += 1
            votes.append(vote)
        verdict = majority(votes)
        return Judged(
            presentation=self.presentations[index],
            verdict=verdict,
            raw=raws[0] if self.samples == 1 else raws,
            cached=all(o.cached for sample in wanted for o in sample),
            error=errors[0] if verdict is None and len(errors) == len(votes) else None,
            refused=verdict is None and refusals > 0,
            truncated=truncated,
            votes=tuple(votes),
        )


def run(config: RunConfig) -> RunResult:
    if config.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {config.samples}")
    if config.order not in cmp.ORDERS:
        raise UsageError(f"--order must be one of {', '.join(cmp.ORDERS)}, got {config.order!r}")
    try:
        dataset = load_dataset(config)
        if config.judge.scalar:
            from .scalar import run_scalar

            return run_scalar(config, dataset)
        return asyncio.run(run_generative(config, dataset))
    finally:
        gc.unfreeze()  # what paused_gc froze is collectable again


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection during a bulk step that builds ~100,000 long-lived
    objects (records, requests, verdicts) and frees few; what it built is then frozen, so
    later collections do not rescan it either (a fully cached rerun spent a third of its
    time in collections). `run` unfreezes everything when it ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def load_dataset(config: RunConfig) -> records.Dataset:
    with paused_gc():
        dataset = records.load(config.data, config.selection)
    if not dataset.records:
        raise UsageError(
            f"no records selected from {config.data} ({dataset.scenarios_found} scenario files "
            "found for the chosen sets and sections); check --sets/--sections/--scenarios"
        )
    upstream = sum(
        1 for e in load_manifest().files
        if any(e.path.startswith(f"{records.SETS[st]}/{records.SECTIONS[sc]}/")
               for st in config.selection.sets for sc in config.selection.sections)
    )
    print(
        f"rmb-judge: {dataset.root}: {dataset.scenarios_found} of {upstream} scenario files found "
        f"for the chosen sets and sections; {len(dataset.files)} read, "
        f"{len(dataset.records):,} records selected",
        file=sys.stderr,
    )
    return dataset


async def run_generative(config: RunConfig, dataset: records.Dataset) -> RunResult:
    template = templates.load(config.template)
    with paused_gc():
        plan = GenerativePlan(config, dataset, template)
    judge = config.judge
    provider = make_provider(judge, config.base_urls)
    cache = Cache(config.cache)
    stats = Stats()
    progress = RunProgress(judge.spec, judge.simulated, metrics=lambda: engine_metrics(stats))
    for p in plan.presentations:
        progress.sections[p.comparison.record.section_key].total += 1
    judged: dict[int, Judged] = {}
    waiting: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, keys in enumerate(plan.keys):
        for key in keys:
            for sample in range(config.samples):
                waiting[key, sample].append(index)

    def on_outcome(key: tuple[str, int], outcome: Outcome) -> None:
        for index in waiting.pop(key, ()):
            if index not in judged and (result := plan.judge(index, engine.outcomes)):
                judged[index] = result
                progress.add(result)

    estimate = Estimator(judge.provider, judge.model, template.style, config.max_tokens, config.batch)
    if config.engine.max_cost is not None and estimate.cost(1, 1) is None:
        raise UsageError(
            f"--max-cost: genai-prices has no price for {judge.spec}, so spend cannot be "
            "budgeted (drop --max-cost, or use the provider's own spending limits)"
        )
    engine = Engine(
        provider, cache, config.engine,
        template=template.name, template_sha256=template.sha256,
        estimate_tokens=estimate.tokens, cost_of=estimate.cost,
        stats=stats, on_outcome=on_outcome,
    )
    batches = BatchRunner(engine, config.poll_interval) if config.batch else None
    if batches:
        progress.metrics = lambda: {**engine_metrics(stats), **batches.progress.metrics()}
    stopped: str | None = None
    failure: BaseException | None = None
    loop = asyncio.get_running_loop()
    task: asyncio.Future | None = None

    def interrupt() -> None:
        if batches and batches.stop():
            return  # first Ctrl-C: a batch being submitted is recorded first; polling stops
        engine.stop("interrupted")
        if task:
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGTERM, interrupt)
    try:
        with paused_gc():
            misses = engine.lookup(plan.jobs())
        work = batches.run(misses) if batches else engine.send(misses)
        task = asyncio.ensure_future(work)
        async with Display(progress, live=config.live, interval=config.progress_interval):
            try:
                await task
            except asyncio.CancelledError:
                pass
            except FatalProviderError as exc:
                failure, stopped = exc, "fatal"
            except Exception as exc:  # a bug or a broken cache: still write what was judged
                failure, stopped = exc, "error"
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        await provider.aclose()
        cache.record_run(judge.spec, stats.total, stats.cache_hits, stats.requests)
        cache.close()
    stopped = stopped or stats.stopped_reason
    ordered = [judged[i] for i in sorted(judged)]
    with paused_gc():
        summary, record_scores = build_summary(
            config, dataset, template, ordered, len(plan.presentations), stopped
        )
        summary["usage"] = usage(stats, ordered)
        summary["usage"]["cost_method"] = estimate.describe()
        write_run(config, dataset, summary, record_scores, ordered)
    if failure:
        raise failure
    return RunResult(summary, summary["complete"], stopped)


def engine_metrics(stats: Stats) -> dict[str, str]:
    cost = f"${stats.cost_usd:.4f}" + ("" if stats.cost_known else " (price unknown)")
    return {
        "in flight": str(stats.in_flight),
        "req/s": f"{stats.requests_per_second():.1f}",
        "cache hits": str(stats.cache_hits),
        "retries": str(stats.retries),
        "429s": str(stats.rate_limited),
        "failed": str(stats.failed),
        "tokens": f"{stats.input_tokens:,} in / {stats.output_tokens:,} out",
        "spend": cost,
        "concurrency": f"{stats.concurrency_limit:.0f}",
    }


def usage(stats: Stats, judged: list[Judged]) -> dict[str, Any]:
    return {
        "requests": stats.requests,
        "cache_hits": sum(1 for j in judged if j.cached),
        "retries": stats.retries,
        "rate_limited": stats.rate_limited,
        "failed": sum(1 for j in judged if j.error),
        "unparsed": sum(1 for j in judged if j.verdict is None and not j.error and not j.refused),
        "refused": sum(1 for j in judged if j.refused),
        "truncated": sum(1 for j in judged if j.truncated),
        "input_tokens": stats.input_tokens,
        "output_tokens": stats.output_tokens,
        "cost_usd": stats.cost_usd if stats.cost_known else None,
    }


def build_summary(
    config: RunConfig,
    dataset: records.Dataset,
    template: templates.Template | None,
    judged: list[Judged],
    expected: int,
    stopped: str | None,
) -> tuple[dict[str, Any], list[scoring.RecordScore]]:
    """Scores over the records whose every comparison was judged (all of them, unless the
    run stopped early)."""
    by_record: dict[records.Record, list[Judged]] = defaultdict(list)
    for j in judged:
        by_record[j.presentation.comparison.record].append(j)
    orders = 2 if (config.order == "both" and template and template.kind == "pairwise") else 1
    # a record has one comparison per answer it beats (pairwise: 1, Best-of-N: N-1)
    finished = [r for r in dataset.records if len(by_record.get(r, ())) == len(r.others) * orders]
    kept = [j for r in finished for j in by_record[r]]
    record_scores = scoring.score_records(kept)
    complete = len(judged) == expected and stopped is None
    summary: dict[str, Any] = {
        "judge": config.judge.spec,
        "simulated": config.judge.simulated,
        "complete": complete,
        "stopped_reason": stopped,
        "settings": settings_of(config, template),
        **scoring.summarize(kept, record_scores, finished, config.judge.scalar),
        "data": {
            "root": str(dataset.root),
            "scenario_files_found": dataset.scenarios_found,
            "scenario_files_read": len(dataset.files),
            "records": len(dataset.records),
            "records_scored": len(finished),
            "comparisons_judged": len(judged),
            "comparisons_expected": expected,
        },
    }
    return summary, record_scores


def settings_of(config: RunConfig, template: templates.Template | None) -> dict[str, Any]:
    s = config.selection
    settings: dict[str, Any] = {
        "sets": list(s.sets), "sections": list(s.sections), "scenarios": list(s.scenarios),
        "limit": s.limit, "sample": s.sample, "seed": s.seed,
    }
    if template:
        settings.update(
            template=template.name, template_sha256=template.sha256, template_kind=template.kind,
            verdict_style=template.style,
            order="fixed" if template.kind == "pointwise" else config.order,
            samples=config.samples, temperature=config.temperature, max_tokens=config.max_tokens,
        )
    return settings


def write_run(
    config: RunConfig,
    dataset: records.Dataset,
    summary: dict[str, Any],
    record_scores: list[scoring.RecordScore],
    judged: list[Judged],
) -> None:
    """The run folder. samples.jsonl has a line for every judged presentation; those of
    records a stopped run did not finish have `comparison_correct` null."""
    config.out.mkdir(parents=True, exist_ok=True)
    lines = []
    written: set[int] = set()
    for rs in record_scores:
        for group, score in zip(rs.comparisons, rs.comparison_scores):
            lines.extend(outputs.sample_line(j, score, config.judge.simulated) for j in group)
            written.update(id(j) for j in group)
    lines.extend(
        outputs.sample_line(j, None, config.judge.simulated) for j in judged if id(j) not in written
    )
    outputs.write_samples(config.out / "samples.jsonl", lines)
    outputs.write_json(config.out / "summary.json", summary)
    outputs.write_json(
        config.out / "manifest.json",
        outputs.manifest(config.judge.spec, config.judge.simulated, summary["settings"],
                         dataset.root, dataset.sha256, config.argv),
    )
