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
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from .benchmark import Benchmark
from .comparisons import Comparison, Presentation
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
    outcome: str | None = field(init=False)  # relative to the label: "win", "loss", "tie" or None
    correct: float = field(init=False)  # 1 for a win, 0.5 for a generative tie, else 0

    def __post_init__(self) -> None:
        # computed once: scoring, the live view and the samples all read them
        verdict = self.verdict
        if verdict is None or verdict == "tie":
            self.outcome = verdict
        else:
            self.outcome = "win" if verdict == ("A" if self.presentation.order == "AB" else "B") else "loss"
        self.correct = {"win": 1.0, "tie": 0.0 if self.scalar else 0.5}.get(self.outcome, 0.0)  # type: ignore[arg-type]


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


def chance_levels(benchmark: Benchmark, records: list[Record], scalar: bool) -> dict[str, float | None]:
    """A random judge's expected score per section on these records."""
    by_section: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_section[r.section].append(benchmark.chance(r, scalar))
    return {s.key: (mean(by_section[s.key]) if by_section[s.key] else None) for s in benchmark.sections}


@dataclass
class Scored:
    """Everything a summary says about the scores."""

    scores: dict[str, float | None]
    macro: dict[str, float | None]
    chance: dict[str, float | None]
    sections: dict[str, SectionCounts]
    scenarios: list[ScenarioScore]
    position: Position | None
    agreement: Agreement | None


def summarize(
    benchmark: Benchmark, judged: list[Judged], record_scores: list[RecordScore], records: list[Record],
    scalar: bool,
) -> Scored:
    """Scores, per-section counts, per-scenario accuracies, position bias and vote agreement."""
    section_scores: dict[str, list[float]] = defaultdict(list)
    scenario_scores: dict[str, list[float]] = defaultdict(list)
    scenario_of: dict[str, Record] = {}
    counts: dict[str, Counter] = defaultdict(Counter)
    scenario_counts: dict[str, Counter] = defaultdict(Counter)
    for rs in record_scores:
        record = rs.record
        section_scores[record.section].append(rs.score)
        scenario_scores[record.category_path].append(rs.score)
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
    scores = {k: (mean(section_scores[k]) if section_scores[k] else None) for k in keys}
    present = [v for v in scores.values() if v is not None]
    scores["overall"] = mean(present) if present else None

    scenario_accuracy = {p: mean(v) for p, v in scenario_scores.items()}
    macro: dict[str, float | None] = {}
    for key in keys:
        values = [a for p, a in scenario_accuracy.items() if scenario_of[p].section == key]
        macro[key] = mean(values) if values else None
    macro_present = [v for v in macro.values() if v is not None]
    macro["overall"] = mean(macro_present) if macro_present else None

    scenarios = [
        ScenarioScore(
            category_path=path, set=scenario_of[path].kind, section=scenario_of[path].goal,
            n=len(scenario_scores[path]), accuracy=scenario_accuracy[path],
            **{k: scenario_counts[path][k] for k in ("unparsed", "refused", "failed", "truncated")},
        )
        for path in sorted(scenario_scores)
    ]
    sections = {
        key: SectionCounts(**{f: counts[key][f] for f in SectionCounts.__dataclass_fields__})
        for key in keys
        if counts[key]["n"]
    }
    return Scored(
        scores=scores,
        macro=macro,
        chance=chance_levels(benchmark, records, scalar),
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
    """How often the first-shown answer was picked, and, for --order both, how often the
    two orders agree."""
    firsts: dict[str, list[float]] = defaultdict(list)
    for j in judged:
        if j.verdict is not None:
            firsts[j.presentation.comparison.record.section].append(float(j.verdict == "A"))
    every = [v for values in firsts.values() for v in values]
    pairs = [g for rs in record_scores for g in rs.comparisons if len(g) == 2]
    agreeing = [float(g[0].outcome == g[1].outcome) for g in pairs if None not in (g[0].outcome, g[1].outcome)]
    return Position(
        first_pick_rate=mean(every) if every else None,
        by_section={k: mean(v) for k, v in sorted(firsts.items())},
        consistency=mean(agreeing) if agreeing else None,
        consistency_n=len(agreeing),
    )


def vote_agreement(judged: list[Judged]) -> Agreement | None:
    """With --samples K > 1: how often all K votes agree, and the mean majority share."""
    voted = [j.votes for j in judged if len(j.votes) > 1]
    if not voted:
        return None
    # a vote that could not be read agrees with nothing
    unanimous = [float(None not in v and len(set(v)) == 1) for v in voted]
    share = [max(Counter(x for x in v if x is not None).values(), default=0) / len(v) for v in voted]
    return Agreement(samples=len(voted[0]), unanimous_rate=mean(unanimous), mean_majority_share=mean(share))
