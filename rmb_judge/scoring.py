"""Scores from verdicts, exactly as the contract defines them (the record rule and chance
levels are the benchmark's).

- A presentation (a comparison in one order) has a positional verdict A/B/tie/None; its
  `correct` is 1 if the label-preferred answer won, 0.5 for a generative tie, else 0.
- A comparison judged in both orders is a win only if both verdicts prefer the right
  answer, a tie (0.5) if they disagree, and unparsed if either is missing.
- A record's score comes from its comparisons' by the benchmark's rule (RMB: pairwise =
  its comparison's score; Best-of-N = 1 only if every comparison against its losers is a win).
- Section score = mean record score (micro, like the RMB reference); overall = mean of
  the section scores present; macro = mean of scenario accuracies.
- Every score, accuracy and rate has a 95% interval (intervals.py says how). A `--precision`
  run judged a sample of each scenario: its section scores weight each scenario by its size
  in the selection (`population`), which for a full run is the plain mean over records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from . import intervals
from .benchmark import Benchmark
from .comparisons import Comparison, Presentation
from .intervals import Estimate, Stratum
from .records import Record
from .summary import Agreement, Position, ScenarioScore, SectionCounts


@dataclass
class Judged:
    """The verdict on one presentation, with what it came from."""

    presentation: Presentation
    verdict: str | None  # positional: "A", "B", "tie" or None
    raw: Any = None
    cached: bool = False
    error: str | None = None
    rejected: bool = False  # the error is the provider's final word on this request (too long)
    refused: bool = False
    truncated: bool = False
    votes: tuple[str | None, ...] = ()
    scalar: bool = False  # a reward model: equal rewards are a loss, not a tie
    probs: tuple[float, float, float] | None = None  # --verdict-probs: P(A), P(B), P(tie), mean over votes
    outcome: str | None = field(init=False)  # relative to the label: "win", "loss", "tie" or None
    correct: float = field(init=False)  # 1 for a win, 0.5 for a generative tie, else 0

    def __post_init__(self) -> None:
        # computed once: scoring, the live view and the samples all read them
        self.outcome = label_outcome(self.verdict, self.presentation.order)
        self.correct = {"win": 1.0, "tie": 0.0 if self.scalar else 0.5}.get(self.outcome, 0.0)  # type: ignore[arg-type]


def label_outcome(verdict: str | None, order: str) -> str | None:
    """A positional verdict relative to the label: "win" (the preferred answer picked), "loss",
    "tie" or None, for a presentation in `order` ("AB": the preferred answer shown first)."""
    if verdict is None or verdict == "tie":
        return verdict
    return "win" if verdict == ("A" if order == "AB" else "B") else "loss"


def majority(votes: list[str | None]) -> str | None:
    """The most common parsed vote; a split vote is a tie; no parsed vote is None."""
    if len(votes) == 1:
        return votes[0]
    counted = Counter(v for v in votes if v is not None)
    if not counted:
        return None
    (top, n), *rest = counted.most_common()
    return "tie" if rest and rest[0][1] == n else top


def comparison_score(judged: list[Judged]) -> float:
    """A comparison's score from its one or two presentations."""
    outcomes = [j.outcome for j in judged]
    if None in outcomes:
        return 0.0
    if len(set(outcomes)) == 1:  # one presentation, or both orders agree
        return judged[0].correct
    return 0.0 if judged[0].scalar else 0.5  # the two orders disagree: a tie


@dataclass
class RecordScore:
    record: Record
    score: float
    comparisons: list[list[Judged]]  # each comparison's presentations
    comparison_scores: list[float]


def score_records(benchmark: Benchmark, judged: list[Judged]) -> list[RecordScore]:
    """Group presentations by comparison and comparisons by record, in dataset order."""
    by_comparison: dict[Comparison, list[Judged]] = defaultdict(list)
    for j in judged:
        by_comparison[j.presentation.comparison].append(j)
    by_record: dict[Record, list[list[Judged]]] = defaultdict(list)
    for comparison, group in by_comparison.items():
        by_record[comparison.record].append(group)
    result = []
    for record, groups in by_record.items():
        scores = [comparison_score(g) for g in groups]
        value = benchmark.record_score(record, scores)
        result.append(RecordScore(record, value, groups, scores))
    return result


def chance_levels(benchmark: Benchmark, records: list[Record], scalar: bool,
                  population: dict[str, int] | None = None) -> dict[str, float | None]:
    """A random judge's expected score per section on these records; a sampled run's
    scenarios weighted by their population, as its scores are (a sample that favours short
    Best-of-N lists would otherwise move the chance level)."""
    by_scenario: dict[str, list[float]] = defaultdict(list)
    section_of: dict[str, str] = {}
    for r in records:
        by_scenario[r.category_path].append(benchmark.chance(r, scalar))
        section_of[r.category_path] = r.section
    levels: dict[str, float | None] = {}
    for section in benchmark.sections:
        weights = {path: (population or {}).get(path) or len(values)
                   for path, values in by_scenario.items() if section_of[path] == section.key}
        total = sum(weights.values())
        levels[section.key] = (sum(w * mean(by_scenario[p]) for p, w in weights.items()) / total) if total else None
    return levels


