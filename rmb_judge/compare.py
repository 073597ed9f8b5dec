"""`rmb-judge compare RUN_A RUN_B`: is one judge really ahead of another?

Two runs are compared on the records both scored, matched by scenario and uid, and only in
scenarios whose data file has the same SHA-256 in both manifests (the same uid in an edited
file may be another prompt). Each run's score of a record is `record_correct` in its
samples.jsonl, exactly what its summary averaged.

The difference of each section score and of `overall` is the weighted mean of the per-record
differences A - B, stratified by scenario with the weights the runs' own scores use (a
scenario weighs its records in the selection; a --precision run's records stand for their
scenario whatever either run's --seed). Paired, because both judges saw the same prompts: the
prompt-to-prompt spread, most of each run's own uncertainty, cancels. Records either run found
linked (`link` in samples.jsonl: the same comparison in two sections) count together. Its 95%
interval is `intervals.paired`'s (the scores' interval on the scale (d + 1) / 2, so it never
has zero width); the p-value is the sign-flip test's (exact when it can be enumerated,
McNemar's test when the weights are equal), which assumes nothing about the shape of the
differences. A difference is called significant only when both say so (p < 0.05 and the
interval excludes 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import agreement, benchmarks
from .benchmark import OVERALL, SCORE
from .errors import DataError, UsageError
from .intervals import Difference, Stratum, paired
from .measures import Gap, JudgeAgreement
from .summary import Settings, Summary, data_files, read_samples, read_summary

_Item = TypeVar("_Item", bound=Hashable)
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class RunScores:
    """What `compare` needs of one run folder."""

    path: Path
    summary: Summary
    records: dict[tuple[str, str], float]  # (category_path, uid) -> the record's score
    files: dict[str, str]  # data file -> SHA-256, from manifest.json
    links: dict[tuple[str, str], int] | None = None  # (category_path, uid) -> its linked set in this run

    @property
    def name(self) -> str:
        return f"{self.summary.judge} ({self.path.name})"


@dataclass(frozen=True)
class ScoreDifference:
    key: str  # a section key or "overall"
    title: str
    a: float  # each run's score on the shared records
    b: float
    difference: float  # a - b
    low: float
    high: float
    p_value: float
    records: int
    exact: bool  # the p-value by enumeration

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE and (self.low > 0 or self.high < 0)


@dataclass
class Comparison:
    a: str  # each run, as named in sentences
    b: str
    shared: int  # records both runs scored (on equal data files)
    only_a: int
    only_b: int
    differs: list[str] = field(default_factory=list)  # settings that differ, in words
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    scores: list[ScoreDifference] = field(default_factory=list)  # sections, then overall
    # with `measures`: how often the two judges agree, and their verdict probabilities' Brier,
    # ECE and AUROC, A - B, on the comparisons both have them for (agreement.py)
    agreement: JudgeAgreement | None = None
    probabilities: dict[str, Gap] = field(default_factory=dict)

    @property
    def overall(self) -> ScoreDifference | None:
        return next((s for s in self.scores if s.key == OVERALL), None)

    def sentence(self, score: ScoreDifference | None = None) -> str:
        """The verdict in words, on `overall` unless another score is given."""
        score = score or self.overall
        if score is None:
            return f"{self.a} and {self.b} share no scored records: nothing to compare"
        points = f"95% CI {100 * score.low:+.1f} to {100 * score.high:+.1f} points, {_p_is(score.p_value)}"
        if not score.significant:
            return f"no significant difference between {self.a} and {self.b} ({points})"
        ahead, behind = (self.a, self.b) if score.difference > 0 else (self.b, self.a)
        low, high = sorted(abs(100 * x) for x in (score.low, score.high))
        return (f"{ahead} is ahead of {behind} by {abs(100 * score.difference):.1f} points "
                f"(95% CI {low:.1f} to {high:.1f}, {_p_is(score.p_value)})")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sentence"] = self.sentence()
        for item, score in zip(data["scores"], self.scores, strict=True):
            item["significant"] = score.significant
            item["sentence"] = self.sentence(score)
        return data


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _p_is(value: float) -> str:
    """The p-value in a sentence: "p = 0.012", or "p < 0.001"."""
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def read_run(folder: Path) -> RunScores:
    """A run folder's summary, per-record scores and data file hashes; one clear error if unusable:
    a damaged line, two lines for one presentation, or lines of one record that disagree on its
    score."""
    summary = read_summary(folder)
    try:
        files = data_files(folder)
    except FileNotFoundError:
        raise DataError(f"{folder}: no manifest.json (compare pairs records only where both runs read the same "
                        "data file); rerun the same command with --offline to rewrite the folder from the cache"
                        ) from None
    samples = folder / "samples.jsonl"
    benchmark = benchmarks.get(summary.benchmark)
    records: dict[tuple[str, str], tuple[float | None, int]] = {}  # each record's score, and its first line
    links: dict[tuple[str, str], int] = {}
    shown: dict[tuple[str, str, int | None, str | None], int] = {}  # each presentation's line
    try:
        for number, line in read_samples(folder):
            presentation = (line.name, line.uid, line.position, line.order)
            if presentation in shown:
                raise DataError(f"{samples}, line {number}: a second line for uid {line.uid} of {line.name} "
                                f"({benchmark.judgment_field} {line.position}, order {line.order}); line "
                                f"{shown[presentation]} has it")
            shown[presentation] = number
            score, first = records.setdefault((line.name, line.uid), (line.record_correct, number))
            if line.link is not None:
                links[line.name, line.uid] = line.link
            if score != line.record_correct:
                raise DataError(f"{samples}, line {number}: record_correct {line.record_correct} for uid {line.uid} "
                                f"of {line.name}, {score} on line {first}")
    except FileNotFoundError:
        raise UsageError(f"{folder}: no samples.jsonl in this folder (compare needs the per-record scores)") from None
    except OSError as error:
        raise DataError(f"{samples}: cannot read ({error.strerror or error})") from None
    scored = {key: score for key, (score, _) in records.items() if score is not None}
    links = {key: link for key, link in links.items() if key in scored}
    return RunScores(folder, summary, scored, files, links if len(links) == len(scored) else None)


def compare(a: RunScores, b: RunScores, measures: bool = False) -> Comparison:
    """The paired difference A - B of every score on the records both runs scored; with
    `measures`, the judges' agreement and probability measures too (reads their samples again)."""
    if a.summary.benchmark != b.summary.benchmark:
        raise UsageError(f"{a.path} and {b.path} are runs of different benchmarks "
                         f"({a.summary.benchmark}, {b.summary.benchmark})")
    benchmark = benchmarks.get(a.summary.benchmark)
    names = (a.name, b.name) if a.name != b.name else (f"A ({a.path})", f"B ({b.path})")
    result = Comparison(names[0], names[1], 0, 0, 0, differs=_differences(a, b))
    scenario = {s.category_path: s for run in (b, a) for s in run.summary.scenarios}
    sections_by_name = {(s.kind, s.goal): s.key for s in benchmark.sections}
    # an older summary's scenarios may not name their kind and goal: their records cannot be placed
    section_of = {path: key for path, s in scenario.items() if (key := sections_by_name.get((s.set, s.section)))}
    unequal = {path for path in section_of
               if any(a.files.get(f) != b.files.get(f) for f in benchmark.subset_files(path, a.files | b.files))}
    if unequal:
        result.notes.append(f"{len(unequal)} scenarios left out: their data files differ between the runs "
                            f"({', '.join(sorted(unequal)[:3])}{', ...' if len(unequal) > 3 else ''})")
    shared = sorted(k for k in a.records.keys() & b.records.keys() if k[0] not in unequal and k[0] in section_of)
    result.shared = len(shared)
    if measures:
        result.agreement, result.probabilities = agreement.between(a.path, b.path, set(shared))
    result.only_a = len(a.records) - len(shared)
    result.only_b = len(b.records) - len(shared)
    by_scenario: dict[str, list[tuple[float, float]]] = defaultdict(list)
    uids: dict[str, list[str]] = defaultdict(list)
    for record in shared:
        by_scenario[record[0]].append((a.records[record], b.records[record]))
        uids[record[0]].append(record[1])
    # on one selection a scenario weighs its records in it (a --precision run judged a random sample
    # of it, whatever either run's seed); on different ones the shared records are no random sample
    # of anything: they weigh as they are
    same = _selection(a.summary.settings) == _selection(b.summary.settings)
    population: dict[str, int] = defaultdict(int)  # from either run, so A - B is -(B - A)
    for run in (a, b):
        for s in run.summary.scenarios:
            population[s.category_path] = max(population[s.category_path], s.population or s.n)
    size = {path: max(population[path], len(pairs)) if same else len(pairs) for path, pairs in by_scenario.items()}
    link = _linked(shared, a, b)
    if link is None:
        result.notes.append("a samples.jsonl lists no linked records (written by an older rmb-judge): records "
                            "holding the same comparison in two sections count as independent, so the "
                            "interval of overall may be too narrow")
    strata: dict[str, list[tuple[float, str]]] = {}
    of_a_set = [k.key for k in benchmark.score_keys() if k.estimator is not None and k.value == SCORE]
    if of_a_set:
        result.notes.append(f"{', '.join(of_a_set)}: a statistic of the whole set, not a mean of record scores; "
                            "compared here as the mean of its records' own scores")
    for score_key in benchmark.score_keys():
        if score_key.value != SCORE:
            continue  # compared on record scores alone
        present = [k for k in score_key.sections if any(section_of[p] == k for p in by_scenario)]
        everything = sum(size[p] for p in by_scenario if section_of[p] in present)
        parts = []
        for section in present:
            paths = [p for p in by_scenario if section_of[p] == section]
            if score_key.across == "records":
                parts += [(size[p] / everything, p) for p in paths]
            else:
                total = sum(size[p] for p in paths)
                parts += [(size[p] / total / len(present), p) for p in paths]
        if parts:
            strata[score_key.key] = parts
    for key, parts in strata.items():
        difference = paired([Stratum(w, [x - y for x, y in by_scenario[p]], group=section_of[p],
                                     links=None if link is None else [link[(p, uid)] for uid in uids[p]])
                             for w, p in parts])
        if difference:
            result.scores.append(_score(key, benchmark.score_title(key), [(w, by_scenario[p]) for w, p in parts],
                                        difference))
    return result


