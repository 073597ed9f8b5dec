"""One run, end to end, whatever the judge and the benchmark: records → judgments →
answers → verdicts → scores → OUT/. The judge kind's part (a generative judge, live or
batched; a reward model, local or served) is a `pipeline.Pipeline` that its judge kind makes
(judges.py); this module is the skeleton every run shares.

Before any data is loaded or money spent, the run checks what it can: the run folder, the
pipeline's own needs (template and API key, or the model's files), the cache file; an
endpoint is probed while the data loads, and an unreachable one stops the run before
anything is sent. A run that stops before sending anything writes no summary.

From then on the run folder is written whatever happens: a completed run, a budget stop,
Ctrl-C, a long wait or a fatal provider error all leave a summary (`"complete": false`
unless every judgment was judged without a failure) and every answer received stays in
the cache. The first Ctrl-C (or SIGTERM) starts nothing new and waits up to --grace seconds
for the work in flight, whose answers are paid for; a second one cancels it. Verdicts are
read in a worker thread as answers arrive, so the live view shows running accuracies while
nothing heavy runs on the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import behaviour, benchmarks, calibration, intervals, precision, quality, scoring
from .benchmark import OVERALL, Benchmark
from .cache import Cache
from .config import RunConfig
from .display import Display, Rounds, RunProgress
from .errors import CacheMiss, FatalProviderError, RmbJudgeError, StoppedByError, UsageError
from .judgments import Judged, Presentation, RecordScore
from .outputs import UNSAVED, RunFolder, manifest, sample_line
from .pipeline import Pipeline, Plan
from .precision import Sampler, Step
from .records import Dataset, Record
from .summary import DataInfo, Sampling, Summary


@dataclass
class Sampled:
    """A --precision run's sample: each scenario's judged prefix, and how the sampler stopped."""

    sampler: Sampler
    records: set[Record]
    step: Step | None = None  # the last decision
    requests_sample: int = 0  # requests the sample needs, cached or not (follow-up turns not counted)
    requests_full: int = 0  # requests the whole selection needs, cached or not (follow-up turns not counted)


@dataclass
class RunResult:
    summary: Summary
    stopped_reason: str | None  # budget | interrupted | fatal | wait | cache | error | unreadable
    unreadable: list[str] = field(default_factory=list)  # raw answers no verdict was read from
    detail: str | None = None  # why it stopped early, in a sentence

    @property
    def complete(self) -> bool:
        return self.summary.complete

    @property
    def json(self) -> dict[str, Any]:
        """The summary as summary.json holds it."""
        return self.summary.to_json()

    @property
    def suspect(self) -> bool:
        return self.summary.suspect


def run(config: RunConfig) -> RunResult:
    """Run a task: the pipeline follows from the judge's kind."""
    task = config.task
    if task.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {task.samples}")
    benchmark = benchmarks.get(task.benchmark)
    if task.order_for(benchmark) not in benchmark.orders:
        raise UsageError(f"--order must be one of {', '.join(benchmark.orders)} for benchmark {benchmark.name}, "
                         f"got {task.order!r}")
    benchmark.check_selection(task.selection)
    pipeline = task.judge.kind.pipeline(config, benchmark)
    if task.judge.simulated:  # said once the flags are known good, so a usage error stays one line
        print("rmb-judge: judge 'mock' is a SIMULATED offline judge: its scores mean nothing "
              "about any real model", file=sys.stderr)
    try:
        return asyncio.run(Session(config, benchmark, pipeline).run())
    finally:
        gc.unfreeze()  # what paused_gc froze is collectable again


@contextmanager
def sparse_gc() -> Iterator[None]:
    """Rare collections while requests are in flight: answers and the SDK's objects outlive
    the youngest generation, so with the default thresholds a full collection (50-300 ms,
    every request stalled) ran every ~2 s of a fast run. Young collections every 50,000
    allocations still reclaim cycles; the thresholds are restored after."""
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


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


