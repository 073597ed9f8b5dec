"""The leaderboard as one self-contained HTML file: inline CSS and SVG, no scripts, fonts or
network, so it can be attached to an issue or mailed and still render the same anywhere. It
fits a narrow window: wide tables and the heatmap scroll inside their own box, the other
charts scale down; each chart is also a standalone SVG file to download (a data: link).

Jinja2 templates (`templates/`) write it with autoescaping on everywhere: judge names, folder
names, settings, scenario paths and warnings are the runs' own text, never markup. Python lays
the charts out (coordinates, colours, and tooltips as plain text); the templates only write
the elements. Each chart's SVG is rendered by its own (autoescaping) template first, then
placed in the page as is.
"""

from __future__ import annotations

import base64
import functools
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import jinja2
from markupsafe import Markup

from .behaviour import Forecaster, reliability, sections
from .legend import Key, legend
from .legend import height as legend_height
from .load import OVERALL, Run
from .view import RANKED, SELECTION, Board, Group, Row, across, boards

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
ABSENT = "#e5e7eb"  # a heatmap cell the run did not judge
FEW = 10  # a heatmap cell resting on fewer records than this is drawn paler, the fewer the paler
FONT = "system-ui, -apple-system, Segoe UI, sans-serif"  # the charts' own, so a downloaded SVG looks the same
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
    environment.globals.update(font=FONT, few=FEW, legend_height=legend_height)
    return environment


@dataclass(frozen=True)
class Chart:
    """One chart: its SVG, placed in the page and offered as a file."""

    name: str  # the downloaded file's, without .svg
    svg: Markup
    standalone: Markup | None = None  # the file, where it differs: its legend inside (the page has an HTML one)

    @property
    def download(self) -> str:
        svg = self.standalone or self.svg
        return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class Page:
    """One benchmark's part of the report."""

    board: Board
    legend: list[tuple[str, str]]  # (colour, title) of each run, above the charts that share it
    bars: Chart
    cost: Chart | None
    unpriced: list[str]  # runs the cost chart leaves out
    cost_group: str  # the title of the group of runs the cost chart compares
    heatmap: Chart | None
    reliability: Chart | None  # runs with --verdict-probs
    behaviour: list[tuple[str, list[str]]]


def render_html(runs: list[Run], published: bool = False) -> str:
    shown = boards(runs, published)
    title = shown[0].title if len(shown) == 1 else "Leaderboards: " + ", ".join(b.benchmark.title for b in shown)
    return _environment().get_template("report.html.j2").render(
        title=title, across=across(shown), pages=[_page(each) for each in shown],
    )


def _page(shown: Board) -> Page:
    slots = _slots(shown)
    faded = {row.rank for group in shown.groups[1:] for row in group.rows}
    name = shown.benchmark.name
    heatmap = _heatmap(shown, slots)
    cost, unpriced = _cost(shown)
    curves = reliability([Forecaster(row.rank, row.title, _colour(row.rank), row.run.calibration)
                          for row in shown.rows])
    return Page(
        board=shown,
        legend=[(_colour(row.rank), row.title) for row in shown.rows],
        bars=_chart(f"{name}-scores-by-section", "bars.svg.j2", page_legend=True, bars=_bars(shown, slots, faded)),
        cost=_chart(f"{name}-cost-vs-accuracy", "cost.svg.j2", page_legend=True, cost=cost) if cost else None,
        unpriced=unpriced,
        cost_group=group.title if (group := _cost_group(shown)) else "",
        heatmap=_chart(f"{name}-accuracy-by-scenario", "heatmap.svg.j2", heatmap=heatmap) if heatmap else None,
        reliability=_chart(f"{name}-calibration", "reliability.svg.j2", reliability=curves) if curves else None,
        behaviour=sections(shown),
    )


def reliability_svg(runs: list[Forecaster]) -> str | None:
    """The reliability diagram of these runs as a standalone SVG file (None: none has probabilities)."""
    curves = reliability(runs)
    return None if curves is None else str(_chart("calibration", "reliability.svg.j2", reliability=curves).svg)


def _chart(name: str, template: str, page_legend: bool = False, **layout: Any) -> Chart:
    """The chart's SVG (autoescaped); with `page_legend` the page shows it without its legend,
    which the page gives in HTML, legible however far the chart is scaled down."""
    def render(inline_legend: bool) -> Markup:
        return Markup(_environment().get_template(template).render(inline_legend=inline_legend, **layout).strip())

    if page_legend:
        return Chart(name, render(False), render(True))
    return Chart(name, render(True))


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
    tip: str = ""  # the whole text, where `text` is shortened


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
    legend: list[Key]


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
    entries = [(_colour(row.rank), row.title, "swatch") for row in rows] + [("#111827", "chance level", "dashed")]
    keys = legend(entries, left, top + plot_h + bottom, width - left)
    return Bars(width, top + plot_h + bottom + legend_height(len(keys)), left, width - 10, ticks, sections,
                values=bar_w >= 24, legend=keys)


