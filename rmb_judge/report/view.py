"""The leaderboard all renderers show, computed once: runs grouped, ranked and numbered, and
every cell, status, note and published row as text.

Only runs that can be compared are ranked together: the leaderboard is cut into groups
(complete runs on the largest selection first, then other selections, then partial runs,
then suspect ones), each with a header, so a run that judged five records, stopped early
or could not parse its judge's answers never sits above complete runs on the full data.
Ranks run on across groups, so "#3" names one run in every table and chart.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import benchmarks
from ..benchmark import Benchmark
from ..errors import RmbJudgeError, UsageError
from ..intervals import half_width
from .load import OVERALL, Run

# Group kinds, in the order they are listed.
RANKED, SELECTION, PARTIAL, SUSPECT = "ranked", "selection", "partial", "suspect"
DASH = "—"


@dataclass(frozen=True)
class Tag:
    """One word of a run's status: complete or partial, SUSPECT, simulated."""

    name: str
    detail: str = ""  # partial: how far it got and why it stopped


@dataclass(frozen=True)
class Row:
    """One run as every table shows it."""

    rank: int
    run: Run
    group: str  # the kind of its group
    scores: list[str]  # one per score column, with the run's chance level when its group has no common one
    status: list[Tag]
    details: list[str]  # one per `Board.detail_titles`
    title: str  # "#rank judge · settings (why not ranked with the first group)": how charts name the run

    @property
    def status_text(self) -> str:
        return " · ".join(f"{tag.name}: {tag.detail}" if tag.detail else tag.name for tag in self.status)


@dataclass(frozen=True)
class Group:
    """Runs that may be ranked against each other, under a header saying why they are apart."""

    kind: str  # RANKED | SELECTION | PARTIAL | SUSPECT
    title: str
    score_titles: list[str]  # the board's, with "(chance)" when each run shows its own chance level
    rows: list[Row]  # ranked
    chance: list[str] | None  # one per score column, when every run of the group has the same levels


@dataclass(frozen=True)
class PublishedTable:
    """The benchmark's published leaderboard, in the board's score columns."""

    title: str
    source: str
    rows: list[tuple[str, str, list[str]]]  # model, type, scores


@dataclass(frozen=True)
class Board:
    title: str
    benchmark: Benchmark
    score_keys: tuple[str, ...]  # the leaderboard's sections, then OVERALL
    score_titles: list[str]
    detail_titles: list[str]  # the columns after the status: counts, cost, bias
    groups: list[Group]
    notes: list[str]
    published: PublishedTable | None  # when asked for and the benchmark has one
    paired: list[str]  # each run against the next in rank order within its group, on the records both scored
    views: list[tuple[str, str]]  # (what, the `rmb-judge view` command that browses its records)

    @property
    def rows(self) -> list[Row]:
        """Every run, in rank order."""
        return [row for group in self.groups for row in group.rows]


# a column shown when some run has it: header, (value, its 95% interval), meaning. Behaviour and
# calibration (length bias, Brier, ECE, AUROC) have their own sections: more columns would not fit
# an 800 px window
Extra = tuple[str, Callable[[Run], tuple[float | None, list[float] | None]], str]
_EXTRAS: tuple[Extra, ...] = (
    ("1st pick", lambda run: (run.first_pick_rate, run.first_pick_interval),
     "how often the answer shown first was preferred"),
    ("Consistency", lambda run: (run.consistency, run.consistency_interval),
     "with --order both, how often both orders gave the same verdict"),
    ("Unanimous", lambda run: (run.unanimous, run.unanimous_interval),
     "with --samples K, how often all K votes agreed (a jury: all its members)"),
)
_COUNTS = ("n", "Failed", "Unparsed", "Refused", "Cost")


def board(runs: list[Run], published: bool = False) -> Board:
    benchmark = _benchmark(runs)
    keys = (*benchmark.leaderboard, OVERALL)
    score_titles = [benchmark.score_title(key) for key in keys]
    extras = [(title, get, meaning) for title, get, meaning in _EXTRAS if any(get(run)[0] is not None for run in runs)]
    groups: list[Group] = []
    first = 1
    for kind, title, members in _grouped(runs):
        ranked = _ranked(members)
        common = _common_chance(ranked, keys)
        rows = [_row(rank, run, kind, keys, common is None, extras) for rank, run in enumerate(ranked, first)]
        chance = None
        if common is not None and any(level is not None for level in common.values()):
            chance = [_fmt(common[key]) for key in keys]
        shown = score_titles if common is not None else [f"{title} (chance)" for title in score_titles]
        groups.append(Group(kind, title, shown, rows, chance))
        first += len(ranked)
    return Board(
        title=f"{benchmark.title} leaderboard",
        benchmark=benchmark,
        score_keys=keys,
        score_titles=score_titles,
        detail_titles=[*_COUNTS, *(title for title, _, _ in extras)],
        groups=groups,
        notes=_notes(runs, groups, extras, own_chance=any(group.score_titles != score_titles for group in groups)),
        published=_published(benchmark, keys) if published else None,
        paired=[line for group in groups for line in _paired(group.rows)],
        views=_views(groups),
    )


