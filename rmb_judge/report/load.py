"""Run folders as the report sees them: each `summary.json` read through the typed `Summary`.

`Summary.from_json` gives what an older summary lacks its default. Where a default would
read as a real value (no `usage` or `usage.results`, no `data` block, no selection settings),
the default stands for "not recorded" and the report says so instead of showing a zero.
Everything about sections and scenarios comes from the run's benchmark.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import benchmarks
from ..benchmark import Benchmark
from ..errors import DataError, RmbJudgeError, UsageError
from ..measures import Behaviour, Calibration
from ..summary import Results, SectionCounts, Settings, Summary, Usage, data_files, read_summary

OVERALL = "overall"  # the score summary.json keeps beside its sections' (their mean)


@dataclass(frozen=True)
class Scenario:
    category_path: str
    section: str | None  # the benchmark section's key; None when the summary does not say
    label: str  # as the heatmap shows it, under its section
    n: int
    accuracy: float | None
    interval: list[float] | None = None  # 95%, of the accuracy (None in older summaries)


@dataclass(frozen=True)
class Flags:
    """The selection flags of a run, defaults filled in: equal flags select the same records."""

    kinds: tuple[str, ...]
    goals: tuple[str, ...]
    scenarios: tuple[str, ...]
    limit: int | None
    sample: float | None
    precision: float | None  # --precision H: a sample grown until overall's interval was ±H
    seed: int | None  # only --sample and --precision use it
    options: tuple[tuple[str, str], ...] = ()  # the benchmark's own selection flags (JudgeBench's --split)


@dataclass(frozen=True)
class Run:
    """What the report needs from one run folder's `summary.json` (and `manifest.json`)."""

    path: Path
    benchmark: Benchmark
    judge: str
    label: str  # the settings that tell ablation runs of one judge apart
    simulated: bool
    complete: bool
    stopped_reason: str | None
    suspect: bool
    warnings: tuple[str, ...]
    scores: dict[str, float | None]  # each leaderboard section, then OVERALL
    intervals: dict[str, list[float] | None]  # 95% of each score (None: not recorded, older summaries)
    chance: dict[str, float | None]  # each leaderboard section
    n: int
    failed: int
    unparsed: int
    refused: int
    cost_usd: float | None  # what the answers behind the scores cost, whichever run paid
    cost_is_spend: bool  # an older summary: only its own spend is known, and it reused cached answers
    cache_hits: int
    first_pick_rate: float | None
    first_pick_interval: list[float] | None
    consistency: float | None
    consistency_interval: list[float] | None
    unanimous: float | None  # --samples K: share of comparisons whose K votes all agree
    unanimous_interval: list[float] | None
    scenarios: tuple[Scenario, ...]
    selection: tuple[Any, ...]  # equal for runs that selected the same records
    selection_text: str
    records: int  # records selected (scored, for summaries that do not say)
    comparisons: tuple[int, int] | None  # judged, expected
    data_digest: str | None  # of the data files' hashes in manifest.json
    behaviour: Behaviour | None = None  # biases (summary.json "behaviour")
    calibration: Calibration | None = None  # --verdict-probs: Brier, ECE, AUROC and the reliability bins
    jury: tuple[str, ...] = ()  # a jury's members' judges

    def chance_for(self, key: str) -> float | None:
        """Chance level of a section, or for a key over the sections (OVERALL, RM-Bench's hard)
        the mean over the sections this run scored."""
        if key in self.chance:
            return self.chance[key]
        scored = [level for section, level in self.chance.items() if self.scores[section] is not None]
        known = [level for level in scored if level is not None]
        return sum(known) / len(known) if known and len(known) == len(scored) else None