# ---------------------------------------------------------------- cost against accuracy


@dataclass(frozen=True)
class Point:
    """One run: what its answers cost, its overall score and that score's 95% interval."""

    rank: int
    x: float
    y: float
    interval_y: tuple[float, float] | None  # top, bottom
    colour: str
    front: bool  # on the Pareto front: no other run is both cheaper (or as cheap) and better
    tip: str


@dataclass(frozen=True)
class CostChart:
    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float  # y of the x axis
    x_ticks: list[Label]
    y_ticks: list[Label]
    x_title: Label
    y_title: Label
    points: list[Point]
    front: str  # the Pareto front as an SVG path: a staircase through its runs, cheapest first
    legend: list[Key]


def _placed(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.run.cost_usd is not None and row.run.scores[OVERALL] is not None]


def _cost_group(shown: Board) -> Group | None:
    """The runs the cost chart compares: the first group of complete runs on one selection that
    has two runs to place (a lone --precision run of the whole data, ranked first, leaves the
    choice to the judges run beside it on a smaller selection), else the first group."""
    return next((group for group in shown.groups if group.kind in (RANKED, SELECTION) and len(_placed(group.rows)) > 1),
                shown.groups[0] if shown.groups else None)


def _cost(shown: Board) -> tuple[CostChart | None, list[str]]:
    """Cost of the answers behind each score (x) against the overall score (y) with its interval,
    for the runs ranked together (`_cost_group`: the same records), and the Pareto front:
    the runs no other run beats on both. A log scale when costs span a factor of 10 or more.
    Also the runs left out for an unknown price. None when fewer than two runs can be placed."""
    group = _cost_group(shown)
    rows = group.rows if group else []
    unpriced = [row.title for row in rows if row.run.cost_usd is None and row.run.scores[OVERALL] is not None]
    placed = _placed(rows)
    if len(placed) < 2:
        return None, unpriced
    width, height, left, right, top, bottom = 640.0, 340.0, 58.0, 620.0, 16.0, 290.0
    costs = [row.run.cost_usd or 0.0 for row in placed]
    log = min(costs) > 0 and max(costs) / min(costs) >= 10
    if log:
        low, high = math.floor(math.log10(min(costs))), math.ceil(math.log10(max(costs)))
        high += high == low
        x_values = [10.0**e for e in range(low, high + 1)]

        def x_of(cost: float) -> float:
            return left + (right - left) * (math.log10(cost) - low) / (high - low)
    else:
        step = _nice_step(max(costs) / 4) if max(costs) > 0 else 1.0
        x_values = [step * i for i in range(math.ceil(max(costs) / step) + 1 if max(costs) > 0 else 2)]
        span = x_values[-1] or 1.0

        def x_of(cost: float) -> float:
            return left + (right - left) * cost / span
    ends = [v for row in placed for v in (row.run.intervals[OVERALL] or [row.run.scores[OVERALL] or 0.0])]
    y_low, y_high = max(0.0, math.floor(min(ends) * 20 - 1) / 20), min(1.0, math.ceil(max(ends) * 20 + 1) / 20)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * (value - y_low) / (y_high - y_low)

    y_step = 0.05 if y_high - y_low <= 0.3 else 0.1
    y_values = [round(y_low + y_step * i, 2) for i in range(round((y_high - y_low) / y_step) + 1)]
    front, best = [], -1.0
    for row in sorted(placed, key=lambda row: (row.run.cost_usd, -(row.run.scores[OVERALL] or 0.0))):
        if (row.run.scores[OVERALL] or 0.0) > best:
            front.append(row)
            best = row.run.scores[OVERALL] or 0.0
    points = []
    for row in placed:
        run, score = row.run, row.run.scores[OVERALL] or 0.0
        interval = run.intervals[OVERALL]
        spread = f" (95% interval {interval[0]:.3f} to {interval[1]:.3f})" if interval else ""
        tip = f"{row.title}: overall {score:.3f}{spread}, {_dollars(run.cost_usd)}"
        points.append(Point(row.rank, x_of(run.cost_usd or 0.0), y_of(score),
                            (y_of(interval[1]), y_of(interval[0])) if interval else None,
                            _colour(row.rank), row in front, tip))
    stairs = ""  # at a cost between two runs of the front, the cheaper one's score is the best to be had
    for number, row in enumerate(front):
        x, y = x_of(row.run.cost_usd or 0.0), y_of(row.run.scores[OVERALL] or 0.0)
        stairs += f"H{x:.1f}V{y:.1f}" if number else f"M{x:.1f},{y:.1f}"
    x_ticks = [Label(x_of(v), bottom + 16, f"${v:,.10g}") for v in x_values]
    y_ticks = [Label(left - 6, y_of(v) + 4, f"{v:.2f}") for v in y_values]
    entries = [(_colour(row.rank), row.title, "swatch") for row in placed] + [
        ("#111827", "Pareto front: the runs (ringed) no other run beats on both cost and score", "dashed")]
    keys = legend(entries, left, height, width - left)
    return CostChart(
        width, height + legend_height(len(keys)), left, right, top, bottom, x_ticks, y_ticks,
        Label((left + right) / 2, height - 8, "cost of the answers behind the score" + (" (log scale)" if log else "")),
        Label(14, (top + bottom) / 2, "overall score"),
        points, stairs, keys,
    ), unpriced