def boards(runs: list[Run], published: bool = False) -> list[Board]:
    """A leaderboard per benchmark, in the order their runs were first named."""
    by_benchmark: dict[str, list[Run]] = {}
    for run in runs:
        by_benchmark.setdefault(run.benchmark.name, []).append(run)
    return [board(members, published) for members in by_benchmark.values()] or [board([], published)]


@dataclass(frozen=True)
class Across:
    """Judges that ran on several benchmarks: a row per judge, a column per benchmark."""

    titles: list[str]  # the benchmarks'
    rows: list[tuple[str, list[str]]]  # judge, then its overall score on each benchmark (DASH: not run)
    note: str


def across(shown: list[Board]) -> Across | None:
    """Each judge's overall score on each benchmark, from its highest-ranked run there; None for one benchmark."""
    if len(shown) < 2:
        return None
    judges = list(dict.fromkeys(row.run.judge for each in shown for row in each.rows))
    rows = []
    for judge in judges:
        cells = []
        for each in shown:
            row = next((row for row in each.rows if row.run.judge == judge), None)
            cells.append(DASH if row is None else
                         f"{with_interval(row.run.scores[OVERALL], row.run.intervals[OVERALL])} (#{row.rank})")
        rows.append((judge, cells))
    note = ("Each cell: the judge's overall score on that benchmark, from its highest-ranked run there "
            "(in brackets its rank in that benchmark's leaderboard below, with its selection and status).")
    return Across([each.benchmark.title for each in shown], rows, note)


def view_command(runs: list[Run]) -> str:
    """The command that browses these runs' records (and where they disagree), as typed in a shell."""
    return " ".join(["rmb-judge", "view", *(shlex.quote(str(run.path)) for run in runs)])


def _views(groups: list[Group]) -> list[tuple[str, str]]:
    """A `view` command per run, then one per group of several runs (their disagreements)."""
    views = [(f"#{row.rank} {row.run.judge} · {row.run.label}", view_command([row.run]))
             for group in groups for row in group.rows]
    for group in groups:
        if len(group.rows) > 1:
            ranks = ", ".join(f"#{row.rank}" for row in group.rows)
            views.append((f"{ranks} side by side, and where they disagree", view_command([r.run for r in group.rows])))
    return views


def _paired(rows: list[Row]) -> list[str]:
    """`compare` of each run with the next one in rank order where they share scored records:
    is #1 really ahead of #2? Only runs of one group are paired (runs on other selections, or
    partial or suspect ones, are not ranked against each other); runs whose samples cannot be
    read are left out."""
    from ..compare import RunScores, compare, read_run

    read: dict[int, RunScores | None] = {}

    def scores(row: Row) -> RunScores | None:
        if row.rank not in read:
            try:
                read[row.rank] = read_run(row.run.path)
            except RmbJudgeError:
                read[row.rank] = None
        return read[row.rank]

    said = []
    for before, after in itertools.pairwise(rows):
        a, b = scores(before), scores(after)
        if a is None or b is None:
            continue
        result = compare(a, b)
        if result.overall is not None:
            differs = f" (differ in {'; '.join(result.differs)})" if result.differs else ""
            result.a, result.b = f"#{before.rank}", f"#{after.rank}"
            said.append(f"#{before.rank} vs #{after.rank} on the {result.shared:,} records both scored"
                        f"{differs}: {result.sentence()}.")
    return said


def _benchmark(runs: list[Run]) -> Benchmark:
    """The one benchmark of all runs (the default one when there are none)."""
    if len({run.benchmark.name for run in runs}) > 1:
        listed = ", ".join(f"{run.path} ({run.benchmark.name})" for run in runs)
        raise UsageError(f"runs of different benchmarks cannot share one leaderboard: {listed}")
    return runs[0].benchmark if runs else benchmarks.get()


def _ranked(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda run: (run.scores[OVERALL] is None, -(run.scores[OVERALL] or 0.0)))


def _grouped(runs: list[Run]) -> list[tuple[str, str, list[Run]]]:
    """(kind, title, runs) in listing order.

    Complete, not suspect runs are grouped by selection (equal selection key, selected record
    count and, when every run's manifest lists them, data file hashes); the group with the most
    records (then the most runs, then the first named) is ranked first, the other selections
    follow by size. Partial runs come next and suspect ones (partial or not) last.
    """
    with_data = all(run.data_digest for run in runs)
    selections: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        if run.complete and not run.suspect:
            key = (run.selection, run.records, run.data_digest if with_data else None)
            selections.setdefault(key, []).append(run)
    several_data = with_data and len({run.data_digest for run in runs}) > 1
    groups = []
    for index, members in enumerate(sorted(selections.values(), key=lambda g: (-g[0].records, -len(g)))):
        first = members[0]
        what = f"{first.selection_text} · {first.records:,} records"
        if several_data:
            what += f" · data files {str(first.data_digest)[:8]}"
        if index == 0:
            groups.append((RANKED, f"Complete runs · {what}", members))
        else:
            groups.append((SELECTION, f"Another selection · {what} · not ranked against the runs above", members))
    partial = [run for run in runs if not run.complete and not run.suspect]
    if partial:
        title = "Partial runs · stopped early, scored on the records they finished · not ranked against complete runs"
        groups.append((PARTIAL, title, partial))
    suspect = [run for run in runs if run.suspect]
    if suspect:
        title = "SUSPECT runs · too many comparisons unparsed or failed (see the warnings below) · not ranked"
        groups.append((SUSPECT, title, suspect))
    return groups


