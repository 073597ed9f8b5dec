"""`rmb-judge jury RUN [RUN ...] --out DIR`: a panel of judges, from runs already made.

A jury is a run folder built from its members' verdicts (their `samples.jsonl`), with no
request sent and no cache opened: on the records every member scored, in scenarios whose data
file has the same SHA-256 in every member's manifest (as `compare` matches records), each
comparison gets the jury's verdict relative to the label:
- `majority` (default): the most common of the members' verdicts (each member's over its
  orders, `judgments.combined`); a split vote is a tie, and a member without a verdict
  abstains (no verdict at all: unparsed);
- `mean-prob`: the mean of the members' probabilities P(preferred wins), P(other wins),
  P(tie) (members without one for the comparison abstain), and the verdict the largest
  names (the two sides equal: a tie). Every member must be a --verdict-probs run.
Under either rule the jury's probabilities are that mean, so its calibration is measured too.

The jury's records are scored like any run's (records linked by a shared comparison counted
together, as in a run's intervals), with intervals, behaviour and (with
probabilities) calibration; each comparison is one presentation, the preferred answer as A
(a jury sees no order, so it has no position bias), whose votes are the members' verdicts
(`agreement` in summary.json: how often all members agree). `usage.results` is the sum of the
members' (what the answers behind the verdicts cost), `jury` lists the members' judges, and
`compare`, `report` and another jury read the folder as any run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import behaviour, benchmarks, calibration, comparisons, intervals, judgments, precision, scoring, verdict_probs
from .benchmark import Benchmark
from .compare import joined
from .config import Execution
from .errors import UsageError
from .outputs import RunFolder, manifest, sample_line
from .records import Record, Selection
from .summary import DataInfo, Results, Settings, Summary, Usage, data_files, read_summary

RULES = ("majority", "mean-prob")
_VOTE = {"win": "A", "loss": "B", "tie": "tie"}  # a verdict relative to the label, as the preferred answer shown first


@dataclass
class Member:
    path: Path
    summary: Summary
    files: dict[str, str]  # data file -> SHA-256 (manifest.json)
    verdicts: dict[judgments.Key, judgments.JudgedComparison]
    root: str | None  # the data folder it was run on

    @property
    def judge(self) -> str:
        return self.summary.judge


def read_member(folder: Path) -> Member:
    summary = read_summary(folder)
    files = data_files(folder)
    if files is None:
        raise UsageError(f"{folder}: its manifest.json lists no data files, so its records cannot be matched "
                         "to the other members' (rerun it with --offline to rewrite the folder from the cache)")
    root = summary.data.root or None
    return Member(folder, summary, files, judgments.read(folder), root)


def verdict(members: Sequence[judgments.JudgedComparison], rule: str) -> tuple[str | None, verdict_probs.Probs | None]:
    """The jury's verdict on one comparison relative to the label ("win", "loss", "tie" or
    None) and the mean of its members' label-relative probabilities (None: no member has any)."""
    probs = verdict_probs.mean([p for m in members if (p := m.label_probs) is not None])
    if rule == "majority":
        return scoring.majority([m.outcome for m in members]), probs
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
        settings = _settings(members)
        judge = f"jury:{rule}({', '.join(judges)})"
        folder.check(judge, settings, replace)
        dataset_root, records, digests = _records(benchmark, members, data)
        judged = _judged(records, members, rule)
        record_scores = scoring.score_records(benchmark, judged)
        links = _links(records, members)
        summary = _summary(benchmark, members, judge, settings, judged, record_scores, records, dataset_root, links)
        folder.write_lines("samples.jsonl", (
            sample_line(j, score, rs.score, summary.simulated, links[rs.record])
            for rs in record_scores for group, score in zip(rs.comparisons, rs.comparison_scores, strict=True)
            for j in group))
        folder.write_json("summary.json", summary.to_json())
        written = manifest(judge, summary.simulated, summary.to_json()["settings"], Path(dataset_root), digests,
                           ["rmb-judge", *argv])
        written["jury"] = {"rule": rule, "members": [{"judge": m.judge, "path": str(m.path)} for m in members]}
        folder.write_json("manifest.json", written)
    finally:
        folder.close()
    return summary


def _settings(members: Sequence[Member]) -> Settings:
    """The selection the members share (a setting they differ on is left unrecorded)."""
    first = members[0].summary.settings
    same = {name: getattr(first, name) for name in ("sets", "sections", "scenarios", "limit", "sample", "seed",
                                                    "precision")
            if all(getattr(m.summary.settings, name) == getattr(first, name) for m in members)}
    return Settings(**same, verdict_probs=any(bool(m.summary.settings.verdict_probs) for m in members))