def _linked(shared: list[tuple[str, str]], a: RunScores, b: RunScores) -> dict[tuple[str, str], int] | None:
    """The shared records' linked sets: records either run found linked (it wrote its own sets
    over its own selection) are joined. None when a run did not write them."""
    if a.links is None or b.links is None:
        return None
    return joined(shared, [a.links, b.links])


def joined(items: Sequence[_Item], labelings: Iterable[Mapping[_Item, Hashable]]) -> dict[_Item, int]:
    """Each item's set when items sharing a label in any of `labelings` (each labels every
    item) are joined, and so is anything joined to them."""
    parent = list(range(len(items)))

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for labels in labelings:
        first: dict[Hashable, int] = {}
        for number, item in enumerate(items):
            other = first.setdefault(labels[item], number)
            parent[root(number)] = root(other)
    return {item: root(number) for number, item in enumerate(items)}


def _selection(settings: Settings) -> tuple:
    """What decides which records a run selects: --seed only through --sample (a --precision
    run's seeded sample is a random sample of the same selection, whatever its seed)."""
    return (settings.sets, settings.sections, settings.scenarios, settings.limit, settings.sample,
            settings.seed if settings.sample is not None else None)


def _score(key: str, title: str, parts: list[tuple[float, list[tuple[float, float]]]],
           difference: Difference) -> ScoreDifference:
    total = sum(w for w, _ in parts)

    def mean(side: int) -> float:
        return sum(w / total * sum(pair[side] for pair in pairs) / len(pairs) for w, pairs in parts)

    return ScoreDifference(key, title, mean(0), mean(1), difference.value, difference.low, difference.high,
                           difference.p_value, difference.records, difference.exact)