def _common_chance(runs: list[Run], keys: tuple[str, ...]) -> dict[str, float | None] | None:
    """The section chance levels all runs share, or None when their selections give different ones.

    The overall level also depends on which sections a run covered, so runs with the same
    section levels may still differ there: it is shown only where they agree.
    """
    common: dict[str, float | None] = {}
    for key in keys:
        levels = {round(level, 4) for run in runs if (level := run.chance_for(key)) is not None}
        if len(levels) > 1 and all(key in run.chance for run in runs):  # a section's; a key over them may differ
            return None
        common[key] = levels.pop() if len(levels) == 1 else None
    return common


def _row(rank: int, run: Run, kind: str, keys: tuple[str, ...], per_run_chance: bool, extras: list[Extra]) -> Row:
    scores = [
        with_interval(run.scores[key], run.intervals[key])
        + (f" ({_fmt(run.chance_for(key))})" if per_run_chance else "")
        for key in keys
    ]
    details = [
        str(run.n), str(run.failed), str(run.unparsed), str(run.refused),
        _fmt_cost(run.cost_usd) + ("*" if run.cost_is_spend else ""),
        *(with_interval(*get(run)) for _, get, _ in extras),
    ]
    status = status_tags(run)
    marks = ["other selection"] * (kind == SELECTION) + [tag.name for tag in status if tag.name != "complete"]
    title = f"#{rank} {run.judge} · {run.label}" + "".join(f" ({mark})" for mark in marks)
    return Row(rank, run, kind, scores, status, details, title)


def status_tags(run: Run) -> list[Tag]:
    """Complete or partial (how far it got and why it stopped), SUSPECT, simulated."""
    if run.complete:
        tags = [Tag("complete")]
    else:
        detail = f"{run.comparisons[0]:,} of {run.comparisons[1]:,} comparisons" if run.comparisons else ""
        if run.stopped_reason:
            detail += (", " if detail else "") + f"stopped: {run.stopped_reason}"
        tags = [Tag("partial", detail)]
    if run.suspect:
        tags.append(Tag("SUSPECT"))
    if run.simulated:
        tags.append(Tag("simulated"))
    if run.jury:
        tags.append(Tag("jury", f"{len(run.jury)} judges"))
    return tags


def _notes(runs: list[Run], groups: list[Group], extras: list[Extra], own_chance: bool) -> list[str]:
    """What the columns mean where it is not obvious, and every run's warnings."""
    notes = [f"{title}: {meaning}." for title, _, meaning in extras]
    if any(value is not None for run in runs for value in run.intervals.values()):
        notes.append("±: how far the 95% interval reaches from the score, on its farther side "
                     "(README: \"How sure is a score?\").")
    if own_chance:
        notes.append("Runs selected different records, so each score shows its own chance level in brackets.")
    if any(run.simulated for run in runs):
        notes.append("simulated: the built-in mock judge, for smoke runs; its scores say nothing about a model.")
    if any(run.cache_hits for run in runs):
        notes.append("Cost: what the answers behind the scores cost, whichever run paid for them.")
    if any(run.cost_is_spend for run in runs):
        notes.append(
            "*: an older summary that records only what its own invocation spent; it reused "
            "cached answers, so the answers behind its scores may have cost more."
        )
    for group in groups:
        for row in group.rows:
            run = row.run
            warnings = list(run.warnings)
            if run.suspect and not warnings:
                warnings = ["more comparisons ended unparsed or failed than --max-unparsed allows."]
            if warnings:
                mark = "SUSPECT: " if run.suspect else "warning: "
                notes.append(f"#{row.rank} {run.judge} · {run.label}: {mark}" + " ".join(warnings))
    return notes


def _published(benchmark: Benchmark, keys: tuple[str, ...]) -> PublishedTable | None:
    table = benchmark.published()
    if table is None:
        return None
    rows = [(row["model"], row["type"], [_fmt(row.get(key)) for key in keys]) for row in table.rows]
    return PublishedTable(table.title, table.source, rows)


def _fmt(value: float | None, digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def with_interval(value: float | None, interval: list[float] | None) -> str:
    """`0.738 ±0.011`: the value and how far its 95% interval reaches on its farther side (the
    interval need not be symmetric; the exact bounds are in summary.json and the HTML tooltips)."""
    if value is None or not interval:
        return _fmt(value)
    return f"{value:.3f} ±{half_width(value, interval):.3f}"


def _fmt_cost(value: float | None) -> str:
    if value is None:
        return DASH
    if 0 < value < 0.0001:
        return "<$0.0001"  # a real cost, however small, never reads as free
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"
