"""`rmb-judge jury RUN [RUN ...] --out DIR`: a panel of judges, from runs already made.

A jury is a run folder built from its members' verdicts (their `samples.jsonl`), with no
request sent and no cache opened: on the records every member scored, in scenarios whose data
file has the same SHA-256 in every member's manifest (as `compare` matches records), each
comparison gets the jury's verdict relative to the label:
- `majority` (default): the most common of the members' verdicts (each member's over its
  orders, `samples.combined`); a split vote is a tie, and a member without a verdict
  abstains (no verdict at all: unparsed);
- `mean-prob`: the mean of the members' probabilities P(preferred wins), P(other wins),
  P(tie) (members without one for the comparison abstain), and the verdict the largest
  names (the two sides equal: a tie). Every member must be a --verdict-probs run.
The jury's probabilities are that mean (under `majority`, only where every member gives one:
a mean of some would be their calibration, not the jury's), so its calibration is measured too.

The jury's records are scored like any run's (records linked by a shared comparison counted
together, as in a run's intervals), with intervals, behaviour and (with
probabilities) calibration; each comparison is one presentation, the preferred answer as A
(a jury sees no order, so it has no position bias), whose votes are the members' verdicts
(`agreement` in summary.json: how often all members agree). `usage.results` is the sum of the
members' (what the answers behind the verdicts cost), `jury` lists the members' judges, and
`compare`, `report` and another jury read the folder as any run's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import behaviour, benchmarks, calibration, intervals, precision, samples, scoring, verdict_probs
from .benchmark import Benchmark
from .config import Execution
from .errors import RmbJudgeError, UsageError
from .judgments import Judged, Pair, Presentation, RecordScore
from .outputs import RunFolder, manifest, sample_line
from .records import Record, Selection
from .summary import DataInfo, Results, Settings, Summary, Usage, data_files, read_json, read_summary

RULES = ("majority", "mean-prob")
_VOTE = {"win": "A", "loss": "B", "tie": "tie"}  # a verdict relative to the label, as the preferred answer shown first


@dataclass
class Member:
    path: Path  # resolved: links followed, so one run is one path
    summary: Summary
    files: dict[str, str]  # data file -> SHA-256 (manifest.json)
    verdicts: dict[samples.Key, samples.JudgedComparison]
    root: str | None  # the data folder it was run on
    runs: frozenset[Path]  # the runs whose verdicts it holds: itself, or a jury's members (theirs, for a jury's)

    @property
    def judge(self) -> str:
        return self.summary.judge


def read_member(folder: Path) -> Member:
    folder = folder.resolve()
    summary = read_summary(folder)
    try:
        files = data_files(folder)
    except FileNotFoundError:
        raise UsageError(f"{folder}: no manifest.json, so its records cannot be matched to the other members' "
                         "(rerun it with --offline to rewrite the folder from the cache)") from None
    root = summary.data.root or None
    return Member(folder, summary, files, samples.read(folder), root, _runs(folder))


def _runs(folder: Path, seen: frozenset[Path] = frozenset()) -> frozenset[Path]:
    """The run folders whose verdicts `folder` holds: a jury's members' (as its manifest.json
    lists them, and theirs in turn), else the folder itself."""
    try:
        listed = read_json(folder / "manifest.json").get("jury", {}).get("members", [])
        paths = [Path(str(member["path"])).resolve() for member in listed]
    except (OSError, RmbJudgeError, AttributeError, KeyError, TypeError):
        paths = []
    if not paths or folder in seen:
        return frozenset({folder})
    return frozenset().union(*(_runs(path, seen | {folder}) for path in paths))


def _check_distinct(members: Sequence[Member]) -> None:
    """No run may vote twice: given twice, or beside a jury that holds it already."""
    for later, member in enumerate(members):
        for earlier in members[:later]:
            if twice := sorted(member.runs & earlier.runs):
                inside = [m.path for m in (earlier, member) if m.runs != {m.path}]
                where = f" (a member of {' and of '.join(map(str, inside))})" if inside else ""
                raise UsageError(f"jury: {twice[0]}{where} is given twice: its verdicts would count twice")


def verdict(members: Sequence[samples.JudgedComparison], rule: str) -> tuple[str | None, verdict_probs.Probs | None]:
    """The jury's verdict on one comparison relative to the label ("win", "loss", "tie" or
    None) and its label-relative probabilities: the mean of its members' (majority: only where
    every member gives one, else None, as a mean of some would be theirs; mean-prob: of those
    that give one, whose mean is the verdict's)."""
    given = [p for m in members if (p := m.label_probs) is not None]
    if rule == "majority":
        outcome = scoring.majority([m.outcome for m in members])
        return (None if outcome is None else str(outcome)), verdict_probs.mean(given) if len(given) == len(
            members) else None
    probs = verdict_probs.mean(given)
    if probs is None:
        return None, None
    wins, losses, ties = probs
    if ties > max(wins, losses) or wins == losses:
        return "tie", probs
    return ("win" if wins > losses else "loss"), probs