def _nice_step(rough: float) -> float:
    """1, 2 or 5 times a power of ten, at least `rough`."""
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


def _dollars(value: float | None) -> str:
    if value is None:
        return "price unknown"
    if value == 0:
        return "$0"
    return f"${value:,.0f}" if value >= 100 else f"${value:.2f}" if value >= 1 else f"${value:.2g}"


# ---------------------------------------------------------------- heatmap


@dataclass(frozen=True)
class Cell:
    rank: int
    path: str
    x: float
    accuracy: float | None
    n: int  # records behind the accuracy
    fill: str
    opacity: float  # 1 from FEW records on; paler below
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
    """Rows are scenarios grouped by section, columns are runs; grey cells were not run. A cell
    shows its accuracy over its n records, paler below FEW records (an accuracy on 2 records
    is no finding). A dashed line and a gap part the runs of one leaderboard group from the next."""
    rows = shown.rows
    scenarios = {(row.rank, s.category_path): s for row in rows for s in row.run.scenarios}
    titles: list[tuple[str | None, str]] = [
        (s.key, f"{KIND_TITLES[s.kind]} · {s.goal.capitalize()}") for s in shown.benchmark.sections
    ]
    sections = []
    for key, title in [*titles, (None, NO_SECTION)]:
        labels = {s.category_path: s.label for row in rows for s in row.run.scenarios if s.section == key}
        if labels:
            sections.append((title, sorted(labels.items(), key=lambda item: natural(item[0]))))
    if not sections:
        return None

    cell_w, cell_h, section_h = 52, 30, 26
    label_w = 16 + 6.6 * max(len(label) for _, lines in sections for _, label in lines)
    columns = {row.rank: _column_title(row) for row in rows}
    title_w = 6.0 * max(len(title) for title in columns.values())  # run titles are rotated 30 degrees
    header_h = 20 + title_w / 2
    span = max(slots.values()) + 1
    width = max(label_w + cell_w * span, label_w + cell_w * (span - 0.5) + title_w * 0.87 + 10)
    height = header_h + sum(section_h + cell_h * len(lines) for _, lines in sections) + 8

    run_titles = [Label(label_w + cell_w * slots[row.rank] + cell_w / 2, header_h - 6, columns[row.rank], row.title)
                  for row in rows]
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
                n = scenario.n if scenario else 0
                fill = ABSENT if accuracy is None else heat_colour(accuracy)
                opacity = 1.0 if accuracy is None or n >= FEW else 0.2 + 0.6 * n / FEW
                tip = f"{path} · {row.title}: " + (
                    "not run" if scenario is None or accuracy is None else f"{accuracy:.3f} (n={scenario.n})"
                ) + (f", 95% interval {scenario.interval[0]:.3f} to {scenario.interval[1]:.3f}"
                     if scenario and accuracy is not None and scenario.interval else "")
                cells.append(Cell(row.rank, path, label_w + cell_w * slots[row.rank], accuracy, n, fill, opacity,
                                  _ink(_on_white(fill, opacity)), tip))
            lines.append(Line(label, y, cells))
            y += cell_h
        blocks.append(Block(title, block_y, lines))
    return Heatmap(width, height, cell_w, cell_h, label_w - 8, run_titles, breaks, blocks)


TITLE_CHARS = 40  # of a heatmap column's judge and settings; the whole title is its tooltip and in the legend


def _column_title(row: Row) -> str:
    """A run's title over its heatmap column: rank, judge and settings cut to TITLE_CHARS, then why
    it stands apart (partial, SUSPECT, ...) in full."""
    named = f"#{row.rank} {row.run.judge}" + (f" · {row.run.label}" if row.run.label else "")
    marks = row.title.removeprefix(named)
    return (named if len(named) <= TITLE_CHARS else named[: TITLE_CHARS - 1] + "…") + marks


_HEAT_STOPS = ((0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80)))


def heat_colour(accuracy: float) -> str:
    """Red (0) through yellow (0.5) to green (1); the hue rises monotonically with accuracy."""
    value = min(max(accuracy, 0.0), 1.0)
    (low, c0), (high, c1) = _HEAT_STOPS[:2] if value <= _HEAT_STOPS[1][0] else _HEAT_STOPS[1:]
    t = (value - low) / (high - low)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1, strict=True))


def _on_white(fill: str, opacity: float) -> str:
    """The colour `fill` shows at `opacity` over the white page."""
    return "#" + "".join(f"{round(255 - (255 - int(fill[i : i + 2], 16)) * opacity):02x}" for i in (1, 3, 5))


def _ink(fill: str) -> str:
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#111827" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def natural(text: str) -> list[Any]:
    """Sort S2 before S10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]
