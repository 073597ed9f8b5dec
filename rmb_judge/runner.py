"""One run, end to end: records → comparisons → requests → engine → verdicts → scores → OUT/.

Before any data is loaded or money spent, the run checks what it can: the run folder, the
template, the cache file, the API key; the endpoint is probed while the data loads, and an
unreachable one stops the run before anything is sent. A run that stops before sending
anything writes no summary.

From then on the run folder is written whatever happens: a completed run, a budget stop,
Ctrl-C, a long wait or a fatal provider error all leave a summary (`"complete": false`
unless every comparison was judged without a failure) and every answer received stays in
the cache. A run whose verdicts mostly cannot be read is `"suspect"`, with the reason in
`"warnings"`.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import comparisons as cmp
from . import endpoints as ep
from . import records, scoring, templates
from .batch import BatchRunner
from .cache import Cache
from .display import Display, RunProgress
from .engine import Engine, EngineConfig, Job, Outcome, Stats
from .errors import FatalProviderError, UsageError
from .estimate import Estimator
from .fetch import load_manifest
from .judges import JudgeSpec, make_provider
from .outputs import RunFolder, manifest, sample_line
from .scoring import Judged, majority
from .verdicts import looks_like_refusal, parse_rating, parse_verdict, verdict_from_ratings

UNREADABLE_SHOWN = 3  # raw answers printed when a run is suspect


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
    equivalent_endpoints: list[str] = field(default_factory=list)
    live: bool = False
    progress_interval: float = 10.0
    batch: bool = False
    poll_interval: float = 30.0
    local: LocalOptions = field(default_factory=LocalOptions)
    argv: list[str] = field(default_factory=list)
    max_unparsed: float = 0.05  # more than this share unparsed or failed: a suspect run
    grace: float = 60.0  # seconds the first Ctrl-C waits for requests in flight
    replace: bool = False  # --out may hold another judge's or settings' run


@dataclass
class RunResult:
    summary: dict[str, Any]
    complete: bool
    stopped_reason: str | None  # budget | interrupted | fatal | wait | cache | error
    unreadable: list[str] = field(default_factory=list)  # raw answers no verdict was read from
    detail: str | None = None  # why it stopped early, in a sentence

    @property
    def suspect(self) -> bool:
        return bool(self.summary.get("suspect"))


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
        errors: list[Outcome] = []
        refusals, truncated = 0, False
        for sample in wanted:
            failed = next((o for o in sample if o.error), None)
            if failed:
                errors.append(failed)
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
        failed_all = verdict is None and len(errors) == len(votes)
        return Judged(
            presentation=self.presentations[index],
            verdict=verdict,
            raw=raws[0] if self.samples == 1 else raws,
            cached=all(o.cached for sample in wanted for o in sample),
            error=errors[0].error if failed_all else None,
            rejected=failed_all and all(o.rejected for o in errors),
            refused=verdict is None and refusals > 0,
            truncated=truncated,
            votes=tuple(votes),
        )

    def used(self, indices: list[int], outcomes: dict[tuple[str, int], Outcome]) -> list[Outcome]:
        """The distinct answers behind these presentations' verdicts."""
        seen = {(k, s) for i in indices for k in self.keys[i] for s in range(self.samples)}
        return [outcomes[k] for k in seen if k in outcomes]


def run(config: RunConfig) -> RunResult:
    if config.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {config.samples}")
    if config.order not in cmp.ORDERS:
        raise UsageError(f"--order must be one of {', '.join(cmp.ORDERS)}, got {config.order!r}")
    try:
        if config.judge.scalar:
            from .scalar import run_scalar

            return run_scalar(config)
        return asyncio.run(run_generative(config))
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


def endpoints_of(config: RunConfig, provider_endpoints: tuple[str, ...]) -> tuple[str, ...]:
    """The endpoints whose cached answers serve this run: its own (replicas count as one)
    and those the user declared equivalent."""
    extra = tuple(ep.normalize(url) for url in config.equivalent_endpoints)
    return tuple(dict.fromkeys((*provider_endpoints, *extra)))