def build(paths: Sequence[Path], out: Path, rule: str = "majority", data: Path | None = None,
          replace: bool = False, argv: Sequence[str] = ()) -> Summary:
    """Build the jury of the runs at `paths` into `out`; one clear error when they cannot make one."""
    if rule not in RULES:
        raise UsageError(f"--rule must be one of {', '.join(RULES)}, got {rule!r}")
    if len(paths) < 2:
        raise UsageError("jury: give at least two run folders")
    members = [read_member(Path(p)) for p in paths]
    _check_distinct(members)
    if (overwritten := next((m for m in members if m.path == Path(out).resolve()), None)) is not None:
        raise UsageError(f"jury: --out {out} is the folder of its member {overwritten.judge}: the jury would "
                         "overwrite that run; choose another --out")
    names = {m.summary.benchmark for m in members}
    if len(names) > 1:
        raise UsageError(f"jury: the runs are of different benchmarks ({', '.join(sorted(names))})")
    benchmark = benchmarks.get(names.pop())
    if rule == "mean-prob" and (lacking := [m for m in members if not any(
            v.right is not None for v in m.verdicts.values())]):
        raise UsageError(f"--rule mean-prob: {lacking[0].path} has no verdict probabilities "
                         "(a run with --verdict-probs has them)")
    judges = [m.judge for m in members]
    folder = RunFolder(out)
    try:
        chosen = _chosen(benchmark, members, data)
        settings = _settings(benchmark, members, chosen)
        judge = f"jury:{rule}({', '.join(judges)})"
        folder.check(judge, settings, replace, benchmark.name)
        judged = _judged(benchmark, chosen.records, members, rule)
        record_scores = scoring.score_records(benchmark, judged)
        summary = _summary(benchmark, members, judge, settings, judged, record_scores, chosen)
        folder.write_lines("samples.jsonl", (
            sample_line(benchmark, j, score, rs, summary.simulated, chosen.links[rs.record])
            for rs in record_scores for group, score in zip(rs.judgments, rs.judgment_scores, strict=True)
            for j in group))
        as_json = summary.to_json()
        folder.write_json("summary.json", as_json)
        written = manifest(judge, summary.simulated, as_json["settings"], Path(chosen.root), chosen.digests,
                           ["rmb-judge", *argv], benchmark=benchmark.name)
        written["jury"] = {"rule": rule, "members": [{"judge": m.judge, "path": str(m.path)} for m in members]}
        folder.write_json("manifest.json", written)
    finally:
        folder.close()
    return summary


@dataclass
class Chosen:
    """The records a jury scores, and what its intervals need to know of their selection."""

    root: str  # the data folder read
    records: list[Record]  # every member scored them, on data files all judged the same
    digests: dict[str, str]  # those files' SHA-256
    selection: Selection | None  # the members' common selection (None: they selected different records)
    population: dict[str, int] | None  # a sample's scenario sizes in the selection (--sample, --precision)
    links: dict[Record, int]  # each record's linked set (scoring.linked), over the selection where there is one
    precision: float | None  # the loosest --precision target among the members (their samples' intersection)
    left_out: list[str]  # data files every member judged, but not all the same version of


def _base(settings: Settings, benchmark: Benchmark) -> tuple[Any, ...]:
    """What a run selected before any sampling, defaults filled in."""
    return (tuple(sorted(settings.sets or benchmark.kinds)), tuple(sorted(settings.sections or benchmark.goals)),
            tuple(sorted(settings.scenarios)), settings.limit, tuple(sorted(settings.options.items())))