def find_runs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The run folders among `paths` (as `report runs/*` or `report runs` gives them): each
    folder holding a summary.json, or else the subfolders that hold one; the rest (a folder of
    a run that failed before writing anything, a file beside the runs) is passed over with a
    note. A path that does not exist, or no run at all, is an error."""
    found: list[Path] = []
    notes: list[str] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UsageError(f"{path}: no such run folder")
        if _holds_run(path):
            found.append(path)
        elif inner := sorted(child for child in path.iterdir() if _holds_run(child)) if path.is_dir() else []:
            found.extend(inner)
        else:
            notes.append(f"{path}: passed over: " + ("no summary.json in it or its subfolders" if path.is_dir()
                                                     else "not a folder"))
    if not found:
        raise UsageError(notes[0] if len(notes) == 1 else f"no run folder (one holding a summary.json) among "
                         f"the {len(notes)} paths given")
    return list(dict.fromkeys(found)), notes


def _holds_run(folder: Path) -> bool:
    summary = folder / "summary.json"
    return folder.is_dir() and (summary.exists() or summary.is_symlink())


def load_runs(paths: list[Path]) -> list[Run]:
    """Read each folder's summary.json; a bad folder is one clear error naming it."""
    return _distinct_labels([_load_run(Path(path)) for path in paths])


def _load_run(folder: Path) -> Run:
    summary = read_summary(folder)
    try:
        benchmark = benchmarks.get(str(summary.benchmark))
    except UsageError as error:
        raise DataError(f"{folder / 'summary.json'}: {error}") from None
    return _run(folder, summary, benchmark, _data_digest(folder))


def _data_digest(folder: Path) -> str | None:
    """A digest of the data files' hashes that manifest.json lists; optional, so any problem is None."""
    try:
        files = data_files(folder)
    except (FileNotFoundError, RmbJudgeError):
        return None
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _run(folder: Path, summary: Summary, benchmark: Benchmark, data_digest: str | None) -> Run:
    usage, data, settings = summary.usage, summary.data, summary.settings
    position, agreement = summary.position, summary.agreement
    section_of = {(s.kind, s.goal): s.key for s in benchmark.sections}
    scenarios = tuple(
        _scenario(s.category_path, section_of.get((s.set, s.section)), s.n, s.accuracy, s.interval, benchmark)
        for s in summary.scenarios
        if s.category_path
    )
    # Failure counts come from the per-section tallies; usage's are the fallback for older summaries.
    counted: list[SectionCounts | Usage] = [*summary.sections.values()] or [usage]
    n = sum(s.n for s in summary.sections.values()) if summary.sections else sum(s.n for s in scenarios)
    # Older summaries have no `results`, hand-written ones may lack `usage`: their defaults read as free.
    results_recorded, usage_recorded = usage.results != Results(), usage != Usage()
    flags = _flags(settings, benchmark)
    return Run(
        path=folder,
        benchmark=benchmark,
        judge=summary.judge,
        label=_settings_label(settings, flags, benchmark) or folder.name,
        simulated=summary.simulated or summary.judge.split(":")[0] == "mock",
        complete=summary.complete,
        stopped_reason=summary.stopped_reason,
        suspect=summary.suspect,
        warnings=tuple(map(str, summary.warnings)),
        scores={key: summary.scores.get(key) for key in (*benchmark.leaderboard, OVERALL)},
        intervals={key: summary.intervals.get(key) for key in (*benchmark.leaderboard, OVERALL)},
        chance={s.key: summary.chance.get(s.key) for s in benchmark.sections if s.key in benchmark.leaderboard},
        n=n,
        failed=sum(s.failed for s in counted),
        unparsed=sum(s.unparsed for s in counted),
        refused=sum(s.refused for s in counted),
        cost_usd=usage.results.cost_usd if results_recorded else usage.cost_usd if usage_recorded else None,
        cost_is_spend=not results_recorded and usage.cache_hits > 0,
        cache_hits=usage.cache_hits,
        first_pick_rate=position.first_pick_rate if position else None,
        first_pick_interval=position.first_pick_interval if position else None,
        consistency=position.consistency if position else None,
        consistency_interval=position.consistency_interval if position else None,
        unanimous=agreement.unanimous_rate if agreement else None,
        unanimous_interval=agreement.unanimous_interval if agreement else None,
        scenarios=scenarios,
        selection=_selection_key(flags, scenarios),
        selection_text=_selection_text(flags, benchmark),
        records=data.records or n,
        comparisons=(data.comparisons_judged, data.comparisons_expected) if data.comparisons_expected else None,
        data_digest=data_digest,
        behaviour=summary.behaviour,
        calibration=summary.calibration,
        jury=tuple(summary.jury or ()),
    )