@dataclass
class Scored:
    """Everything a summary says about the scores."""

    scores: dict[str, float | None]
    macro: dict[str, float | None]
    intervals: dict[str, list[float] | None]  # of each score
    macro_intervals: dict[str, list[float] | None]
    chance: dict[str, float | None]
    sections: dict[str, SectionCounts]
    scenarios: list[ScenarioScore]
    position: Position | None
    agreement: Agreement | None


def estimates(
    keys: list[str], values: dict[str, list[float]], section_of: dict[str, str],
    population: dict[str, int] | None = None, z: float = intervals.Z95,
    links: dict[str, list[Hashable]] | None = None, sampled: float | None = None,
) -> tuple[dict[str, Estimate | None], dict[str, Estimate | None]]:
    """Each section's score and `overall` (the mean of the sections present), then the macro
    averages, as estimates with intervals, from the record scores of each scenario
    (`values[category_path]`). A scenario weighs its size in the selection (`population`)
    within its section, or its count of records when every record was judged.

    `links[category_path]`: each record's linked set (`linked`), so records holding the same
    comparison in two sections count as one cluster. `sampled`: the sizes that weigh the
    scenarios are random, drawn by keeping each record with this probability (a `--sample`
    run's counts, or its counts a --precision run sampled from), which the section scores'
    variance counts; the macro averages weigh scenarios equally whatever their counts."""
    size = {path: (population or {}).get(path, len(v)) for path, v in values.items()}
    by_section: dict[str, list[str]] = defaultdict(list)
    for path in values:
        by_section[section_of[path]].append(path)
    present = [k for k in keys if by_section[k]]

    def combine(weight: dict[str, float], sections: list[str], mixed: float | None) -> Estimate | None:
        return intervals.stratified([Stratum(weight[p], values[p], group=k, links=(links or {}).get(p), size=size[p])
                                     for k in sections for p in by_section[k]], z, mixed)

    micro = {p: size[p] / sum(size[q] for q in by_section[section_of[p]]) for p in values}
    macro = {p: 1 / len(by_section[section_of[p]]) for p in values}
    scores = {k: combine(micro, [k], sampled) for k in keys}
    macros = {k: combine(macro, [k], None) for k in keys}
    scores["overall"] = combine(micro, present, sampled)
    macros["overall"] = combine(macro, present, None)
    return scores, macros


def linked(records: Iterable[Record]) -> dict[Record, int]:
    """Each record's linked set: records that hold an answer to the same conversation (the
    same comparison in a pairwise and a Best-of-N record, judged once for both; an answer a
    reward model scored once for both) are joined, and so is anything joined to them. Their
    scores are correlated, so the intervals count a linked set as one cluster."""
    parent: dict[int, int] = {}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    listed = list(records)
    first: dict[tuple[int, str], int] = {}
    for number, record in enumerate(listed):
        parent[number] = number
        conversation = hash(record.conversation)  # once per record (two conversations hashing alike: a link too many)
        for answer in (record.preferred, *record.others):
            other = first.setdefault((conversation, answer.text), number)
            if other != number:
                parent[root(number)] = root(other)
    return {record: root(number) for number, record in enumerate(listed)}


def _value(estimate: Estimate | None) -> float | None:
    return None if estimate is None else estimate.value


def _interval(estimate: Estimate | None) -> list[float] | None:
    return None if estimate is None else estimate.interval