async def run_generative(config: RunConfig) -> RunResult:
    judge = config.judge
    template = templates.load(config.template)
    settings = settings_of(config, template)
    folder = RunFolder(config.out, judge.spec, settings, config.replace)
    try:
        return await _generative(config, template, settings, folder)
    finally:
        folder.close()


async def _generative(
    config: RunConfig, template: templates.Template, settings: dict[str, Any], folder: RunFolder
) -> RunResult:
    judge = config.judge
    estimate = Estimator(judge.provider_class, judge.model, template.style, config.max_tokens, config.batch)
    if config.engine.max_cost is not None and estimate.cost(1, 1) is None:
        raise UsageError(
            f"--max-cost: genai-prices has no price for {judge.spec}, so spend cannot be "
            "budgeted (drop --max-cost, or use the provider's own spending limits)"
        )
    provider = make_provider(judge, config.base_urls)
    try:
        if not config.engine.offline:
            provider.prepare()  # the API key, before any data is read
        cache = Cache(config.cache)
        try:
            return await _judge(config, template, settings, folder, provider, cache, estimate)
        finally:
            cache.close()
    finally:
        await provider.aclose()


async def _judge(config, template, settings, folder, provider, cache, estimate) -> RunResult:
    judge = config.judge
    endpoints = endpoints_of(config, provider.endpoints)
    settings["endpoints"] = list(provider.endpoints)
    probes = None
    if not config.engine.offline and not judge.simulated:
        probes = asyncio.gather(*(ep.unreachable(url) for url in provider.endpoints))
    if cache.imported:
        print(f"rmb-judge: {cache.imported} answers an earlier run could not store were added to "
              f"the cache {cache.path}", file=sys.stderr)
    dataset = await asyncio.to_thread(load_dataset, config)
    with paused_gc():
        plan = GenerativePlan(config, dataset, template)
    stats = Stats()
    progress = RunProgress(judge.spec, judge.simulated, metrics=lambda: engine_metrics(stats, config))
    for p in plan.presentations:
        progress.sections[p.comparison.record.section_key].total += 1
    judged: dict[int, Judged] = {}
    waiting: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, keys in enumerate(plan.keys):
        for key in keys:
            for sample in range(config.samples):
                waiting[key, sample].append(index)

    def judge_ready(key: tuple[str, int]) -> None:
        for index in waiting.pop(key, ()):
            if index not in judged and (result := plan.judge(index, engine.outcomes)):
                judged[index] = result
                progress.add(result)

    # Verdicts of live answers are read in one worker thread, off the event loop: a judge's
    # long answer must never stall the requests in flight.
    verdicts = ThreadPoolExecutor(1, thread_name_prefix="rmb-judge-verdicts")
    reading: list[Future] = []
    live = False

    def on_outcome(key: tuple[str, int], outcome: Outcome) -> None:
        if live:
            reading.append(verdicts.submit(judge_ready, key))
        else:
            judge_ready(key)

    engine = Engine(
        provider, cache, config.engine,
        template=template.name, template_sha256=template.sha256, pricing=estimate,
        stats=stats, on_outcome=on_outcome, endpoints=endpoints,
    )
    batches = BatchRunner(engine, config.poll_interval) if config.batch else None
    if batches:
        progress.metrics = lambda: {**engine_metrics(stats, config), **batches.progress.metrics()}
    try:
        with paused_gc():
            misses = engine.lookup(plan.jobs())
        if misses:
            await check_before_sending(cache, misses, endpoints, provider.endpoints, probes)
        live = True
        stopped, failure = await _send(config, engine, batches, misses, progress)
    finally:
        if probes:
            probes.cancel()
        verdicts.shutdown(wait=True)
    for future in reading:
        future.result()  # a bug in reading a verdict surfaces here
    cache.record_run(judge.spec, stats.total, stats.cache_hits, stats.requests)
    if failure and not stats.requests and not judged:
        raise failure  # nothing was sent or judged: no summary to mislead anyone
    stopped = stopped or stats.stopped_reason
    ordered = [judged[i] for i in sorted(judged)]
    with paused_gc():
        summary, record_scores = build_summary(
            config, dataset, settings, ordered, len(plan.presentations), stopped
        )
        used = plan.used(sorted(judged), engine.outcomes)
        summary["usage"] = usage(stats, ordered, used, estimate)
        summary["usage"]["cost_method"] = estimate.describe()
        unreadable = guard(summary, ordered, config, stats)
        write_run(folder, config, dataset, summary, record_scores, ordered, endpoints)
    if failure:
        raise failure
    return RunResult(summary, summary["complete"], stopped, unreadable, stats.stop_detail)