_SELECTION = ("sets", "sections", "scenarios", "limit", "sample", "seed")
_COMPARED = ("template", "template_sha256", "order", "samples", "temperature", "max_tokens", "verdict_probs", "sets",
             "sections", "scenarios", "limit", "sample", "seed", "precision", "endpoints")


def _differences(a: RunScores, b: RunScores) -> list[str]:
    """What differs between the runs, in words (the judge first)."""
    said = []
    if a.summary.judge != b.summary.judge:
        said.append(f"judge: {a.summary.judge} vs {b.summary.judge}")
    jury = a.summary.jury or b.summary.jury
    for name in _COMPARED:
        if name == "endpoints" and said or jury and name not in _SELECTION:
            continue  # another judge answers elsewhere anyway; a jury is asked nothing
        x, y = getattr(a.summary.settings, name), getattr(b.summary.settings, name)
        if isinstance(x, list) and isinstance(y, list) and sorted(map(str, x)) == sorted(map(str, y)):
            continue  # the same sets, sections, scenario globs or endpoints, given in another order
        if x != y and not (name == "template_sha256" and a.summary.settings.template != b.summary.settings.template):
            said.append(f"{name}: {_word(x)} vs {_word(y)}" if name != "template_sha256"
                        else "template: same name, different text")
    return said


def _word(value: Any) -> str:
    if value is None or value == []:
        return "default"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def render(comparison: Comparison) -> str:
    """The comparison as plain text: what was matched, a row per score, the sentence."""
    lines = [f"A = {comparison.a}", f"B = {comparison.b}",
             f"{comparison.shared:,} records scored by both runs (only A: {comparison.only_a:,}, "
             f"only B: {comparison.only_b:,})"]
    lines += [f"differs: {item}" for item in comparison.differs] or ["same judge, template and selection"]
    lines += [f"note: {note}" for note in comparison.notes]
    if comparison.scores:
        header = f"{'score':<12} {'A':>6} {'B':>6} {'A - B':>7}  {'95% CI':>15}  {'p':>7}  {'records':>7}"
        lines += ["", header]
        for s in comparison.scores:
            ci = f"{s.low:+.3f} to {s.high:+.3f}"
            mark = " *" if s.significant else ""
            lines.append(f"{s.title:<12} {s.a:6.3f} {s.b:6.3f} {s.difference:+7.3f}  {ci:>15}  "
                         f"{_p(s.p_value):>7}  {s.records:>7,}{mark}")
        lines.append("(* significant at 5%: p < 0.05 and the interval excludes 0)")
    lines += ["", comparison.sentence() + "."]
    lines += agreement.render(comparison.agreement, comparison.probabilities)
    return "\n".join(lines)