def _chosen(benchmark: Benchmark, members: Sequence[Member], data: Path | None) -> Chosen:
    """The records every member scored. Members that selected the same records (sets,
    sections, scenarios, --limit) are read through that selection, with the --sample any of
    them drew; where one judged a sample of it (--sample, --precision), the records they share
    are a sample of it too, and its scenarios weigh as in the selection, as in the members' own
    scores. Members that selected different records share the records in all their selections:
    a sample of one of them is then no sample of anything, and is refused."""
    root = data or (Path(members[0].root) if members[0].root else None)
    if root is None:
        raise UsageError(f"jury: {members[0].path} does not say where its data was; give --data DIR")
    every = [m.summary.settings for m in members]
    options = every[0].options
    if any(s.options != options for s in every):
        raise UsageError(f"jury: the runs judged different selections of the benchmark ("
                         f"{'; '.join(f'{m.path}: {m.summary.settings.options}' for m in members)})")
    drawn = sorted({(s.sample, s.seed) for s in every if s.sample is not None})
    if len(drawn) > 1:
        raise UsageError("jury: the members drew different --sample samples (" + ", ".join(
            f"--sample {rate:g} --seed {seed}" for rate, seed in drawn) + "): they share no sample of one selection")
    sampled = [m for m in members if m.summary.settings.sample is not None or m.summary.settings.precision is not None]
    same = len({_base(s, benchmark) for s in every}) == 1
    if sampled and not same:
        raise UsageError(f"jury: {sampled[0].path} judged a sample of its selection (--sample or --precision) and the "
                         "members selected different records (--sets, --sections, --scenarios, --limit): the records "
                         "they share are no sample of one selection; give members of one selection")
    if same:
        first = every[0]
        rate, seed = drawn[0] if drawn else (None, 0)
        selection: Selection | None = Selection(first.sets or None, first.sections or None, first.scenarios,
                                                first.limit, rate, seed, options)
        load = selection
    else:
        selection = None
        union = {name: sorted({v for s in every for v in getattr(s, name)})
                 for name in ("sets", "sections", "scenarios")}
        load = Selection(sets=union["sets"] or None, sections=union["sections"] or None,
                         scenarios=union["scenarios"] if all(s.scenarios for s in every) else [], options=options)
    dataset = benchmark.load(root, load)
    same_files = {file for file, digest in members[0].files.items()
                  if all(m.files.get(file) == digest for m in members)}
    left_out = sorted(file for file in members[0].files
                      if file not in same_files and all(file in m.files for m in members))
    differ = sorted(file for file in same_files
                    if file in dataset.sha256 and dataset.sha256[file] != members[0].files[file])
    if differ:
        raise UsageError(f"jury: {root}/{differ[0]} is not the file the runs judged (its SHA-256 differs); "
                         "give --data the folder they ran on")
    finished = [{(key[0], key[1]) for key, v in m.verdicts.items() if v.finished} for m in members]
    records = [r for r in dataset.records
               if r.file in same_files and all((r.subset, r.uid) in done for done in finished)]
    if not records:
        raise UsageError("jury: the runs share no scored record (matched by scenario, uid and data file)")
    targets = [s.precision for s in every if s.precision is not None]
    return Chosen(
        root=str(dataset.root),
        records=records,
        digests={f: d for f, d in dataset.sha256.items() if f in same_files},
        selection=selection,
        population=dict(Counter(r.subset for r in dataset.records)) if sampled else None,
        links=scoring.linked(dataset.records if same else records),
        precision=max(targets) if targets else None,
        left_out=left_out,
    )


def _settings(benchmark: Benchmark, members: Sequence[Member], chosen: Chosen) -> Settings:
    """The jury's selection: the members' common one (a --precision sample at the loosest
    target: the samples' intersection), else the records all their selections hold (the
    sets and sections all of them chose, the smallest --limit; where their scenarios differ,
    the scenarios of the records shared)."""
    every = [m.summary.settings for m in members]
    probs = any(bool(s.verdict_probs) for s in every)
    if chosen.selection is not None:
        s = chosen.selection
        return Settings(sets=list(every[0].sets), sections=list(every[0].sections), scenarios=list(every[0].scenarios),
                        limit=s.limit, sample=s.sample, seed=s.seed, precision=chosen.precision,
                        options=dict(s.options), verdict_probs=probs)
    scenarios = {tuple(s.scenarios) for s in every}
    limits = [s.limit for s in every if s.limit is not None]
    return Settings(
        sets=[kind for kind in benchmark.kinds if all(kind in (s.sets or benchmark.kinds) for s in every)],
        sections=[goal for goal in benchmark.goals if all(goal in (s.sections or benchmark.goals) for s in every)],
        scenarios=list(scenarios.pop()) if len(scenarios) == 1 else sorted({r.subset for r in chosen.records}),
        limit=min(limits) if limits else None,
        options=dict(every[0].options),
        verdict_probs=probs,
    )