async def check_before_sending(cache: Cache, misses: list[Job], endpoints: tuple[str, ...],
                               own: tuple[str, ...], probes: asyncio.Future | None) -> None:
    """Last checks before the first request: say when the cache holds answers from another
    endpoint, refuse a read-only cache, and stop if an endpoint cannot be reached."""
    elsewhere = cache.other_endpoints(((j.key, j.sample) for j in misses), endpoints)
    if elsewhere:
        listed = ", ".join(f"{n} from {e}" for e, n in elsewhere.items())
        print(f"rmb-judge: the cache holds answers to {sum(elsewhere.values())} of the "
              f"{len(misses)} requests to send, from other endpoints ({listed}); they are not "
              "used for this endpoint (--equivalent-endpoint URL declares one the same)",
              file=sys.stderr)
    cache.writable(f"{len(misses)} new answers")
    reasons = await probes if probes else []
    for url, reason in zip(own, reasons):
        if reason:
            raise FatalProviderError(f"cannot reach {url}: {reason}; nothing was sent")


async def _send(config: RunConfig, engine: Engine, batches: BatchRunner | None, misses: list[Job],
                progress: RunProgress) -> tuple[str | None, BaseException | None]:
    """Send the misses under the live view and the signal handlers. The first Ctrl-C (or
    SIGTERM) starts nothing new and waits up to --grace seconds for the requests in flight;
    a second one cancels them. Returns why the run stopped early, and a failure to raise
    once the partial summary is written."""
    loop = asyncio.get_running_loop()
    work = batches.run(misses) if batches else engine.send(misses)
    task = asyncio.ensure_future(work)
    interrupts = 0

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if batches and batches.stop():
            return  # first Ctrl-C: a batch being submitted is recorded first; polling stops
        if interrupts == 1 and not batches:
            engine.stop("interrupted")
            progress.notice = (f"stopping: waiting up to {config.grace:g} s for the "
                               f"{engine.stats.in_flight} requests in flight, whose answers are "
                               "paid for; Ctrl-C again drops them")
            if not config.live:
                print(f"rmb-judge: {progress.notice}", file=sys.stderr, flush=True)
            loop.call_later(config.grace, task.cancel)
        else:
            engine.stats.stopped_reason = "interrupted"
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGTERM, interrupt)
    stopped: str | None = None
    failure: BaseException | None = None
    try:
        async with Display(progress, live=config.live, interval=config.progress_interval):
            try:
                await task
            except asyncio.CancelledError:
                stopped = "interrupted"
            except FatalProviderError as exc:
                failure, stopped = exc, "fatal"
            except Exception as exc:  # a bug or a broken cache: still write what was judged
                failure, stopped = exc, "error"
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return stopped, failure


def engine_metrics(stats: Stats, config: RunConfig) -> dict[str, str]:
    shown = {
        "in flight": str(stats.in_flight),
        "req/s": f"{stats.requests_per_second():.1f}",
        "cache hits": str(stats.cache_hits),
        "retries": str(stats.retries),
        "429s": str(stats.rate_limited),
        "tokens": f"{stats.input_tokens:,} in / {stats.output_tokens:,} out",
        "spend": spend_line(stats, config.engine.max_cost),
        "concurrency": f"{stats.concurrency_limit:.0f}",
    }
    if stats.answered_elsewhere or stats.waiting_elsewhere:
        shown["other process"] = f"{stats.answered_elsewhere} answered, {stats.waiting_elsewhere} in flight"
    wait = stats.paused_until - time.monotonic()
    if wait > 1:
        shown["waiting"] = f"{wait:.0f} s for the provider's rate limit"
    return shown


