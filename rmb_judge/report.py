"""`rmb-judge report`: a leaderboard of run folders for the terminal, Markdown, or one HTML file.

The HTML is self-contained (inline CSS and SVG; no scripts, fonts or network) so it can be
attached to an issue or mailed and still render the same anywhere.
Older or partial runs may lack `settings`, `chance`, `position`, `agreement` or `sections`;
every renderer shows what is there and a dash for the rest.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .errors import DataError, UsageError
from .records import SECTIONS, SETS

# Column order of the RMB paper's leaderboard, so published rows line up with ours.
SECTION_KEYS = ("bon_helpfulness", "pairwise_helpfulness", "bon_harmlessness", "pairwise_harmlessness")
SCORE_KEYS = (*SECTION_KEYS, "overall")
TITLES = {
    "bon_helpfulness": "Help BoN",
    "pairwise_helpfulness": "Help Pair",
    "bon_harmlessness": "Harm BoN",
    "pairwise_harmlessness": "Harm Pair",
    "overall": "Overall",
}
# Heatmap row groups, in reading order.
GROUPS = (
    ("pairwise", "helpfulness"),
    ("pairwise", "harmlessness"),
    ("bon", "helpfulness"),
    ("bon", "harmlessness"),
)
_SET_BY_DIR = {folder: name for name, folder in SETS.items()}
_SECTION_BY_DIR = {folder: name for name, folder in SECTIONS.items()}
_GROUP_TITLES = {"pairwise": "Pairwise", "bon": "Best-of-N"}
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
ABSENT = "#e5e7eb"
DASH = "—"


@dataclass(frozen=True)
class Scenario:
    category_path: str
    set: str
    section: str
    n: int | None
    accuracy: float | None

    @property
    def short_label(self) -> str:
        """The path without its set and section folders, which the heatmap shows as group headers."""
        return "/".join(self.category_path.split("/")[2:]) or self.category_path


@dataclass(frozen=True)
class Run:
    """What the report needs from one run folder's `summary.json`."""

    path: Path
    judge: str
    label: str  # the settings that tell ablation runs of one judge apart
    simulated: bool
    complete: bool
    scores: dict[str, float | None]  # SCORE_KEYS
    chance: dict[str, float | None]  # SECTION_KEYS
    n: int
    failed: int
    unparsed: int
    refused: int
    cost_usd: float | None
    first_pick_rate: float | None
    consistency: float | None
    unanimous: float | None  # --samples K: share of comparisons whose K votes all agree
    scenarios: tuple[Scenario, ...]

    def chance_for(self, key: str) -> float | None:
        """Chance level of a section, or for `overall` the mean over the sections this run scored."""
        if key != "overall":
            return self.chance.get(key)
        scored = [self.chance[k] for k in SECTION_KEYS if self.scores[k] is not None]
        known = [level for level in scored if level is not None]
        return sum(known) / len(known) if known and len(known) == len(scored) else None


# ---------------------------------------------------------------- loading


def load_runs(paths: list[Path]) -> list[Run]:
    """Read each folder's summary.json; a bad folder is one clear error naming it."""
    runs = [_load_run(Path(path)) for path in paths]
    return _distinct_labels(runs)


def _load_run(folder: Path) -> Run:
    file = folder / "summary.json"
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such run folder")
    if not file.is_file():
        raise UsageError(f"{folder}: no summary.json in this folder (is it the --out folder of a run?)")
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{file}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{file}: not UTF-8 text") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("judge"), str):
        raise DataError(f'{file}: not an rmb-judge summary (no "judge" string)')
    return _run_from_summary(folder, summary)


