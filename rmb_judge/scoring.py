"""Scores from verdicts, exactly as the contract and each benchmark define them (the rules
for a judgment, a record and the score keys are the benchmark's: `benchmark.py`).

- A presentation (a judgment in one order or layout) has a verdict: positional for a pair
  (A/B/tie/None) or a ranking (the slot), a number for a rating; relative to the label an
  outcome, and a `correct` of 1 for a win, 0.5 for a generative tie, else 0.
- A judgment's score comes from its presentations by the benchmark's rule (RMB: both orders
  must agree; JudgeBench: its counter), a record's values from its judgments' (RMB: a pairwise
  record's is its pair's, a best-of-N record's is 1 only if every pair is a win).
- Each score key is a weighted mean of subset (stratum) means of one record value: a section's
  the mean over its records, RMB's overall the mean of its sections, JudgeBench's the mean
  over all records; macro averages weigh a section's subsets equally.
- Every score, accuracy and rate has a 95% interval (intervals.py says how). A `--precision`
  run judged a sample of each subset: its scores weight each subset by its size in the
  selection (`population`), which for a full run is the plain mean over records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from statistics import mean
from typing import Any

from . import intervals
from .benchmark import OVERALL, Benchmark, ScoreKey
from .intervals import Estimate, Stratum
from .judgments import SCORE, Judged, Judgment, Pair, RecordScore
from .records import Record
from .summary import Agreement, Position, ScenarioScore, SectionCounts, Summary


def label_outcome(verdict: str | None, order: str) -> str | None:
    """A pair's positional verdict relative to the label: "win" (the preferred answer picked),
    "loss", "tie" or None, for a presentation in `order` ("AB": the preferred answer shown first)."""
    if verdict is None or verdict == "tie":
        return verdict
    return "win" if verdict == ("A" if order == "AB" else "B") else "loss"


def majority(votes: Sequence[str | float | None]) -> str | float | None:
    """The most common parsed vote; a split vote is a tie; no parsed vote is None."""
    if len(votes) == 1:
        return votes[0]
    counted = Counter(v for v in votes if v is not None)
    if not counted:
        return None
    (top, n), *rest = counted.most_common()
    return "tie" if rest and rest[0][1] == n else top


def score_records(benchmark: Benchmark, judged: list[Judged]) -> list[RecordScore]:
    """Group presentations by judgment and judgments by record, in dataset order."""
    by_judgment: dict[Judgment, list[Judged]] = defaultdict(list)
    for j in judged:
        by_judgment[j.judgment].append(j)
    by_record: dict[Record, list[list[Judged]]] = defaultdict(list)
    for judgment, group in by_judgment.items():
        by_record[judgment.record].append(group)
    result = []
    for record, groups in by_record.items():
        scores = [benchmark.judgment_score(g) for g in groups]
        result.append(RecordScore(record, benchmark.record_score(record, groups, scores), groups, scores))
    return result


def chance_levels(benchmark: Benchmark, records: list[Record], scalar: bool,
                  population: dict[str, int] | None = None, order: str | None = None) -> dict[str, float | None]:
    """A random judge's expected score per section on these records; a sampled run's
    subsets weighted by their population, as its scores are (a sample that favours short
    Best-of-N lists would otherwise move the chance level)."""
    by_subset: dict[str, list[float]] = defaultdict(list)
    section_of: dict[str, str] = {}
    for r in records:
        by_subset[r.subset].append(benchmark.chance(r, scalar, order))
        section_of[r.subset] = r.section
    levels: dict[str, float | None] = {}
    for section in benchmark.sections:
        weights = {path: (population or {}).get(path) or len(values)
                   for path, values in by_subset.items() if section_of[path] == section.key}
        total = sum(weights.values())
        levels[section.key] = (sum(w * mean(by_subset[p]) for p, w in weights.items()) / total) if total else None
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

    def summary(self, **rest: Any) -> Summary:
        """A Summary holding these (its fields of the same names) and `rest`."""
        return Summary(**{f.name: getattr(self, f.name) for f in fields(self)}, **rest)


def estimates(
    keys: Sequence[str | ScoreKey], values: Mapping[str, Sequence[float]] | Mapping[str, Mapping[str, Sequence[float]]],
    section_of: dict[str, str], population: dict[str, int] | None = None, z: float = intervals.Z95,
    links: dict[str, list[Hashable]] | None = None, sampled: float | None = None,
) -> tuple[dict[str, Estimate | None], dict[str, Estimate | None]]:
    """Each score key's estimate with its interval, then the macro averages, from the record
    values of each subset. `keys`: the benchmark's score keys, or section keys alone (each
    averaging SCORE over its subsets, then `overall` over the sections present, RMB's way).
    `values[value][subset]` (or `values[subset]` for SCORE alone): the values of a subset's
    records, in one order for every value. A subset weighs its size in the selection
    (`population`), or its count of records when every record was judged.

    `links[subset]`: each record's linked set (`linked`), so records holding the same
    comparison in two sections count as one cluster. `sampled`: the sizes that weigh the
    subsets are random, drawn by keeping each record with this probability (a `--sample`
    run's counts, or its counts a --precision run sampled from), which the scores' variance
    counts; the macro averages weigh subsets equally whatever their counts."""
    score_keys = [k for k in keys if isinstance(k, ScoreKey)]
    if not score_keys:
        sections = tuple(str(k) for k in keys)
        score_keys = [*(ScoreKey(k, (k,)) for k in sections), ScoreKey(OVERALL, sections)]
    by_value: Mapping[str, Mapping[str, Sequence[float]]] = (
        values if values and isinstance(next(iter(values.values())), Mapping)  # type: ignore[assignment]
        else {SCORE: values})  # type: ignore[dict-item]
    subsets = list(by_value[SCORE])
    size = {path: (population or {}).get(path, len(by_value[SCORE][path])) for path in subsets}
    by_section: dict[str, list[str]] = defaultdict(list)
    for path in subsets:
        by_section[section_of[path]].append(path)

    def combine(key: ScoreKey, macro: bool, mixed: float | None) -> Estimate | None:
        present = [k for k in key.sections if by_section[k]]
        total = sum(size[p] for k in present for p in by_section[k])
        strata = []
        for k in present:
            within = sum(size[p] for p in by_section[k])
            for p in by_section[k]:
                if macro:
                    weight = 1 / len(by_section[k])
                elif key.across == "records":
                    weight = size[p] / total
                else:
                    weight = size[p] / within
                strata.append(Stratum(weight, by_value[key.value][p], group=k, links=(links or {}).get(p),
                                      size=size[p]))
        return intervals.stratified(strata, z, mixed)

    scores = {key.key: combine(key, False, sampled) for key in score_keys if key.estimator is None}
    macros = {key.key: combine(key, True, None) for key in score_keys if key.estimator is None}
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
        for answer in record.answers:
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
    links: Mapping[Record, Hashable] | None = None, sampled: float | None = None, order: str | None = None,
) -> Scored:
    """Scores with intervals, per-section counts, per-subset accuracies, position bias and
    vote agreement. `population`: a sampled run's subset sizes in the selection; `z`: the
    critical value of the scores' intervals (a --precision run's is corrected for stopping);
    `links`: each record's linked set (`linked`); `sampled`: --sample's rate (`estimates`);
    `order`: the --order judged (for chance levels)."""
    keys = benchmark.score_keys()
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    subset_links: dict[str, list[Hashable]] = defaultdict(list)
    subset_of: dict[str, Record] = {}
    counts: dict[str, Counter] = defaultdict(Counter)
    subset_counts: dict[str, Counter] = defaultdict(Counter)
    for rs in record_scores:
        record = rs.record
        for name in {key.value for key in keys} | {SCORE}:
            values[name][record.subset].append(rs.values[name])
        subset_links[record.subset].append(links[record] if links is not None else id(record))
        subset_of[record.subset] = record
        c = counts[record.section]
        c["n"] += 1
        c["wins" if rs.score == 1 else "ties" if rs.score == 0.5 else "losses"] += 1
        for group in rs.judgments:
            c["comparisons"] += 1
            for j in group:
                flags = _flags(j)
                c.update(flags)
                subset_counts[record.subset].update(flags)

    estimated, macros = estimates(keys, values, {p: r.section for p, r in subset_of.items()}, population, z,
                                  subset_links if links is not None else None, sampled)
    scores: dict[str, Estimate | None] = {}
    for key in keys:  # in the benchmark's order, a custom estimator seeing the keys before it
        scores[key.key] = estimated[key.key] if key.estimator is None else key.estimator(record_scores, scores, z)
    subsets = []
    for path in sorted(values[SCORE]):
        accuracy = intervals.mean_of(values[SCORE][path])
        assert accuracy is not None  # a subset is listed for its records
        record = subset_of[path]
        subsets.append(ScenarioScore(
            category_path=path, subset=path,
            set=record.kind, section=record.goal,
            n=len(values[SCORE][path]), accuracy=accuracy.value, interval=accuracy.interval,
            population=population.get(path) if population else None,
            **{k: subset_counts[path][k] for k in ("unparsed", "refused", "failed", "truncated")},
        ))
    sections = {
        section.key: SectionCounts(**{f: counts[section.key][f] for f in SectionCounts.__dataclass_fields__})
        for section in benchmark.sections
        if counts[section.key]["n"]
    }
    return Scored(
        scores={k: _value(e) for k, e in scores.items()},
        macro={k: _value(e) for k, e in macros.items()},
        intervals={k: _interval(e) for k, e in scores.items()},
        macro_intervals={k: _interval(e) for k, e in macros.items()},
        chance=chance_levels(benchmark, records, scalar, population, order),
        sections=sections,
        scenarios=subsets,
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
        if j.verdict in ("A", "B") and isinstance(j.judgment, Pair):
            firsts[j.record.section][j.record].append(float(j.verdict == "A"))
    every = intervals.clustered([c for by_record in firsts.values() for c in by_record.values()])
    sections = {k: intervals.clustered(list(v.values())) for k, v in sorted(firsts.items())}
    agreeing = [
        [float(g[0].outcome == g[1].outcome) for g in rs.judgments
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
        record = j.record
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