def spend_line(stats: Stats, max_cost: float | None) -> str:
    """This run's spend, against --max-cost, with the total projected from the cost per
    answer so far."""
    if not stats.cost_known:
        return "price unknown"
    line = f"${stats.spent:.4f}"
    if max_cost is not None:
        line += f" of ${max_cost:.2f} max"
    answered = stats.done - stats.cache_hits - stats.answered_elsewhere
    remaining = stats.total - stats.done
    if answered > 0 and remaining > 0:
        line += f", projected ${stats.spent + stats.spent / answered * remaining:.4f}"
    return line


def usage(stats: Stats, judged: list[Judged], used: list[Outcome], pricing: Estimator) -> dict[str, Any]:
    """What this invocation sent and spent, and (`results`) what the answers behind the
    scores cost, whichever run or batch paid for them."""
    answers = [o.response for o in used if o.response is not None]
    costs = [r.cost_usd if r.cost_usd is not None else pricing.cost(r.input_tokens, r.output_tokens)
             for r in answers]
    return {
        "requests": stats.requests,
        "cache_hits": sum(1 for j in judged if j.cached),
        "answered_elsewhere": stats.answered_elsewhere,
        "retries": stats.retries,
        "rate_limited": stats.rate_limited,
        "connect_errors": stats.connect_errors,
        "failed": sum(1 for j in judged if j.error),
        "rejected": sum(1 for j in judged if j.error and j.rejected),
        "unparsed": sum(1 for j in judged if j.verdict is None and not j.error and not j.refused),
        "refused": sum(1 for j in judged if j.refused),
        "truncated": sum(1 for j in judged if j.truncated),
        "input_tokens": stats.input_tokens,
        "output_tokens": stats.output_tokens,
        "cost_usd": stats.cost_usd if stats.cost_known else None,
        "unconfirmed_cost_usd": stats.unconfirmed_cost_usd,
        "usage_counted_locally": stats.usage_counted,
        "unsaved_answers": stats.unsaved,
        "results": {
            "answers": len(answers),
            "input_tokens": sum(r.input_tokens for r in answers),
            "output_tokens": sum(r.output_tokens for r in answers),
            "cost_usd": None if None in costs else sum(costs),  # type: ignore[arg-type]
        },
    }