def _run_from_summary(folder: Path, summary: dict[str, Any]) -> Run:
    judge = summary["judge"]
    scores = _dict(summary.get("scores"))
    chance = _dict(summary.get("chance"))
    sections = [s for s in _dict(summary.get("sections")).values() if isinstance(s, dict)]
    usage = _dict(summary.get("usage"))
    position = _dict(summary.get("position"))
    scenarios = tuple(s for s in map(_scenario, _list(summary.get("scenarios"))) if s is not None)
    # Failure counts come from the per-section tallies; usage's are the fallback for older summaries.
    counted = sections or [usage]
    return Run(
        path=folder,
        judge=judge,
        label=_settings_label(_dict(summary.get("settings"))) or folder.name,
        simulated=summary.get("simulated") is True or judge.split(":")[0] == "mock",
        complete=summary.get("complete") is True,
        scores={key: _number(scores.get(key)) for key in SCORE_KEYS},
        chance={key: _number(chance.get(key)) for key in SECTION_KEYS},
        n=sum(_count(s.get("n")) for s in sections) if sections else sum(s.n or 0 for s in scenarios),
        failed=sum(_count(s.get("failed")) for s in counted),
        unparsed=sum(_count(s.get("unparsed")) for s in counted),
        refused=sum(_count(s.get("refused")) for s in counted),
        cost_usd=_number(usage.get("cost_usd")),
        first_pick_rate=_number(position.get("first_pick_rate")),
        consistency=_number(position.get("consistency")),
        unanimous=_number(_dict(summary.get("agreement")).get("unanimous_rate")),
        scenarios=scenarios,
    )


def _settings_label(settings: dict[str, Any]) -> str:
    """Template, order and votes, plus the selection flags that make a run a subset."""
    parts = [str(settings[key]) for key in ("template", "order") if settings.get(key)]
    samples, temperature = settings.get("samples"), _number(settings.get("temperature"))
    if isinstance(samples, int):
        vote = f"k={samples}"
        if samples > 1 and temperature is not None:
            vote += f" T={temperature:g}"
        parts.append(vote)
    parts += [f"{key}={settings[key]:g}" for key in ("limit", "sample") if _number(settings.get(key)) is not None]
    return " · ".join(parts)


def _distinct_labels(runs: list[Run]) -> list[Run]:
    """Runs that would read the same (same judge and settings) get their folder name added."""
    seen = Counter((run.judge, run.label) for run in runs)
    return [
        replace(run, label=f"{run.label} · {run.path.name}") if seen[(run.judge, run.label)] > 1 else run
        for run in runs
    ]


def _scenario(entry: Any) -> Scenario | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("category_path"), str):
        return None
    path = entry["category_path"]
    parts = path.split("/")
    set_ = entry.get("set") or _SET_BY_DIR.get(parts[0])
    section = entry.get("section") or (_SECTION_BY_DIR.get(parts[1]) if len(parts) > 1 else None)
    if (set_, section) not in GROUPS:
        return None
    n = entry.get("n")
    return Scenario(path, set_, section, n if isinstance(n, int) else None, _number(entry.get("accuracy")))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- the table all renderers share


@dataclass(frozen=True)
class _Board:
    headers: list[str]
    numeric: list[bool]
    runs: list[Run]  # ranked, one per row
    rows: list[list[str]]
    chance_row: list[str] | None  # when every run has the same chance levels
    notes: list[str]


_EXTRAS = (  # (header, value, what it means)
    ("1st pick", lambda run: run.first_pick_rate, "how often the answer shown first was preferred"),
    ("Consistency", lambda run: run.consistency, "with --order both, how often both orders gave the same verdict"),
    ("Unanimous", lambda run: run.unanimous, "with --samples K, how often all K votes agreed"),
)


def _ranked(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda run: (run.scores["overall"] is None, -(run.scores["overall"] or 0.0)))


def _common_chance(runs: list[Run]) -> dict[str, float | None] | None:
    """The section chance levels all runs share, or None when their selections give different ones.

    The overall level also depends on which sections a run covered, so runs with the same
    section levels may still differ there: it is shown only where they agree.
    """
    common: dict[str, float | None] = {}
    for key in SCORE_KEYS:
        levels = {round(level, 4) for run in runs if (level := run.chance_for(key)) is not None}
        if len(levels) > 1 and key != "overall":
            return None
        common[key] = levels.pop() if len(levels) == 1 else None
    return common