def _scenario(path: str, section: str | None, n: int, accuracy: float | None, interval: list[float] | None,
              benchmark: Benchmark) -> Scenario:
    """Under a section its short label; without one (a summary whose scenarios name no kind and
    goal) the whole path, as nothing else tells apart scenarios of different sections."""
    return Scenario(path, section, benchmark.scenario_label(path) if section else path, n, accuracy, interval)


def _flags(settings: Settings, benchmark: Benchmark) -> Flags | None:
    """The selection flags with defaults filled in, or None when the summary records none (an
    older run of a benchmark selected by --sets and --sections always recorded them since)."""
    if benchmark.selection_flags and not (settings.sets or settings.sections or settings.scenarios):
        return None
    return Flags(
        kinds=tuple(sorted(settings.sets or benchmark.kinds)),
        goals=tuple(sorted(settings.sections or benchmark.goals)),
        scenarios=tuple(sorted(settings.scenarios)),
        limit=settings.limit,
        sample=settings.sample,
        precision=settings.precision,
        seed=settings.seed if settings.sample is not None or settings.precision is not None else None,
        options=tuple(sorted(settings.options.items())),
    )


def _selection_key(flags: Flags | None, scenarios: tuple[Scenario, ...]) -> tuple[Any, ...]:
    """Runs with equal keys selected the same records: equal selection flags or, for summaries
    without them, the same scenarios with the same record counts."""
    if flags is None:
        return ("scenarios", tuple(sorted((s.category_path, s.n) for s in scenarios)))
    return ("flags", flags)


def _narrowed(flags: Flags, benchmark: Benchmark) -> list[tuple[str, tuple[str, ...]]]:
    """(flag, values) for --sets and --sections where they leave out some of the benchmark's."""
    every = {"sets": tuple(sorted(benchmark.kinds)), "sections": tuple(sorted(benchmark.goals))}
    chosen = {"sets": flags.kinds, "sections": flags.goals}
    return [(flag, chosen[flag]) for flag in every if chosen[flag] != every[flag]]


def _selection_text(flags: Flags | None, benchmark: Benchmark) -> str:
    """The selection in words: `full selection`, or the flags that narrowed it."""
    if flags is None:
        return "selection not recorded (older summary)"
    parts = [f"{flag} " + ", ".join(values) for flag, values in _narrowed(flags, benchmark)]
    parts += [f"{name} {value}" for name, value in flags.options]
    if flags.scenarios:
        parts.append("scenarios " + ", ".join(flags.scenarios))
    if flags.limit is not None:
        parts.append(f"first {flags.limit} records per scenario")
    if flags.sample is not None:
        parts.append(f"sample {flags.sample * 100:g}% (seed {flags.seed})")
    if flags.precision is not None:
        parts.append(f"sample grown to ±{flags.precision:g} (seed {flags.seed})")
    return " · ".join(parts) or "full selection"


def _settings_label(settings: Settings, flags: Flags | None, benchmark: Benchmark) -> str:
    """Template, order and votes, plus the selection flags that make a run a subset."""
    parts = [str(value) for value in (settings.template, settings.order) if value]
    if isinstance(settings.samples, int):
        vote = f"k={settings.samples}"
        if settings.samples > 1 and settings.temperature is not None:
            vote += f" T={settings.temperature:g}"
        parts.append(vote)
    if flags is not None:
        parts += [f"{flag}={','.join(values)}" for flag, values in _narrowed(flags, benchmark)]
        if flags.scenarios:
            parts.append("scenarios=" + ",".join(flags.scenarios))
    parts += [f"{name}={value:g}" for name, value in
              (("limit", settings.limit), ("sample", settings.sample), ("precision", settings.precision))
              if value is not None]
    return " · ".join(parts)


def _distinct_labels(runs: list[Run]) -> list[Run]:
    """Runs that would read the same (same judge and settings) get their folder name added."""
    seen = Counter((run.judge, run.label) for run in runs)
    return [
        replace(run, label=f"{run.label} · {run.path.name}") if seen[(run.judge, run.label)] > 1 else run
        for run in runs
    ]