def guard(summary: dict[str, Any], judged: list[Judged], config: RunConfig, stats: Stats | None) -> list[str]:
    """Mark a run whose numbers should not be trusted as they stand: `suspect` when more
    than --max-unparsed of its comparisons ended unparsed or failed, and a warning for
    each other thing a reader must know. Returns a few raw answers no verdict was read from."""
    warnings: list[str] = summary.setdefault("warnings", [])
    usage = summary["usage"]
    n = len(judged)
    bad = usage.get("unparsed", 0) + usage.get("failed", 0)
    share = bad / n if n else 0.0
    summary["suspect"] = share > config.max_unparsed
    if summary["suspect"]:
        warnings.append(
            f"{bad} of {n} comparisons ({100 * share:.1f}%) ended unparsed ({usage.get('unparsed', 0)}) "
            f"or failed ({usage.get('failed', 0)}), more than --max-unparsed "
            f"{100 * config.max_unparsed:g}%: they count as losses, so the scores say little about "
            "the judge. Check that the template's verdict format is what the judge answers."
        )
    by_scenario: dict[str, list[Judged]] = defaultdict(list)
    for j in judged:
        by_scenario[j.presentation.comparison.record.category_path].append(j)
    for path, group in sorted(by_scenario.items()):
        errors = Counter(j.error for j in group if j.error)
        if len(group) > 1 and sum(errors.values()) == len(group):
            warnings.append(f"{path}: all {len(group)} comparisons failed ({errors.most_common(1)[0][0]})")
        elif len(group) > 1 and all(j.verdict is None and not j.refused for j in group):
            warnings.append(f"{path}: no verdict could be read in any of its {len(group)} comparisons")
    retryable = usage.get("failed", 0) - usage.get("rejected", 0)
    if retryable:
        warnings.append(f"{retryable} comparisons failed after all retries: the run is incomplete; "
                        "rerun the same command to retry them")
    if usage.get("rejected"):
        warnings.append(f"{usage['rejected']} requests were rejected by the provider (e.g. too long "
                        "for the model's context) and count as losses")
    if stats is not None:
        if stats.usage_counted:
            warnings.append(f"{stats.usage_counted} answers came without token usage from the "
                            "server; their tokens were counted locally, so their cost is an estimate")
        if stats.unconfirmed_cost_usd:
            warnings.append(f"up to ${stats.unconfirmed_cost_usd:.4f} may have been billed for "
                            "requests that timed out or were cut off (counted against --max-cost)")
        if stats.unsaved:
            warnings.append(f"{stats.unsaved} answers could not be saved (the disk is full); a rerun "
                            "will request them again")
        if stats.stop_detail:
            warnings.append(stats.stop_detail)
    truncated = usage.get("truncated", 0)
    if n and truncated / n > 0.01 and not any(j.scalar for j in judged[:1]):
        warnings.append(f"{truncated} judge answers were cut off at --max-tokens "
                        f"{config.max_tokens}; raise it if verdicts are missing")
    return [
        j.raw if isinstance(j.raw, str) else repr(j.raw)
        for j in judged if j.verdict is None and not j.error and not j.refused
    ][:UNREADABLE_SHOWN]


def build_summary(
    config: RunConfig,
    dataset: records.Dataset,
    settings: dict[str, Any],
    judged: list[Judged],
    expected: int,
    stopped: str | None,
) -> tuple[dict[str, Any], list[scoring.RecordScore]]:
    """Scores over the records whose every comparison was judged (all of them, unless the
    run stopped early). Complete means every comparison judged and none failed for a reason
    a rerun may fix."""
    by_record: dict[records.Record, list[Judged]] = defaultdict(list)
    for j in judged:
        by_record[j.presentation.comparison.record].append(j)
    orders = 2 if settings.get("order") == "both" and settings.get("template_kind") == "pairwise" else 1
    # a record has one comparison per answer it beats (pairwise: 1, Best-of-N: N-1)
    finished = [r for r in dataset.records if len(by_record.get(r, ())) == len(r.others) * orders]
    kept = [j for r in finished for j in by_record[r]]
    record_scores = scoring.score_records(kept)
    retry_later = sum(1 for j in judged if j.error and not j.rejected)
    complete = len(judged) == expected and stopped is None and not retry_later
    summary: dict[str, Any] = {
        "judge": config.judge.spec,
        "simulated": config.judge.simulated,
        "complete": complete,
        "stopped_reason": stopped,
        "suspect": False,
        "warnings": [],
        "settings": settings,
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
    folder: RunFolder,
    config: RunConfig,
    dataset: records.Dataset,
    summary: dict[str, Any],
    record_scores: list[scoring.RecordScore],
    judged: list[Judged],
    endpoints: tuple[str, ...] = (),
) -> None:
    """The run folder. samples.jsonl has a line for every judged presentation; those of
    records a stopped run did not finish have `comparison_correct` null."""
    lines = []
    written: set[int] = set()
    for rs in record_scores:
        for group, score in zip(rs.comparisons, rs.comparison_scores):
            lines.extend(sample_line(j, score, config.judge.simulated) for j in group)
            written.update(id(j) for j in group)
    lines.extend(sample_line(j, None, config.judge.simulated) for j in judged if id(j) not in written)
    folder.write_lines("samples.jsonl", lines)
    folder.write_json("summary.json", summary)
    folder.write_json(
        "manifest.json",
        manifest(config.judge.spec, config.judge.simulated, summary["settings"],
                 dataset.root, dataset.sha256, config.argv, endpoints),
    )