def _records(benchmark: Benchmark, members: Sequence[Member], data: Path | None
             ) -> tuple[str, list[Record], dict[str, str]]:
    """The dataset's records every member scored, on data files all of them judged the same,
    with the data folder read and those files' SHA-256."""
    root = data or (Path(members[0].root) if members[0].root else None)
    if root is None:
        raise UsageError(f"jury: {members[0].path} does not say where its data was; give --data DIR")
    union = {name: sorted({v for m in members for v in getattr(m.summary.settings, name)})
             for name in ("sets", "sections", "scenarios")}
    if not all(m.summary.settings.scenarios for m in members):
        union["scenarios"] = []
    dataset = benchmark.load(root, Selection(sets=union["sets"] or benchmark.kinds,
                                             sections=union["sections"] or benchmark.goals,
                                             scenarios=union["scenarios"]))
    same = {file for file, digest in members[0].files.items() if all(m.files.get(file) == digest for m in members)}
    differ = sorted(file for file in same if file in dataset.sha256 and dataset.sha256[file] != members[0].files[file])
    if differ:
        raise UsageError(f"jury: {root}/{differ[0]} is not the file the runs judged (its SHA-256 differs); "
                         "give --data the folder they ran on")
    finished = [{(key[0], key[1]) for key, v in m.verdicts.items() if v.finished} for m in members]
    records = [r for r in dataset.records
               if r.file in same and all((r.category_path, r.uid) in done for done in finished)]
    if not records:
        raise UsageError("jury: the runs share no scored record (matched by scenario, uid and data file)")
    return str(dataset.root), records, {f: d for f, d in dataset.sha256.items() if f in same}


def _links(records: Sequence[Record], members: Sequence[Member]) -> dict[Record, int]:
    """The records' linked sets: records sharing an answer among them are joined, and so are
    those any member found linked (over its own selection, as its summary's intervals did)."""
    keys = {record: (record.category_path, record.uid) for record in records}
    labelings = [{keys[r]: link for r, link in scoring.linked(records).items()}]
    for member in members:
        found = {(key[0], key[1]): v.link for key, v in member.verdicts.items() if v.link is not None}
        if all(key in found for key in keys.values()):  # (an older member wrote none)
            labelings.append(found)
    sets = joined(list(keys.values()), labelings)
    return {record: sets[key] for record, key in keys.items()}


def _judged(records: Sequence[Record], members: Sequence[Member], rule: str) -> list[scoring.Judged]:
    judged = []
    for comparison in comparisons.comparisons_of(records):
        key = (comparison.record.category_path, comparison.record.uid, comparison.loser_index)
        found = [m.verdicts.get(key) for m in members]
        if any(v is None for v in found):
            raise UsageError(f"jury: {members[found.index(None)].path} scored record {key[1]} of {key[0]} "
                             f"without its comparison {key[2]}: the folder is not a whole run")
        voted = [v for v in found if v is not None]
        outcome, probs = verdict(voted, rule)
        judged.append(scoring.Judged(
            presentation=comparisons.Presentation(comparison, "AB"),
            verdict=_VOTE.get(outcome or ""),
            raw={m.judge: v.outcome for m, v in zip(members, voted, strict=True)},
            cached=True,
            votes=tuple(_VOTE.get(v.outcome or "") for v in voted),
            probs=probs,
        ))
    return judged


def _summary(benchmark: Benchmark, members: Sequence[Member], judge: str, settings: Settings,
             judged: list[scoring.Judged], record_scores: list[scoring.RecordScore], records: list[Record],
             root: str, links: dict[Record, int]) -> Summary:
    # a --precision member judged a sample of each scenario: the records stand for its records in
    # the selection, with its interval's critical value, as in the member's own summary
    population: dict[str, int] = {}
    for member in members:
        if member.summary.precision is not None:
            for s in member.summary.scenarios:
                population[s.category_path] = max(population.get(s.category_path, 0), s.population or s.n)
    scored = scoring.summarize(benchmark, judged, record_scores, records, scalar=False,
                               population=population or None, z=precision.STOP_Z if population else intervals.Z95,
                               links=links, sampled=settings.sample)
    costs = [m.summary.usage.results.cost_usd for m in members]
    unread = sum(1 for j in judged if j.verdict is None)
    summary = Summary(
        judge=judge,
        benchmark=benchmark.name,
        simulated=any(m.summary.simulated for m in members),
        complete=all(m.summary.complete for m in members),
        settings=settings,
        scores=scored.scores,
        intervals=scored.intervals,
        macro=scored.macro,
        macro_intervals=scored.macro_intervals,
        chance=scored.chance,
        sections=scored.sections,
        scenarios=scored.scenarios,
        agreement=scored.agreement,
        behaviour=behaviour.measure(judged, None, scalar=False),
        calibration=calibration.measure(judged),
        jury=[m.judge for m in members],
        data=DataInfo(root=root, records=len(records), records_scored=len(record_scores),
                      comparisons_judged=len(judged), comparisons_expected=len(judged)),
        usage=Usage(unparsed=unread, results=Results(
            answers=sum(m.summary.usage.results.answers for m in members),
            input_tokens=sum(m.summary.usage.results.input_tokens for m in members),
            output_tokens=sum(m.summary.usage.results.output_tokens for m in members),
            cost_usd=None if None in costs else sum(c for c in costs if c is not None),
        )),
    )
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