def _board(runs: list[Run]) -> _Board:
    ranked = _ranked(runs)
    common = _common_chance(ranked)
    per_run_chance = common is None
    extras = [(title, get, meaning) for title, get, meaning in _EXTRAS if any(get(run) is not None for run in ranked)]
    suffix = " (chance)" if per_run_chance else ""
    headers = [
        "#", "Judge", "Settings", *(TITLES[key] + suffix for key in SCORE_KEYS),
        "Status", "n", "Failed", "Unparsed", "Refused", "Cost", *(title for title, _, _ in extras),
    ]
    numeric = [header not in ("Judge", "Settings", "Status") for header in headers]
    rows = []
    for rank, run in enumerate(ranked, 1):
        cells = [
            _fmt(run.scores[key]) + (f" ({_fmt(run.chance_for(key))})" if per_run_chance else "")
            for key in SCORE_KEYS
        ]
        status = ("complete" if run.complete else "partial") + (" · simulated" if run.simulated else "")
        rows.append([
            str(rank), run.judge, run.label, *cells, status, str(run.n), str(run.failed),
            str(run.unparsed), str(run.refused), _fmt_cost(run.cost_usd),
            *(_fmt(get(run)) for _, get, _ in extras),
        ])
    chance_row = None
    if common is not None and any(level is not None for level in common.values()):
        chance_row = ["", "chance level", "", *(_fmt(common[key]) for key in SCORE_KEYS)]
        chance_row += [""] * (len(headers) - len(chance_row))
    notes = [f"{title}: {meaning}." for title, _, meaning in extras]
    if per_run_chance:
        notes.append("Runs selected different records, so each score shows its own chance level in brackets.")
    if any(run.simulated for run in ranked):
        notes.append("simulated: the built-in mock judge, for smoke runs; its scores say nothing about a model.")
    if not all(run.complete for run in ranked):
        notes.append("partial: the run stopped early (e.g. --max-cost); scores cover the records it judged.")
    return _Board(headers, numeric, ranked, rows, chance_row, notes)


def _fmt(value: float | None, digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _fmt_cost(value: float | None) -> str:
    if value is None:
        return DASH
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"


PUBLISHED_TITLE = "RMB leaderboard (paper's Table 3, as reprinted in RM-R1, arXiv 2505.02387, Table 8)"


@cache
def published_leaderboard() -> dict[str, Any]:
    """The RMB paper's leaderboard rows (Table 3), shipped in `data/published_rmb.json`."""
    return json.loads((Path(__file__).parent / "data" / "published_rmb.json").read_text(encoding="utf-8"))


def _published_table() -> tuple[list[str], list[list[str]]]:
    headers = ["Model", "Type", *(TITLES[key] for key in SCORE_KEYS)]
    rows = [
        [row["model"], row["type"], *(_fmt(_number(row.get(key))) for key in SCORE_KEYS)]
        for row in published_leaderboard()["rows"]
    ]
    return headers, rows


# ---------------------------------------------------------------- terminal


def render_terminal(runs: list[Run], console: Console, published: bool = False) -> None:
    board = _board(runs)
    everything = range(len(board.headers))
    table = _rich_table("RMB leaderboard", board, everything)
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural > console.width:
        # Too narrow for one table: scores first, then counts, cost and bias by rank.
        split = board.headers.index("Status") + 1
        table = _rich_table("RMB leaderboard", board, range(split))
        details = _rich_table("Run details", board, [0, *range(split, len(board.headers))])
        console.print(table, details)
    else:
        console.print(table)
    for note in board.notes:
        console.print(Text(note, style="dim"))
    if published:
        headers, rows = _published_table()
        paper = Table(title=f"Published: {PUBLISHED_TITLE}", title_justify="left")
        for index, header in enumerate(headers):
            paper.add_column(header, justify="left" if index < 2 else "right")
        for row in rows:
            paper.add_row(*map(Text, row))
        console.print(paper)
        console.print(Text(f"Source: {_source()}", style="dim"))


def _rich_table(title: str, board: _Board, columns: Iterable[int]) -> Table:
    """The board's `columns`, with judge and settings in one two-line cell and status words stacked."""
    judge_at, status_at = board.headers.index("Judge"), board.headers.index("Status")
    keep = [index for index in columns if index != judge_at + 1]
    rows = board.rows + ([board.chance_row] if board.chance_row else [])
    table = Table(title=title, title_justify="left")
    for index in keep:
        if index == judge_at:
            table.add_column("Judge / settings", overflow="fold")
        else:  # on a narrow terminal the judge column wraps first; numbers stay whole
            words = [len(word) for row in rows for word in row[index].split()]
            table.add_column(
                board.headers[index],
                justify="right" if board.numeric[index] else "left",
                min_width=max(words, default=1),
            )

    def cells(row: list[str]) -> list[Text]:
        out = []
        for index in keep:
            cell = Text(row[index].replace(" · ", "\n") if index == status_at else row[index])
            if index == judge_at and row[judge_at + 1]:
                cell.append("\n" + row[judge_at + 1], style="dim")
            out.append(cell)
        return out

    for run, row in zip(board.runs, board.rows):
        table.add_row(*cells(row), style="yellow" if run.simulated else None)
    if board.chance_row and any(board.chance_row[index] for index in keep[1:]):
        table.add_section()
        table.add_row(*cells(board.chance_row), style="dim italic")
    return table


def _source() -> str:
    return published_leaderboard()["source"]


# ---------------------------------------------------------------- markdown


def render_markdown(runs: list[Run], published: bool = False) -> str:
    board = _board(runs)
    rows = board.rows + ([board.chance_row] if board.chance_row else [])
    lines = ["# RMB leaderboard", "", *_markdown_table(board.headers, rows, board.numeric)]
    if board.notes:
        lines += ["", *(f"- {note}" for note in board.notes)]
    if published:
        headers, paper_rows = _published_table()
        lines += [
            "", f"## Published: {PUBLISHED_TITLE}", "",
            *_markdown_table(headers, paper_rows, [index >= 2 for index in range(len(headers))]),
            "", f"Source: {_source()}",
        ]
    return "\n".join(lines) + "\n"


def _markdown_table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(headers), line(["---:" if right else "---" for right in numeric]), *map(line, rows)]