def summarize(
    benchmark: Benchmark, judged: list[Judged], record_scores: list[RecordScore], records: list[Record],
    scalar: bool, population: dict[str, int] | None = None, z: float = intervals.Z95,
    links: Mapping[Record, Hashable] | None = None, sampled: float | None = None,
) -> Scored:
    """Scores with intervals, per-section counts, per-scenario accuracies, position bias and
    vote agreement. `population`: a sampled run's scenario sizes in the selection; `z`: the
    critical value of the scores' intervals (a --precision run's is corrected for stopping);
    `links`: each record's linked set (`linked`); `sampled`: --sample's rate (`estimates`)."""
    scenario_scores: dict[str, list[float]] = defaultdict(list)
    scenario_links: dict[str, list[Hashable]] = defaultdict(list)
    scenario_of: dict[str, Record] = {}
    counts: dict[str, Counter] = defaultdict(Counter)
    scenario_counts: dict[str, Counter] = defaultdict(Counter)
    for rs in record_scores:
        record = rs.record
        scenario_scores[record.category_path].append(rs.score)
        scenario_links[record.category_path].append(links[record] if links is not None else id(record))
        scenario_of[record.category_path] = record
        c = counts[record.section]
        c["n"] += 1
        c["wins" if rs.score == 1 else "ties" if rs.score == 0.5 else "losses"] += 1
        for group in rs.comparisons:
            c["comparisons"] += 1
            for j in group:
                flags = _flags(j)
                c.update(flags)
                scenario_counts[record.category_path].update(flags)

    keys = [section.key for section in benchmark.sections]
    scores, macros = estimates(keys, scenario_scores, {p: r.section for p, r in scenario_of.items()}, population, z,
                               scenario_links if links is not None else None, sampled)
    scenarios = []
    for path in sorted(scenario_scores):
        accuracy = intervals.mean_of(scenario_scores[path])
        assert accuracy is not None  # a scenario is listed for its records
        scenarios.append(ScenarioScore(
            category_path=path, set=scenario_of[path].kind, section=scenario_of[path].goal,
            n=len(scenario_scores[path]), accuracy=accuracy.value, interval=accuracy.interval,
            population=population.get(path) if population else None,
            **{k: scenario_counts[path][k] for k in ("unparsed", "refused", "failed", "truncated")},
        ))
    sections = {
        key: SectionCounts(**{f: counts[key][f] for f in SectionCounts.__dataclass_fields__})
        for key in keys
        if counts[key]["n"]
    }
    return Scored(
        scores={k: _value(e) for k, e in scores.items()},
        macro={k: _value(e) for k, e in macros.items()},
        intervals={k: _interval(e) for k, e in scores.items()},
        macro_intervals={k: _interval(e) for k, e in macros.items()},
        chance=chance_levels(benchmark, records, scalar, population),
        sections=sections,
        scenarios=scenarios,
        position=None if scalar else position_bias(judged, record_scores),
        agreement=vote_agreement(judged),
    )


def _flags(j: Judged) -> Counter:
    flags: Counter = Counter()
    if j.error:
        flags["failed"] += 1
    elif j.refused:
        flags["refused"] += 1
    elif j.verdict is None:
        flags["unparsed"] += 1
    if j.truncated:
        flags["truncated"] += 1
    if j.scalar and j.verdict == "tie":
        flags["equal_rewards"] += 1
    return flags


def position_bias(judged: list[Judged], record_scores: list[RecordScore]) -> Position:
    """How often the first-shown answer was picked, of the verdicts that picked one (a tie
    picks neither), and, for --order both, how often the two orders agree; intervals count a
    record's verdicts as one cluster."""
    firsts: dict[str, dict[Record, list[float]]] = defaultdict(lambda: defaultdict(list))
    for j in judged:
        if j.verdict in ("A", "B"):
            record = j.presentation.comparison.record
            firsts[record.section][record].append(float(j.verdict == "A"))
    every = intervals.clustered([c for by_record in firsts.values() for c in by_record.values()])
    sections = {k: intervals.clustered(list(v.values())) for k, v in sorted(firsts.items())}
    agreeing = [
        [float(g[0].outcome == g[1].outcome) for g in rs.comparisons
         if len(g) == 2 and None not in (g[0].outcome, g[1].outcome)]
        for rs in record_scores
    ]
    consistency = intervals.clustered(agreeing)
    return Position(
        first_pick_rate=_value(every),
        first_pick_interval=_interval(every),
        by_section={k: e.value for k, e in sections.items() if e},
        by_section_intervals={k: e.interval for k, e in sections.items() if e},
        consistency=_value(consistency),
        consistency_interval=_interval(consistency),
        consistency_n=sum(map(len, agreeing)),
    )


def vote_agreement(judged: list[Judged]) -> Agreement | None:
    """With --samples K > 1: how often all K votes agree, and the mean majority share;
    intervals count a record's comparisons as one cluster."""
    unanimous: dict[Record, list[float]] = defaultdict(list)
    share: dict[Record, list[float]] = defaultdict(list)
    samples = 0
    for j in judged:
        votes = j.votes
        if len(votes) < 2:
            continue
        samples = len(votes)
        record = j.presentation.comparison.record
        # a vote that could not be read agrees with nothing
        unanimous[record].append(float(None not in votes and len(set(votes)) == 1))
        share[record].append(max(Counter(x for x in votes if x is not None).values(), default=0) / len(votes))
    if not samples:
        return None
    all_agree = intervals.clustered(list(unanimous.values()))
    majority_share = intervals.clustered(list(share.values()))
    return Agreement(
        samples=samples,
        unanimous_rate=_value(all_agree),
        unanimous_interval=_interval(all_agree),
        mean_majority_share=_value(majority_share),
        mean_majority_share_interval=_interval(majority_share),
    )