def _judged(benchmark: Benchmark, records: Sequence[Record], members: Sequence[Member], rule: str
            ) -> list[Judged]:
    judged = []
    for comparison in (j for r in records for j in benchmark.judgments(r, "pairwise")):
        if not isinstance(comparison, Pair):
            raise UsageError(f"jury: benchmark {benchmark.name} judges its records otherwise than in pairs")
        key = (comparison.record.subset, comparison.record.uid, comparison.position)
        found = [m.verdicts.get(key) for m in members]
        if any(v is None for v in found):
            raise UsageError(f"jury: {members[found.index(None)].path} scored record {key[1]} of {key[0]} "
                             f"without its comparison {key[2]}: the folder is not a whole run")
        voted = [v for v in found if v is not None]
        outcome, probs = verdict(voted, rule)
        judged.append(Judged(
            presentation=Presentation(comparison, "AB"),
            verdict=_VOTE.get(outcome or ""),
            raw={m.judge: v.outcome for m, v in zip(members, voted, strict=True)},
            cached=True,
            votes=tuple(_VOTE.get(v.outcome or "") for v in voted),
            probs=probs,
        ))
    return judged


def _summary(benchmark: Benchmark, members: Sequence[Member], judge: str, settings: Settings,
             judged: list[Judged], record_scores: list[RecordScore], chosen: Chosen) -> Summary:
    records = chosen.records
    scored = scoring.summarize(benchmark, judged, record_scores, records, scalar=False, population=chosen.population,
                               z=intervals.Z95 if chosen.precision is None else precision.STOP_Z, links=chosen.links,
                               sampled=settings.sample)
    costs = [m.summary.usage.results.cost_usd for m in members]
    unread = sum(1 for j in judged if j.verdict is None)
    # no position bias: the jury's presentations are not the ones its members were shown
    summary = replace(scored, position=None).summary(
        judge=judge,
        benchmark=benchmark.name,
        simulated=any(m.summary.simulated for m in members),
        complete=all(m.summary.complete for m in members),
        settings=settings,
        behaviour=behaviour.measure(judged, None, scalar=False),
        calibration=calibration.measure(judged),
        jury=[m.judge for m in members],
        data=DataInfo(root=chosen.root, records=len(records), records_scored=len(record_scores),
                      comparisons_judged=len(judged), comparisons_expected=len(judged)),
        usage=Usage(unparsed=unread, results=Results(
            answers=sum(m.summary.usage.results.answers for m in members),
            input_tokens=sum(m.summary.usage.results.input_tokens for m in members),
            output_tokens=sum(m.summary.usage.results.output_tokens for m in members),
            cost_usd=None if None in costs else sum(c for c in costs if c is not None),
        )),
    )
    if chosen.left_out:
        summary.warnings.append(
            f"{len(chosen.left_out)} data files left out: the members judged different versions of them (SHA-256 in "
            f"their manifest.json), so saw other texts: {', '.join(chosen.left_out[:5])}"
            + (", ..." if len(chosen.left_out) > 5 else ""))
    for m in members:
        if m.summary.suspect:
            summary.warnings.append(f"member {m.judge} ({m.path}) is a suspect run")
        if not m.summary.complete:
            summary.warnings.append(f"member {m.judge} ({m.path}) is incomplete: the jury covers the records it "
                                    "scored")
    unreadable = unread / len(judged) > Execution.max_unparsed
    if unreadable:
        summary.warnings.append(f"{unread} of {len(judged)} comparisons got no verdict from any member, more "
                                f"than {100 * Execution.max_unparsed:g}%: they count as losses")
    summary.suspect = unreadable or any(m.summary.suspect for m in members)
    return summary