# ---------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2937; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; font-size: 13px; max-width: 100%; }
th, td { padding: 4px 7px; border-bottom: 1px solid #e5e7eb; }
td { white-space: nowrap; }
th { background: #f3f4f6; text-align: left; vertical-align: bottom; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.simulated td { background: #fff7e0; }
tr.chance td { color: #6b7280; font-style: italic; border-top: 2px solid #9ca3af; }
.settings { color: #6b7280; font-size: 12px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; margin-left: 4px; }
.tag.partial { background: #fde2e1; color: #9b1c1c; } .tag.complete { background: #def7ec; color: #03543f; }
.tag.simulated { background: #fdf0c4; color: #8a5a00; }
.note, .source { color: #6b7280; font-size: 12px; margin: 4px 0; max-width: 1100px; }
ul.legend { list-style: none; padding: 0; margin: 6px 0; font-size: 12px;
            display: flex; flex-wrap: wrap; gap: 4px 16px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 5px; vertical-align: -1px; }
.swatch.chance { height: 0; border-top: 2px dashed #111827; vertical-align: 3px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
"""


def render_html(runs: list[Run], published: bool = False) -> str:
    board = _board(runs)
    body = ["<h1>RMB leaderboard</h1>", _html_board(board)]
    body += [f'<p class="note">{escape(note)}</p>' for note in board.notes]
    if published:
        headers, rows = _published_table()
        body += [
            f"<h2>Published: {escape(PUBLISHED_TITLE)}</h2>",
            _html_table(headers, rows, [index >= 2 for index in range(len(headers))]),
            f'<p class="source">Source: {escape(_source())}</p>',
        ]
    body += [
        "<h2>Scores by section</h2>", _legend(board.runs), _bar_chart(board.runs),
        "<h2>Accuracy by scenario</h2>", _heatmap(board.runs),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>RMB leaderboard</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_board(board: _Board) -> str:
    """Like the terminal table: judge and settings share a cell so the table fits a laptop screen."""
    judge_at, status_at = board.headers.index("Judge"), board.headers.index("Status")
    keep = [index for index in range(len(board.headers)) if index != judge_at + 1]
    head = "".join(
        f"<th>{'Judge / settings' if index == judge_at else escape(board.headers[index])}</th>" for index in keep
    )

    def row_html(cells: list[str], run: Run | None) -> str:
        tds = []
        for index in keep:
            content = escape(cells[index])
            if index == judge_at and cells[judge_at + 1]:
                content += f'<br><span class="settings">{escape(cells[judge_at + 1])}</span>'
            elif index == status_at and run is not None:
                tags = ["complete" if run.complete else "partial"] + (["simulated"] if run.simulated else [])
                content = "".join(f'<span class="tag {tag}">{tag}</span>' for tag in tags)
            tds.append(f"<td{_num_class(board.numeric[index])}>{content}</td>")
        return "".join(tds)

    rows = []
    for run, cells in zip(board.runs, board.rows):
        css = ' class="simulated"' if run.simulated else ""
        rows.append(f'<tr{css} title="{escape(str(run.path))}">{row_html(cells, run)}</tr>')
    if board.chance_row:
        rows.append(f'<tr class="chance">{row_html(board.chance_row, None)}</tr>')
    return f'<table class="leaderboard">\n<tr>{head}</tr>\n' + "\n".join(rows) + "\n</table>"


def _html_table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "\n".join(
        "<tr>" + "".join(f"<td{_num_class(right)}>{escape(cell)}</td>" for cell, right in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    return f'<table class="published">\n<tr>{head}</tr>\n{body}\n</table>'


def _num_class(numeric: bool) -> str:
    return ' class="num"' if numeric else ""


def _run_title(rank: int, run: Run) -> str:
    return f"#{rank} {run.judge} · {run.label}" + (" (simulated)" if run.simulated else "")


def _legend(runs: list[Run]) -> str:
    items = [
        f'<li><span class="swatch" style="background:{_run_colour(index)}"></span>'
        f"{escape(_run_title(index + 1, run))}</li>"
        for index, run in enumerate(runs)
    ]
    items.append('<li><span class="swatch chance"></span>chance level</li>')
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _run_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _bar_chart(runs: list[Run]) -> str:
    """Grouped bars: one group per section plus overall, one bar per run, a dashed line at chance."""
    left, top, plot_h, bottom = 44, 16, 260, 30
    bar_w = max(8.0, min(34.0, 150 / max(len(runs), 1)))
    group_w = bar_w * max(len(runs), 1) + 28
    width = left + group_w * len(SCORE_KEYS) + 10
    height = top + plot_h + bottom

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    parts = [f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}">']
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{left}" x2="{width - 10:.0f}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e5e7eb"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#6b7280">{tick:g}</text>'
        )
    for group, key in enumerate(SCORE_KEYS):
        x0 = left + group * group_w + 14
        for index, run in enumerate(runs):
            x = x0 + index * bar_w
            score, level = run.scores[key], run.chance_for(key)
            if score is not None:
                title = f"{_run_title(index + 1, run)}: {TITLES[key]} {score:.3f}"
                if level is not None:
                    title += f" (chance {level:.3f})"
                parts.append(
                    f'<rect class="bar" data-run="{index + 1}" data-section="{key}" data-score="{score:.3f}" '
                    f'x="{x:.1f}" y="{y(score):.1f}" width="{bar_w - 2:.1f}" height="{plot_h * score:.1f}" '
                    f'fill="{_run_colour(index)}"><title>{escape(title)}</title></rect>'
                )
                if bar_w >= 24:
                    parts.append(
                        f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{y(score) - 3:.1f}" font-size="9" '
                        f'text-anchor="middle" fill="#374151">{score:.2f}</text>'
                    )
            else:
                parts.append(
                    f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{y(0) - 4:.1f}" font-size="9" '
                    f'text-anchor="middle" fill="#9ca3af">n/a</text>'
                )
            if level is not None:
                parts.append(
                    f'<line class="chance" data-run="{index + 1}" data-section="{key}" data-chance="{level:.3f}" '
                    f'x1="{x - 1:.1f}" x2="{x + bar_w - 1:.1f}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
                    f'stroke="#111827" stroke-width="2" stroke-dasharray="4 2"/>'
                )
        parts.append(
            f'<text x="{x0 + bar_w * len(runs) / 2:.1f}" y="{top + plot_h + 18}" font-size="12" '
            f'text-anchor="middle" font-weight="600">{TITLES[key]}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _heatmap(runs: list[Run]) -> str:
    """Rows are scenarios grouped by set and section, columns are runs; grey cells were not run."""
    cells = {(index, s.category_path): s for index, run in enumerate(runs) for s in run.scenarios}
    labels = {s.category_path: s.short_label for run in runs for s in run.scenarios}
    groups = []
    for set_, section in GROUPS:
        paths = sorted(
            {s.category_path for run in runs for s in run.scenarios if (s.set, s.section) == (set_, section)},
            key=_natural,
        )
        if paths:
            groups.append((f"{_GROUP_TITLES[set_]} · {SECTIONS[section]}", [(p, labels[p]) for p in paths]))
    if not groups:
        return '<p class="note">No per-scenario results in these runs.</p>'

    cell_w, cell_h, group_h = 60, 20, 26
    label_w = 16 + 6.6 * max(len(label) for _, rows in groups for _, label in rows)
    titles = [_run_title(index + 1, run) for index, run in enumerate(runs)]
    title_w = 6.0 * max(len(title) for title in titles)  # run titles are rotated 30 degrees
    header_h = 20 + title_w / 2
    width = max(label_w + cell_w * len(runs), label_w + cell_w * (len(runs) - 0.5) + title_w * 0.87 + 10)
    height = header_h + sum(group_h + cell_h * len(rows) for _, rows in groups) + 8

    parts = [f'<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}">']
    for index, title in enumerate(titles):
        x = label_w + cell_w * index + cell_w / 2
        parts.append(
            f'<text class="hm-run" font-size="11" transform="translate({x:.1f},{header_h - 6:.1f}) rotate(-30)">'
            f"{escape(title)}</text>"
        )
    y = header_h
    for title, rows in groups:
        parts.append(f'<text x="4" y="{y + 18}" font-size="13" font-weight="600">{escape(title)}</text>')
        y += group_h
        for path, label in rows:
            parts.append(
                f'<text x="{label_w - 8:.1f}" y="{y + 14}" font-size="11" text-anchor="end">{escape(label)}</text>'
            )
            for index in range(len(runs)):
                scenario = cells.get((index, path))
                x = label_w + cell_w * index
                accuracy = scenario.accuracy if scenario else None
                fill = ABSENT if accuracy is None else heat_colour(accuracy)
                tip = f"{path} · {titles[index]}: " + (
                    "not run" if accuracy is None else f"{accuracy:.3f} (n={scenario.n if scenario else '?'})"
                )
                parts.append(
                    f'<rect class="hm-cell" data-run="{index + 1}" data-scenario="{escape(path)}" '
                    f'data-accuracy="{"" if accuracy is None else f"{accuracy:.3f}"}" x="{x + 1}" y="{y + 1}" '
                    f'width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}"><title>{escape(tip)}</title></rect>'
                )
                if accuracy is not None:
                    parts.append(
                        f'<text class="hm-value" data-run="{index + 1}" data-scenario="{escape(path)}" '
                        f'x="{x + cell_w / 2}" y="{y + 14}" font-size="11" text-anchor="middle" '
                        f'fill="{_ink(fill)}">{accuracy:.2f}</text>'
                    )
            y += cell_h
    parts.append("</svg>")
    return "\n".join(parts)


_HEAT_STOPS = ((0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80)))


def heat_colour(accuracy: float) -> str:
    """Red (0) through yellow (0.5) to green (1); the hue rises monotonically with accuracy."""
    value = min(max(accuracy, 0.0), 1.0)
    (low, c0), (high, c1) = _HEAT_STOPS[:2] if value <= _HEAT_STOPS[1][0] else _HEAT_STOPS[1:]
    t = (value - low) / (high - low)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1))


def _ink(fill: str) -> str:
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#111827" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def _natural(text: str) -> list[Any]:
    """Sort S2 before S10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]
