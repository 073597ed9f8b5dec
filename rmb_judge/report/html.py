"""The leaderboard as one self-contained HTML file: inline CSS and SVG, no scripts, fonts or
network, so it can be attached to an issue or mailed and still render the same anywhere.

Jinja2 templates (`templates/`) write it with autoescaping on everywhere: judge names, folder
names, settings, scenario paths and warnings are the runs' own text, never markup. Python lays
the charts out (coordinates, colours, and tooltips as plain text); the templates only write
the elements.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import Any

import jinja2

from .behaviour import reliability, sections
from .load import Run
from .view import Board, board

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
ABSENT = "#e5e7eb"  # a heatmap cell the run did not judge
KIND_TITLES = {"pairwise": "Pairwise", "bon": "Best-of-N"}  # the record kinds of `benchmark.Section`
NO_SECTION = "Section not recorded"  # scenarios whose summary entry names no section of the benchmark


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("rmb_judge.report", "templates"),
        autoescape=True,  # in every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["num"] = lambda value, digits=1: f"{value:.{digits}f}"
    return environment


def render_html(runs: list[Run], published: bool = False) -> str:
    shown = board(runs, published)
    slots = _slots(shown)
    faded = {row.rank for group in shown.groups[1:] for row in group.rows}
    return _environment().get_template("report.html.j2").render(
        board=shown,
        legend=[(_colour(row.rank), row.title) for row in shown.rows],
        bars=_bars(shown, slots, faded),
        heatmap=_heatmap(shown, slots),
        reliability=reliability(shown, {row.rank: _colour(row.rank) for row in shown.rows}),
        behaviour=sections(shown),
    )


def _colour(rank: int) -> str:
    return PALETTE[(rank - 1) % len(PALETTE)]


def _slots(shown: Board) -> dict[int, float]:
    """Each run's place along a chart (by rank), in run widths: groups are set apart by a gap."""
    return {row.rank: row.rank - 1 + 0.6 * number for number, group in enumerate(shown.groups) for row in group.rows}


# ---------------------------------------------------------------- bar chart


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Bar:
    """One run's score in one section (or overall), with its chance level."""

    rank: int
    key: str
    group: str
    x: float
    width: float
    top: float  # y of the score; of zero when there is none
    height: float
    score: float | None
    interval_y: tuple[float, float] | None  # the 95% interval's top and bottom: an error bar
    chance: float | None
    chance_y: float
    colour: str
    faded: bool  # a run not ranked with the first group: drawn paler
    tip: str

    @property
    def middle(self) -> float:
        return self.x + self.width / 2

    @property
    def label_y(self) -> float:
        """Where the printed score sits: above the bar and its error bar."""
        return min(self.top, self.interval_y[0]) if self.interval_y else self.top


@dataclass(frozen=True)
class Bars:
    width: float
    height: float
    left: float  # where the plot starts (tick labels to its left)
    right: float  # where the grid lines end
    ticks: list[Label]
    sections: list[tuple[Label, list[Bar]]]  # a title under each section's bars
    values: bool  # bars wide enough to print their score above them


def _bars(shown: Board, slots: dict[int, float], faded: set[int]) -> Bars:
    """Grouped bars: one group per section plus overall, one bar per run, a dashed line at chance;
    runs of later leaderboard groups stand apart and paler."""
    left, top, plot_h, bottom = 44, 16, 260, 30
    rows = shown.rows
    bar_w = max(8.0, min(34.0, 150 / max(len(rows), 1)))
    span = max(slots.values(), default=0.0) + 1
    group_w = bar_w * span + 28
    width = left + group_w * len(shown.score_keys) + 10

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    sections = []
    for number, (key, title) in enumerate(zip(shown.score_keys, shown.score_titles, strict=True)):
        x0 = left + number * group_w + 14
        bars = []
        for row in rows:
            run = row.run
            score, level, interval = run.scores[key], run.chance_for(key), run.intervals[key]
            tip = f"{row.title}: {title} {score:.3f}" if score is not None else ""
            if score is not None and interval:
                tip += f" (95% interval {interval[0]:.3f} to {interval[1]:.3f})"
            if score is not None and level is not None:
                tip += f" (chance {level:.3f})"
            bars.append(Bar(
                rank=row.rank, key=key, group=row.group, x=x0 + slots[row.rank] * bar_w,
                width=bar_w - 2, top=y(score or 0.0), height=plot_h * (score or 0.0), score=score,
                interval_y=(y(interval[1]), y(interval[0])) if score is not None and interval else None, chance=level,
                chance_y=y(level or 0.0), colour=_colour(row.rank), faded=row.rank in faded, tip=tip,
            ))
        sections.append((Label(x0 + bar_w * span / 2, top + plot_h + 18, title), bars))
    ticks = [Label(left - 6, y(tick), f"{tick:g}") for tick in (0, 0.25, 0.5, 0.75, 1)]
    return Bars(width, top + plot_h + bottom, left, width - 10, ticks, sections, values=bar_w >= 24)