def load_dataset(config: RunConfig, benchmark: Benchmark) -> Dataset:
    task = config.task
    data = task.data_for(benchmark)
    with paused_gc():
        dataset = benchmark.load(data, task.selection)
    chosen = " for the chosen sets and sections" if benchmark.selection_flags else ""
    if not dataset.records:
        flags = "/".join([*benchmark.selection_flags, "--scenarios"])
        raise UsageError(f"no records selected from {data} ({dataset.scenarios_found} {benchmark.files_noun} "
                         f"found{chosen}); check {flags}")
    print(
        f"rmb-judge: {dataset.root}: {dataset.scenarios_found} of {benchmark.upstream_files(task.selection)} "
        f"{benchmark.files_noun} found{chosen}; {len(dataset.files)} read, "
        f"{len(dataset.records):,} records selected",
        file=sys.stderr,
    )
    return dataset


class Session:
    def __init__(self, config: RunConfig, benchmark: Benchmark, pipeline: Pipeline):
        self.config = config
        self.benchmark = benchmark
        self.pipeline = pipeline
        self.progress = RunProgress(config.task.judge.spec, config.task.judge.simulated, metrics=pipeline.metrics)
        self.judged: dict[int, Judged] = {}
        self._waiting: dict[Hashable, list[int]] = defaultdict(list)
        self._reader: ThreadPoolExecutor | None = None  # reads verdicts while answers arrive
        self._reading: list[Future] = []
        self._keys: Sequence[Sequence[Hashable]] = ()  # each unit's answers (a follow-up adds one)
        self._first: Sequence[Sequence[Hashable]] = ()  # each unit's first-turn answers
        self._have: set[Hashable] = set()  # answers received or cached (or failed for good)
        self._sampled: Sampled | None = None  # a --precision run's sample, once drawn
        self._units_of: dict[Record, list[int]] = defaultdict(list)  # each record's units
        self._round: set[Hashable] = set()  # the answers a --precision round asks for
        self._linked: dict[Record, int] | None = None  # scoring.linked over the selection

    async def run(self) -> RunResult:
        task, execution = self.config.task, self.config.execution
        folder = RunFolder(execution.out)
        cache: Cache | None = None
        try:
            await self.pipeline.prepare()
            folder.check(task.judge.spec, self.pipeline.settings, execution.replace, self.benchmark.name)
            cache = Cache(execution.cache)
            if taken := cache.take_unsaved(execution.out / UNSAVED):
                print(f"rmb-judge: {taken} answers an earlier run could not store were added to "
                      f"the cache {cache.path}", file=sys.stderr)
            return await self._run(folder, cache)
        finally:
            await self.pipeline.aclose()  # (before the cache: the pipeline may still be using it)
            if cache is not None:
                cache.close()
            folder.close()

    async def _run(self, folder: RunFolder, cache: Cache) -> RunResult:
        pipeline = self.pipeline
        probe = pipeline.probe()
        try:
            dataset = await asyncio.to_thread(load_dataset, self.config, self.benchmark)
            with paused_gc():
                plan: Plan = pipeline.plan(dataset)
                plan.on_need = self._need
                self._keys = plan.needs
                self._first = plan.first
                for index, keys in enumerate(self._keys):
                    for key in keys:
                        self._waiting[key].append(index)
                units = plan.units
                for index, unit in enumerate(units):
                    self._units_of[unit.record].append(index)
                sections = [s.key for s in self.benchmark.sections]
                if self.config.task.precision is None:
                    self.progress.expect(sections, dataset.records)
                else:  # the sample's records, as it grows
                    self.progress.expect(sections, (), dict(Counter(r.subset for r in dataset.records)))
                    self.progress.rounds = Rounds(self.config.task.precision)
                missing = pipeline.lookup(cache, self._answered)
            if missing:
                await pipeline.before_sending(cache, probe)
            probe = None
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="rmb-judge-verdicts")
            with sparse_gc():
                if self.config.task.precision is not None:
                    stopped, failure = await self._work(lambda: self._rounds(dataset, units))
                elif missing:
                    stopped, failure = await self._work(pipeline.fetch)
                else:
                    stopped, failure = None, None
        finally:
            if probe is not None and isinstance(probe, asyncio.Future):
                probe.cancel()
            if self._reader:
                self._reader.shutdown(wait=True)
        for future in self._reading:
            future.result()  # a bug in reading a verdict surfaces here
        status = pipeline.status()
        cache.record_run(self.config.task.judge.spec, status.lookups, status.hits, status.requests)
        if status.unsaved:  # the cache's disk took neither them nor a side file
            folder.write_lines(UNSAVED, status.unsaved)
        if failure and not status.sent_anything and not self.judged:
            raise failure  # nothing was sent or judged: no summary to mislead anyone
        stopped = stopped or status.stopped_reason
        with paused_gc():
            summary, record_scores, judged, noticed = self._summary(dataset, units, stopped)
            unreadable = quality.guard(summary, judged, self.config, noticed)
            self._write(folder, dataset, summary, record_scores, judged)
        if isinstance(failure, RmbJudgeError):
            raise failure
        if failure:
            message = " ".join(str(failure).split())[:300]
            raise StoppedByError(
                f"{self.config.task.judge.spec}: stopped by {type(failure).__name__}: {message}; what was "
                "answered is cached and a partial summary was written"
            ) from failure
        return RunResult(summary, stopped, unreadable, status.detail)

    def _need(self, key: Hashable, units: list[int]) -> None:
        """Units came to need one more answer (a follow-up turn): its arrival reads them."""
        self._waiting[key].extend(units)

    def _answered(self, key: Hashable) -> None:
        """An answer arrived: read the verdicts it completes (in the reader thread once the
        work has started, so the event loop never waits on it)."""
        self._have.add(key)
        rounds = self.progress.rounds
        if rounds is not None and key in self._round:
            rounds.answered += 1
        if self._reader is None:
            self._judge_ready(key)
        else:
            self._reading.append(self._reader.submit(self._judge_ready, key))

    async def _rounds(self, dataset: Dataset, units: Sequence[Presentation]) -> None:
        """--precision: judge each scenario's records in a seeded order, a prefix of it at a
        time, growing the prefixes round by round as precision.Sampler decides, until the
        interval of overall is narrow enough or the selection is exhausted. What the cache
        holds costs nothing: a scenario's prefix that is cached already is the first round's."""
        task = self.config.task
        assert task.precision is not None and self.progress.rounds is not None
        units_of, rounds = self._units_of, self.progress.rounds

        def needs(record: Record) -> list[Hashable]:
            return [key for index in units_of[record] for key in self._keys[index]]

        def costs(record: Record) -> int:
            """Requests a record needs whatever its answers say (follow-up turns not counted)."""
            return sum(len(self._first[index]) for index in units_of[record])

        pools = precision.pools(dataset.records, task.selection.seed, lambda r: float(costs(r)),
                                self._links(dataset), self.benchmark.draw_unit)
        across = next(k.across for k in self.benchmark.score_keys() if k.key == OVERALL)
        sampled = self._sampled = Sampled(Sampler(pools, task.precision, sampled=task.selection.sample,
                                                  across=across), set())
        sampled.requests_full = sum(costs(r) for r in dataset.records)
        sizes = sampled.sampler.first()
        while True:
            chosen = [r for p in pools for r in p.members[: sizes[p.key]]]
            self._count([r for r in chosen if r not in sampled.records])
            sampled.records.update(chosen)
            wanted = {key for r in chosen for key in needs(r) if key not in self._have}
            self._round = wanted
            rounds.round, rounds.requests, rounds.answered = sampled.sampler.rounds + 1, len(wanted), 0
            if wanted and self.config.execution.engine.offline:
                raise CacheMiss(f"--offline: {len(wanted)} requests of the --precision {task.precision:g} sample "
                                f"are not in the cache {self.config.execution.cache}; nothing was sent")
            if wanted:
                await self.pipeline.fetch(wanted)
            if self.pipeline.status().stopped_reason:
                return
            await asyncio.to_thread(self._read_all)
            sampled.requests_sample = sum(costs(r) for r in sampled.records)
            by_record = {r: [self.judged[i] for i in units_of[r] if i in self.judged] for r in chosen}
            if any(len(by_record[r]) < len(units_of[r]) or any(j.error and not j.rejected for j in by_record[r])
                   for r in chosen):
                return  # a sample with holes decides nothing: a rerun retries them and goes on from here
            scores = {rs.record: rs.score for rs in scoring.score_records(
                self.benchmark, [j for r in chosen for j in by_record[r]])}
            step = sampled.step = sampled.sampler.step({p.key: [scores[r] for r in p.members[: sizes[p.key]]]
                                                        for p in pools})
            if step.estimate is not None:
                rounds.overall, rounds.half_width = step.estimate.value, step.estimate.half_width
            if step.stop:
                return
            sizes = step.sizes

    def _links(self, dataset: Dataset) -> dict[Record, int]:
        """Each record's linked set over the whole selection (the sample's and the summary's alike)."""
        if self._linked is None:
            self._linked = scoring.linked(dataset.records)
        return self._linked

    def _read_all(self) -> None:
        """Wait until every answer received so far has been read into a verdict."""
        for future in list(self._reading):
            future.result()

    def _judge_ready(self, key: Hashable) -> None:
        for index in self._waiting.pop(key, ()):
            if index not in self.judged and (result := self.pipeline.verdict(index)):
                self.judged[index] = result
                record = result.record
                if self.config.task.precision is None or (self._sampled and record in self._sampled.records):
                    self._show(record, result)

    def _show(self, record: Record, judged: Judged) -> None:
        """Count a verdict in the live view, and its record once every presentation is judged
        (with the score the summary gives it)."""
        self.progress.add(judged)
        units = self._units_of[record]
        if all(i in self.judged for i in units):
            score = scoring.score_records(self.benchmark, [self.judged[i] for i in units])[0].score
            self.progress.record(record, score)

    def _count(self, records: list[Record]) -> None:
        """Records joining a --precision run's sample: counted in the live view with what of
        them is judged already (between rounds: no verdict is being read meanwhile)."""
        self.progress.more(records)
        for record in records:
            for index in self._units_of[record]:
                if index in self.judged:
                    self._show(record, self.judged[index])

    async def _work(self, work: Callable[[], Awaitable[None]]) -> tuple[str | None, BaseException | None]:
        """The pipeline's work under the live view and the signal handlers. Returns why the
        run stopped early, and a failure to raise once the partial summary is written."""
        execution = self.config.execution
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(work())
        interrupts = 0

        def interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts > 1:
                task.cancel()
                return
            waiting_for = self.pipeline.stop("interrupted")
            self.progress.notice = (f"stopping: waiting up to {execution.grace:g} s for {waiting_for}; "
                                    "Ctrl-C again stops at once")
            if not execution.live:
                print(f"rmb-judge: {self.progress.notice}", file=sys.stderr, flush=True)
            loop.call_later(execution.grace, task.cancel)

        loop.add_signal_handler(signal.SIGINT, interrupt)
        loop.add_signal_handler(signal.SIGTERM, interrupt)
        stopped: str | None = None
        failure: BaseException | None = None
        try:
            async with Display(self.progress, live=execution.live, interval=execution.progress_interval):
                try:
                    await task
                except asyncio.CancelledError:
                    stopped = "interrupted"
                except FatalProviderError as exc:
                    failure, stopped = exc, "fatal"
                except Exception as exc:  # a bug or a broken cache: still write what was judged
                    failure, stopped = exc, "error"
                # the last line shows every answer received read (a failure to read one surfaces later)
                await asyncio.to_thread(wait_futures, list(self._reading))
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
        return stopped, failure

    def _summary(self, dataset: Dataset, units: Sequence[Presentation], stopped: str | None
                 ) -> tuple[Summary, list[RecordScore], list[Judged], list[str]]:
        """Scores over the records whose every presentation was judged (all of them, unless the
        run stopped early; a --precision run's sample); the pipeline's warnings. Complete means
        every presentation (of the sample) judged and none failed for a reason a rerun may fix."""
        task, pipeline = self.config.task, self.pipeline
        sampled, records, population = self._sampled, dataset.records, None
        indices = sorted(self.judged)
        expected = len(units)
        if sampled is not None:  # only the sample counts (the cache may have answered more)
            records = [r for r in dataset.records if r in sampled.records]
            indices = [i for i in indices if units[i].record in sampled.records]
            expected = sum(1 for u in units if u.record in sampled.records)
            population = dict(Counter(r.subset for r in dataset.records))
            if stopped is None and sampled.step is not None and sampled.step.stop == "precision":
                stopped = "precision"
        judged = [self.judged[i] for i in indices]
        by_record: dict[Record, list[Judged]] = defaultdict(list)
        for j in judged:
            by_record[j.record].append(j)
        settings = pipeline.settings
        # a record is finished when every presentation the plan has for it is judged
        finished = [r for r in records if len(by_record.get(r, ())) == len(self._units_of[r])]
        kept = [j for r in finished for j in by_record[r]]
        record_scores = scoring.score_records(self.benchmark, kept)
        retry_later = sum(1 for j in judged if j.error and not j.rejected)
        z = precision.STOP_Z if sampled is not None else intervals.Z95
        scored = scoring.summarize(self.benchmark, kept, record_scores, finished, task.judge.scalar, population, z,
                                   self._links(dataset), task.selection.sample, settings.order)
        usage, noticed = pipeline.report(judged, indices)
        noticed = [*self.benchmark.notes(dataset, task.selection), *noticed]
        summary = scored.summary(
            judge=task.judge.spec,
            benchmark=self.benchmark.name,
            simulated=task.judge.simulated,
            complete=len(judged) == expected and stopped in (None, "precision") and not retry_later,
            stopped_reason=stopped,
            settings=settings,
            precision=self._sampling(scored.scores.get("overall"), scored.intervals.get("overall")),
            behaviour=behaviour.measure(kept, task.judge.model, task.judge.scalar),
            calibration=calibration.measure(kept) if task.verdict_probs else None,
            data=DataInfo(
                root=str(dataset.root),
                scenario_files_found=dataset.scenarios_found,
                scenario_files_read=len(dataset.files),
                records=len(dataset.records),
                records_scored=len(finished),
                comparisons_judged=len(judged),
                comparisons_expected=expected,
            ),
            usage=usage,
        )
        return summary, record_scores, judged, noticed

    def _sampling(self, value: float | None, overall: list[float] | None) -> Sampling | None:
        """What a --precision run aimed at and reached."""
        sampled = self._sampled
        if sampled is None:
            return None
        sampler = sampled.sampler
        half = None if overall is None or value is None else intervals.half_width(value, overall)
        return Sampling(
            target=sampler.target, z=sampler.z, half_width=half,
            reached=sampled.step is not None and sampled.step.stop == "precision",
            rounds=sampler.rounds, records=len(sampled.records), population=sum(p.size for p in sampler.pools),
            requests_full=sampled.requests_full, requests_sample=sampled.requests_sample,
        )

    def _write(self, folder: RunFolder, dataset: Dataset, summary: Summary,
               record_scores: list[RecordScore], judged: list[Judged]) -> None:
        """The run folder. samples.jsonl has a line for every judged presentation; those of
        records a stopped run did not finish have `comparison_correct` and `record_correct` null."""
        simulated = summary.simulated
        links = self._links(dataset)
        lines: list[dict[str, Any]] = []
        written: set[int] = set()
        benchmark = self.benchmark
        for rs in record_scores:
            for group, score in zip(rs.judgments, rs.judgment_scores, strict=True):
                lines.extend(sample_line(benchmark, j, score, rs, simulated, links[rs.record]) for j in group)
                written.update(id(j) for j in group)
        lines.extend(sample_line(benchmark, j, None, None, simulated) for j in judged if id(j) not in written)
        folder.write_lines("samples.jsonl", lines)
        folder.write_json("summary.json", summary.to_json())
        folder.write_json(
            "manifest.json",
            manifest(summary.judge, simulated, summary.to_json()["settings"], dataset.root, dataset.sha256,
                     list(self.config.execution.argv), summary.settings.endpoints, benchmark.name, dataset.source),
        )