# ---------------------------------------------------------------- heatmap


@dataclass(frozen=True)
class Cell:
    rank: int
    path: str
    x: float
    accuracy: float | None
    fill: str
    ink: str  # of the value printed on the cell
    tip: str


@dataclass(frozen=True)
class Line:
    """One scenario: its label and a cell per run."""

    label: str
    y: float
    cells: list[Cell]


@dataclass(frozen=True)
class Block:
    """The scenarios of one section, under its title."""

    title: str
    y: float
    lines: list[Line]


@dataclass(frozen=True)
class Break:
    """A dashed line between the runs of one leaderboard group and the next."""

    rank: int  # of the first run after it
    x: float
    top: float
    bottom: float


@dataclass(frozen=True)
class Heatmap:
    width: float
    height: float
    cell_w: int
    cell_h: int
    label_x: float  # where scenario labels end
    runs: list[Label]  # rotated run titles
    breaks: list[Break]
    blocks: list[Block]


def _heatmap(shown: Board, slots: dict[int, float]) -> Heatmap | None:
    """Rows are scenarios grouped by section, columns are runs; grey cells were not run.
    A dashed line and a gap part the runs of one leaderboard group from the next."""
    rows = shown.rows
    scenarios = {(row.rank, s.category_path): s for row in rows for s in row.run.scenarios}
    titles: list[tuple[str | None, str]] = [
        (s.key, f"{KIND_TITLES[s.kind]} · {s.goal.capitalize()}") for s in shown.benchmark.sections
    ]
    sections = []
    for key, title in [*titles, (None, NO_SECTION)]:
        labels = {s.category_path: s.label for row in rows for s in row.run.scenarios if s.section == key}
        if labels:
            sections.append((title, sorted(labels.items(), key=lambda item: _natural(item[0]))))
    if not sections:
        return None

    cell_w, cell_h, section_h = 60, 20, 26
    label_w = 16 + 6.6 * max(len(label) for _, lines in sections for _, label in lines)
    title_w = 6.0 * max(len(row.title) for row in rows)  # run titles are rotated 30 degrees
    header_h = 20 + title_w / 2
    span = max(slots.values()) + 1
    width = max(label_w + cell_w * span, label_w + cell_w * (span - 0.5) + title_w * 0.87 + 10)
    height = header_h + sum(section_h + cell_h * len(lines) for _, lines in sections) + 8

    run_titles = [Label(label_w + cell_w * slots[row.rank] + cell_w / 2, header_h - 6, row.title) for row in rows]
    breaks = [
        Break(after.rank, label_w + cell_w * (slots[after.rank] - 0.3), header_h, height - 4)
        for before, after in itertools.pairwise(rows)
        if slots[after.rank] - slots[before.rank] > 1
    ]
    blocks, y = [], header_h
    for title, labelled in sections:
        block_y, lines = y, []
        y += section_h
        for path, label in labelled:
            cells = []
            for row in rows:
                scenario = scenarios.get((row.rank, path))
                accuracy = scenario.accuracy if scenario else None
                fill = ABSENT if accuracy is None else heat_colour(accuracy)
                tip = f"{path} · {row.title}: " + (
                    "not run" if scenario is None or accuracy is None else f"{accuracy:.3f} (n={scenario.n})"
                ) + (f", 95% interval {scenario.interval[0]:.3f} to {scenario.interval[1]:.3f}"
                     if scenario and accuracy is not None and scenario.interval else "")
                cells.append(Cell(row.rank, path, label_w + cell_w * slots[row.rank], accuracy, fill, _ink(fill), tip))
            lines.append(Line(label, y, cells))
            y += cell_h
        blocks.append(Block(title, block_y, lines))
    return Heatmap(width, height, cell_w, cell_h, label_w - 8, run_titles, breaks, blocks)


_HEAT_STOPS = ((0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80)))


def heat_colour(accuracy: float) -> str:
    """Red (0) through yellow (0.5) to green (1); the hue rises monotonically with accuracy."""
    value = min(max(accuracy, 0.0), 1.0)
    (low, c0), (high, c1) = _HEAT_STOPS[:2] if value <= _HEAT_STOPS[1][0] else _HEAT_STOPS[1:]
    t = (value - low) / (high - low)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1, strict=True))


def _ink(fill: str) -> str:
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#111827" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def _natural(text: str) -> list[Any]:
    """Sort S2 before S10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]
