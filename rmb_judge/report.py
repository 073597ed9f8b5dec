"""`rmb-judge report`: a leaderboard of run folders for the terminal, Markdown, or one HTML file.

The HTML is self-contained (inline CSS and SVG; no scripts, fonts or network) so it can be
attached to an issue or mailed and still render the same anywhere.
Older or partial runs may lack `settings`, `chance`, `position`, `agreement`, `sections`,
`data`, `suspect`, `warnings` or `usage.results`; every renderer shows what is there and a
dash for the rest.

Only runs that can be compared are ranked together: the leaderboard is cut into groups
(complete runs on the largest selection first, then other selections, then partial runs,
then suspect ones), each with a header, so a run that judged five records, stopped early
or could not parse its judge's answers never sits above complete runs on the full data.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import DataError, UsageError
from .benchmarks.rmb import GOALS as SECTIONS
from .benchmarks.rmb import SETS

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
    """What the report needs from one run folder's `summary.json` (and `manifest.json`)."""

    path: Path
    judge: str
    label: str  # the settings that tell ablation runs of one judge apart
    simulated: bool
    complete: bool
    stopped_reason: str | None
    suspect: bool
    warnings: tuple[str, ...]
    scores: dict[str, float | None]  # SCORE_KEYS
    chance: dict[str, float | None]  # SECTION_KEYS
    n: int
    failed: int
    unparsed: int
    refused: int
    cost_usd: float | None  # what the answers behind the scores cost, whichever run paid
    cost_is_spend: bool  # an older summary: only its own spend is known, and it reused cached answers
    cache_hits: int
    first_pick_rate: float | None
    consistency: float | None
    unanimous: float | None  # --samples K: share of comparisons whose K votes all agree
    scenarios: tuple[Scenario, ...]
    selection: tuple[Any, ...]  # equal for runs that selected the same records
    selection_text: str
    records: int  # records selected (scored, for summaries that do not say)
    comparisons: tuple[int, int] | None  # judged, expected
    data_digest: str | None  # of the data files' hashes in manifest.json

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
    return _run_from_summary(folder, summary, _data_digest(folder / "manifest.json"))


def _data_digest(file: Path) -> str | None:
    """A digest of the data files' hashes that manifest.json lists; optional, so any problem is None."""
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = _dict(_dict(_dict(manifest).get("data")).get("files"))
    if not files:
        return None
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _run_from_summary(folder: Path, summary: dict[str, Any], data_digest: str | None = None) -> Run:
    judge = summary["judge"]
    scores = _dict(summary.get("scores"))
    chance = _dict(summary.get("chance"))
    sections = [s for s in _dict(summary.get("sections")).values() if isinstance(s, dict)]
    usage = _dict(summary.get("usage"))
    results = usage.get("results")
    position = _dict(summary.get("position"))
    settings = _dict(summary.get("settings"))
    data = _dict(summary.get("data"))
    scenarios = tuple(s for s in map(_scenario, _list(summary.get("scenarios"))) if s is not None)
    # Failure counts come from the per-section tallies; usage's are the fallback for older summaries.
    counted = sections or [usage]
    n = sum(_count(s.get("n")) for s in sections) if sections else sum(s.n or 0 for s in scenarios)
    records = data.get("records")
    judged, expected = data.get("comparisons_judged"), data.get("comparisons_expected")
    reason = summary.get("stopped_reason")
    return Run(
        path=folder,
        judge=judge,
        label=_settings_label(settings) or folder.name,
        simulated=summary.get("simulated") is True or judge.split(":")[0] == "mock",
        complete=summary.get("complete") is True,
        stopped_reason=reason if isinstance(reason, str) else None,
        suspect=summary.get("suspect") is True,
        warnings=tuple(w for w in _list(summary.get("warnings")) if isinstance(w, str)),
        scores={key: _number(scores.get(key)) for key in SCORE_KEYS},
        chance={key: _number(chance.get(key)) for key in SECTION_KEYS},
        n=n,
        failed=sum(_count(s.get("failed")) for s in counted),
        unparsed=sum(_count(s.get("unparsed")) for s in counted),
        refused=sum(_count(s.get("refused")) for s in counted),
        cost_usd=_number(_dict(results).get("cost_usd") if isinstance(results, dict) else usage.get("cost_usd")),
        cost_is_spend=not isinstance(results, dict) and _count(usage.get("cache_hits")) > 0,
        cache_hits=_count(usage.get("cache_hits")),
        first_pick_rate=_number(position.get("first_pick_rate")),
        consistency=_number(position.get("consistency")),
        unanimous=_number(_dict(summary.get("agreement")).get("unanimous_rate")),
        scenarios=scenarios,
        selection=_selection_key(settings, scenarios),
        selection_text=_selection_text(settings),
        records=records if isinstance(records, int) and not isinstance(records, bool) else n,
        comparisons=(judged, expected) if isinstance(judged, int) and isinstance(expected, int) else None,
        data_digest=data_digest,
    )


def _selection(settings: dict[str, Any]) -> dict[str, Any] | None:
    """The selection flags of `settings` with defaults filled in, or None when it has none (older runs)."""
    if not any(key in settings for key in ("sets", "sections", "scenarios")):
        return None
    sample = _number(settings.get("sample"))
    limit = settings.get("limit")
    return {
        "sets": tuple(sorted(map(str, _list(settings.get("sets")) or SETS))),
        "sections": tuple(sorted(map(str, _list(settings.get("sections")) or SECTIONS))),
        "scenarios": tuple(sorted(map(str, _list(settings.get("scenarios"))))),
        "limit": limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        "sample": sample,
        "seed": _count(settings.get("seed")) if sample is not None else None,  # it picks records only with --sample
    }


def _selection_key(settings: dict[str, Any], scenarios: tuple[Scenario, ...]) -> tuple[Any, ...]:
    """Runs with equal keys selected the same records: equal selection flags or, for summaries
    without them, the same scenarios with the same record counts."""
    flags = _selection(settings)
    if flags is None:
        return ("scenarios", tuple(sorted((s.category_path, s.n) for s in scenarios)))
    return ("flags", *flags.values())


def _selection_text(settings: dict[str, Any]) -> str:
    """The selection in words: `full selection`, or the flags that narrowed it."""
    flags = _selection(settings)
    if flags is None:
        return "selection not recorded (older summary)"
    parts = []
    if flags["sets"] != tuple(sorted(SETS)):
        parts.append("sets " + ", ".join(flags["sets"]))
    if flags["sections"] != tuple(sorted(SECTIONS)):
        parts.append("sections " + ", ".join(flags["sections"]))
    if flags["scenarios"]:
        parts.append("scenarios " + ", ".join(flags["scenarios"]))
    if flags["limit"] is not None:
        parts.append(f"first {flags['limit']} records per scenario")
    if flags["sample"] is not None:
        parts.append(f"sample {flags['sample'] * 100:g}% (seed {flags['seed']})")
    return " · ".join(parts) or "full selection"


def _settings_label(settings: dict[str, Any]) -> str:
    """Template, order and votes, plus the selection flags that make a run a subset."""
    parts = [str(settings[key]) for key in ("template", "order") if settings.get(key)]
    samples, temperature = settings.get("samples"), _number(settings.get("temperature"))
    if isinstance(samples, int):
        vote = f"k={samples}"
        if samples > 1 and temperature is not None:
            vote += f" T={temperature:g}"
        parts.append(vote)
    flags = _selection(settings) or {}
    for key, every in (("sets", SETS), ("sections", SECTIONS)):
        if key in flags and flags[key] != tuple(sorted(every)):
            parts.append(f"{key}={','.join(flags[key])}")
    if flags.get("scenarios"):
        parts.append("scenarios=" + ",".join(flags["scenarios"]))
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


# ---------------------------------------------------------------- the groups and table all renderers share

# Group kinds, in the order they are listed.
RANKED, SELECTION, PARTIAL, SUSPECT = "ranked", "selection", "partial", "suspect"


@dataclass(frozen=True)
class _Group:
    """Runs that may be ranked against each other, under a header saying why they are apart."""

    kind: str  # RANKED | SELECTION | PARTIAL | SUSPECT
    title: str
    runs: list[Run]  # ranked, one per row
    headers: list[str]  # the board's, with "(chance)" on the scores when runs' chance levels differ
    rows: list[list[str]]
    chance_row: list[str] | None  # when every run of the group has the same chance levels


@dataclass(frozen=True)
class _Board:
    headers: list[str]
    numeric: list[bool]
    groups: list[_Group]
    notes: list[str]

    @property
    def runs(self) -> list[Run]:
        """Every run, in the order (and with the rank numbers) the table lists them."""
        return [run for group in self.groups for run in group.runs]

    def group_of(self, run: Run) -> _Group:
        return next(group for group in self.groups if any(member is run for member in group.runs))


_EXTRAS = (  # (header, value, what it means)
    ("1st pick", lambda run: run.first_pick_rate, "how often the answer shown first was preferred"),
    ("Consistency", lambda run: run.consistency, "with --order both, how often both orders gave the same verdict"),
    ("Unanimous", lambda run: run.unanimous, "with --samples K, how often all K votes agreed"),
)


def _ranked(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda run: (run.scores["overall"] is None, -(run.scores["overall"] or 0.0)))


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


def _status(run: Run) -> list[tuple[str, str]]:
    """(tag, detail) pairs: complete or partial (how far it got and why it stopped), SUSPECT, simulated."""
    if run.complete:
        tags = [("complete", "")]
    else:
        detail = f"{run.comparisons[0]:,} of {run.comparisons[1]:,} comparisons" if run.comparisons else ""
        if run.stopped_reason:
            detail += (", " if detail else "") + f"stopped: {run.stopped_reason}"
        tags = [("partial", detail)]
    if run.suspect:
        tags.append(("SUSPECT", ""))
    if run.simulated:
        tags.append(("simulated", ""))
    return tags


def _status_text(run: Run) -> str:
    return " · ".join(f"{tag}: {detail}" if detail else tag for tag, detail in _status(run))


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
    extras = [(title, get, meaning) for title, get, meaning in _EXTRAS if any(get(run) is not None for run in runs)]
    headers = [
        "#", "Judge", "Settings", *(TITLES[key] for key in SCORE_KEYS),
        "Status", "n", "Failed", "Unparsed", "Refused", "Cost", *(title for title, _, _ in extras),
    ]
    numeric = [header not in ("Judge", "Settings", "Status") for header in headers]
    groups: list[_Group] = []
    first = 1  # ranks run on across groups, so "#3" names one run in every table and chart
    for kind, title, members in _grouped(runs):
        ranked = _ranked(members)
        common = _common_chance(ranked)
        per_run_chance = common is None
        rows = []
        for rank, run in enumerate(ranked, first):
            cells = [
                _fmt(run.scores[key]) + (f" ({_fmt(run.chance_for(key))})" if per_run_chance else "")
                for key in SCORE_KEYS
            ]
            rows.append([
                str(rank), run.judge, run.label, *cells, _status_text(run), str(run.n), str(run.failed),
                str(run.unparsed), str(run.refused), _fmt_cost(run.cost_usd) + ("*" if run.cost_is_spend else ""),
                *(_fmt(get(run)) for _, get, _ in extras),
            ])
        chance_row = None
        if common is not None and any(level is not None for level in common.values()):
            chance_row = ["", "chance level", "", *(_fmt(common[key]) for key in SCORE_KEYS)]
            chance_row += [""] * (len(headers) - len(chance_row))
        group_headers = [
            header + (" (chance)" if per_run_chance and 3 <= index < 3 + len(SCORE_KEYS) else "")
            for index, header in enumerate(headers)
        ]
        groups.append(_Group(kind, title, ranked, group_headers, rows, chance_row))
        first += len(ranked)
    board_runs = [run for group in groups for run in group.runs]
    notes = [f"{title}: {meaning}." for title, _, meaning in extras]
    if any(group.headers != headers for group in groups):
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
    for number, run in enumerate(board_runs, 1):
        warnings = list(run.warnings)
        if run.suspect and not warnings:
            warnings = ["more comparisons ended unparsed or failed than --max-unparsed allows."]
        if warnings:
            mark = "SUSPECT: " if run.suspect else "warning: "
            notes.append(f"#{number} {run.judge} · {run.label}: {mark}" + " ".join(warnings))
    return _Board(headers, numeric, groups, notes)


def _fmt(value: float | None, digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _fmt_cost(value: float | None) -> str:
    if value is None:
        return DASH
    if 0 < value < 0.0001:
        return "<$0.0001"  # a real cost, however small, never reads as free
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"


PUBLISHED_TITLE = "RMB leaderboard (paper's Table 3, as reprinted in RM-R1, arXiv 2505.02387, Table 8)"


@cache
def published_leaderboard() -> dict[str, Any]:
    """The RMB paper's leaderboard rows (Table 3), shipped in `benchmarks/rmb_published.json`."""
    return json.loads((Path(__file__).parent / "benchmarks" / "rmb_published.json").read_text(encoding="utf-8"))


def _published_table() -> tuple[list[str], list[list[str]]]:
    headers = ["Model", "Type", *(TITLES[key] for key in SCORE_KEYS)]
    rows = [
        [row["model"], row["type"], *(_fmt(_number(row.get(key))) for key in SCORE_KEYS)]
        for row in published_leaderboard()["rows"]
    ]
    return headers, rows


# ---------------------------------------------------------------- terminal

_TITLE_STYLES = {RANKED: "bold", SELECTION: "bold cyan", PARTIAL: "bold magenta", SUSPECT: "bold red"}
_FOLD_MIN = 12  # a judge or model column narrower than its names folds them, never cuts them
_NAME_ROOM = 24  # one table for everything only if the names get this much (or all they need)
_TERMINAL_STATUS = 2 + len(SCORE_KEYS)  # the terminal's status column: after rank, judge and scores


@dataclass(frozen=True)
class _Column:
    """How narrow a terminal column may get without splitting a word or number, and how wide it wants to be."""

    kind: str  # "number" (right-aligned) or "words" wrap between words only; a "name" may fold
    minimum: int
    natural: int  # of the cells, each line whole
    header: int  # of the header on one line

    @property
    def comfortable(self) -> int:
        """Numbers on one line and names mostly whole: what a column needs to share one table with the rest."""
        if self.kind == "name":
            return max(self.minimum, min(self.natural, _NAME_ROOM))
        return max(self.natural, self.minimum) if self.kind == "number" else self.minimum

    @property
    def wants(self) -> tuple[int, int, int, int]:
        """How wide this column would like to be, at each step of `_widths`."""
        cells = max(self.natural, self.minimum)
        first = cells if self.kind == "number" else self.minimum
        second = cells if self.kind != "words" else self.minimum
        return first, second, max(second, self.header), max(cells, self.header)


def _column(kind: str, header: str, cells: list[str]) -> _Column:
    """`header` may hold several lines: the variants different groups show."""
    natural = max((len(line) for text in cells for line in text.split("\n")), default=1)
    header_line = max(len(line) for line in header.split("\n"))
    header_word = max((len(word) for word in header.split()), default=1)
    if kind == "name":
        return _Column(kind, min(natural, max(_FOLD_MIN, header_word)), natural, header_line)
    words = max((len(word) for text in cells for word in text.split()), default=1)
    return _Column(kind, max(words, header_word), natural, header_line)


def _span(widths: list[int]) -> int:
    """A rich table's width: each column padded by one space a side, with a border between and around."""
    return sum(widths) + 3 * len(widths) + 1


def _layout(columns: list[_Column], blocks: list[list[int]], width: int) -> list[list[tuple[int, int]]]:
    """(column, width) for each table to print, every table led by column 0 (rank or name).

    One table when every column fits comfortably; else as many columns per table as fit at
    their minimum width, a block starting a new table unless the last one holds only the
    spill-over of the block before."""
    everything = [0, *(index for block in blocks for index in block)]
    if _span([columns[index].comfortable for index in everything]) <= width:
        return [_widths(columns, everything, width)]
    plans: list[list[int]] = []
    plan, spill = [0], False  # spill: the table so far holds the end of a block cut short
    for block in blocks:
        if len(plan) > 1 and not spill:
            plans.append(plan)
            plan = [0]
        for index in block:
            if len(plan) > 1 and _span([columns[i].minimum for i in (*plan, index)]) > width:
                plans.append(plan)
                plan = [0]
            plan.append(index)
        spill = len(plan) < len(block) + 1
    plans.append(plan)
    return [_widths(columns, plan, width) for plan in plans]


def _widths(columns: list[_Column], plan: list[int], width: int) -> list[tuple[int, int]]:
    """Minimum widths; then, while there is room for all of them at once, every number on one line,
    names whole, headers on one line and status lines unwrapped; what room is left goes to names."""
    widths = {index: columns[index].minimum for index in plan}
    for step in range(4):
        wanted = {index: max(widths[index], columns[index].wants[step]) for index in plan}
        if _span(list(wanted.values())) > width:
            break
        widths = wanted
    room = width - _span(list(widths.values()))
    for index in plan:
        if columns[index].kind == "name":
            grow = max(0, min(columns[index].natural - widths[index], room))
            widths[index] += grow
            room -= grow
    return [(index, widths[index]) for index in plan]


def _fixed_table(headers: list[str], columns: list[_Column], plan: list[tuple[int, int]]) -> Table:
    """A rich table whose column widths are set, so rich neither squeezes nor ellipsizes a cell."""
    table = Table()
    for index, width in plan:
        justify = "right" if columns[index].kind == "number" else "left"
        table.add_column(headers[index], width=width, justify=justify, overflow="fold")
    return table


def render_terminal(runs: list[Run], console: Console, published: bool = False) -> None:
    """The leaderboard fitted to `console.width` (80 when piped, unless COLUMNS says otherwise):
    tables split by columns rather than cut, numbers never broken, judge names folded."""
    board = _board(runs)
    shown = [  # per group: headers, run rows, chance row
        (
            [text.plain for text in _terminal_row(group.headers, header=True)],
            [_terminal_row(row) for row in group.rows],
            _terminal_row(group.chance_row) if group.chance_row else None,
        )
        for group in board.groups
    ]
    cells = [row for _, rows, chance in shown for row in [*rows, chance] if row]
    kinds = ["number", "name", *["number"] * len(SCORE_KEYS), "words"]
    kinds += ["number"] * (len(board.headers) - 1 - len(kinds))  # settings share the judge's column
    columns = [
        _column(kind, "\n".join(headers[index] for headers, _, _ in shown), [row[index].plain for row in cells])
        for index, kind in enumerate(kinds)
    ]
    # Scores and status first; counts, cost and bias (by rank) in a second table if they do not fit beside them.
    blocks = [list(range(1, _TERMINAL_STATUS + 1)), list(range(_TERMINAL_STATUS + 1, len(kinds)))]
    plans = _layout(columns, blocks, console.width)
    console.print(Text("RMB leaderboard", style="bold"))
    for group, (headers, rows, chance) in zip(board.groups, shown):
        console.print(Text(group.title, style=_TITLE_STYLES[group.kind]))
        for plan in plans:
            table = _fixed_table(headers, columns, plan)
            for run, row in zip(group.runs, rows):
                style = "red" if run.suspect else "yellow" if run.simulated else None
                table.add_row(*(row[index] for index, _ in plan), style=style)
            if chance and any(2 <= index < _TERMINAL_STATUS for index, _ in plan):
                table.add_section()
                table.add_row(*(chance[index] for index, _ in plan), style="dim italic")
            console.print(table)
    for note in board.notes:
        console.print(Text(note, style="dim"))
    if published:
        paper_headers, paper_rows = _published_table()
        kinds = ["name", "words", *["number"] * len(SCORE_KEYS)]
        columns = [_column(kind, paper_headers[i], [row[i] for row in paper_rows]) for i, kind in enumerate(kinds)]
        console.print(Text(f"Published: {PUBLISHED_TITLE}", style="bold"))
        for plan in _layout(columns, [list(range(1, len(kinds)))], console.width):
            paper = _fixed_table(paper_headers, columns, plan)
            for row in paper_rows:
                paper.add_row(*(Text(row[index]) for index, _ in plan))
            console.print(paper)
        console.print(Text(f"Source: {_source()}", style="dim"))


def _terminal_row(row: list[str], header: bool = False) -> list[Text]:
    """A board row as the terminal shows it: settings under the judge (dim), status words stacked."""
    status_at = _TERMINAL_STATUS + 1  # the board has settings in a column of their own
    if header:
        judge = Text("Judge / settings")
    else:
        judge = Text(row[1])
        if row[2]:
            judge.append("\n" + row[2], style="dim")
    status = row[status_at] if header else row[status_at].replace(" · ", "\n")
    return [Text(row[0]), judge, *map(Text, row[3:status_at]), Text(status), *map(Text, row[status_at + 1 :])]


def _source() -> str:
    return published_leaderboard()["source"]


# ---------------------------------------------------------------- markdown


def render_markdown(runs: list[Run], published: bool = False) -> str:
    board = _board(runs)
    lines = ["# RMB leaderboard"]
    for group in board.groups:
        rows = group.rows + ([group.chance_row] if group.chance_row else [])
        lines += ["", f"## {_md(group.title)}", "", *_markdown_table(group.headers, rows, board.numeric)]
    if board.notes:
        lines += ["", *(f"- {_md(note)}" for note in board.notes)]
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
        return "| " + " | ".join(map(_md, cells)) + " |"

    return [line(headers), "| " + " | ".join("---:" if right else "---" for right in numeric) + " |", *map(line, rows)]


def _md(text: str) -> str:
    """Text as Markdown shows it literally: `--scenarios '*Chat*'` must not turn italic, nor `|` split a cell."""
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", text)


# ---------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2937; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; font-size: 13px; max-width: 100%; }
th, td { padding: 4px 7px; border-bottom: 1px solid #e5e7eb; }
td { white-space: nowrap; }
th { background: #f3f4f6; text-align: left; vertical-align: bottom; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.simulated td { background: #fff7e0; } tr.suspect td { background: #fdecec; }
tr.group th { background: #fff; font-size: 14px; padding-top: 16px; border-bottom: 2px solid #9ca3af; }
tr.group.selection th { color: #155e75; } tr.group.partial th { color: #86198f; }
tr.group.suspect th { color: #b91c1c; }
tr.chance td { color: #6b7280; font-style: italic; border-top: 2px solid #9ca3af; }
.settings { color: #6b7280; font-size: 12px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; margin-left: 4px; }
.tag.partial { background: #fde2e1; color: #9b1c1c; } .tag.complete { background: #def7ec; color: #03543f; }
.tag.simulated { background: #fdf0c4; color: #8a5a00; } .tag.suspect { background: #b91c1c; color: #fff; }
line.group-break { stroke: #6b7280; stroke-dasharray: 3 3; }
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
        "<h2>Scores by section</h2>", _legend(board), _bar_chart(board),
        "<h2>Accuracy by scenario</h2>", _heatmap(board),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>RMB leaderboard</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_board(board: _Board) -> str:
    """Like the terminal table: judge and settings share a cell so the table fits a laptop screen.
    One table keeps the columns aligned; each group is a tbody under its own header row."""
    judge_at, status_at = board.headers.index("Judge"), board.headers.index("Status")
    keep = [index for index in range(len(board.headers)) if index != judge_at + 1]

    def row_html(cells: list[str], run: Run | None) -> str:
        tds = []
        for index in keep:
            content = escape(cells[index])
            if index == judge_at and cells[judge_at + 1]:
                content += f'<br><span class="settings">{escape(cells[judge_at + 1])}</span>'
            elif index == status_at and run is not None:
                tip = {"SUSPECT": _warning_tip(run)}
                content = "".join(
                    f'<span class="tag {tag.lower()}"{tip.get(tag, "")}>{escape(tag)}</span>' for tag, _ in _status(run)
                )
                details = [detail for _, detail in _status(run) if detail]
                if details:
                    content += f'<br><span class="settings">{escape("; ".join(details))}</span>'
            tds.append(f"<td{_num_class(board.numeric[index])}>{content}</td>")
        return "".join(tds)

    bodies = []
    for group in board.groups:
        head = "".join(
            f"<th>{'Judge / settings' if index == judge_at else escape(group.headers[index])}</th>" for index in keep
        )
        rows = [
            f'<tr class="group {group.kind}"><th colspan="{len(keep)}">{escape(group.title)}</th></tr>',
            f"<tr>{head}</tr>",
        ]
        for run, cells in zip(group.runs, group.rows):
            css = " ".join(["run"] + ["suspect"] * run.suspect + ["simulated"] * run.simulated)
            rows.append(
                f'<tr class="{css}" data-group="{group.kind}" title="{escape(str(run.path))}">'
                f"{row_html(cells, run)}</tr>"
            )
        if group.chance_row:
            rows.append(f'<tr class="chance">{row_html(group.chance_row, None)}</tr>')
        bodies.append(f'<tbody class="{group.kind}">\n' + "\n".join(rows) + "\n</tbody>")
    return '<table class="leaderboard">\n' + "\n".join(bodies) + "\n</table>"


def _warning_tip(run: Run) -> str:
    return f' title="{escape(" ".join(run.warnings))}"' if run.warnings else ""


def _html_table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "\n".join(
        "<tr>" + "".join(f"<td{_num_class(right)}>{escape(cell)}</td>" for cell, right in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    return f'<table class="published">\n<tr>{head}</tr>\n{body}\n</table>'


def _num_class(numeric: bool) -> str:
    return ' class="num"' if numeric else ""


def _run_titles(board: _Board) -> list[str]:
    """"#rank judge · settings" for each run, with why it is not ranked with the first group, if it is not."""
    titles = []
    for rank, run in enumerate(board.runs, 1):
        marks = ["other selection"] * (board.group_of(run).kind == SELECTION)
        marks += [tag for tag, _ in _status(run) if tag != "complete"]
        titles.append(f"#{rank} {run.judge} · {run.label}" + "".join(f" ({mark})" for mark in marks))
    return titles


def _slots(board: _Board) -> list[float]:
    """Each run's place along a chart, in run widths: groups are set apart by a gap."""
    slots, gap = [], 0.0
    for number, group in enumerate(board.groups):
        gap += 0.6 * (number > 0)
        slots += [len(slots) + gap for _ in group.runs]
    return slots


def _faded(board: _Board, run: Run) -> bool:
    """Runs outside the first group are drawn paler: their scores are not ranked against it."""
    return board.group_of(run) is not board.groups[0]


def _legend(board: _Board) -> str:
    items = [
        f'<li><span class="swatch" style="background:{_run_colour(index)}"></span>{escape(title)}</li>'
        for index, title in enumerate(_run_titles(board))
    ]
    items.append('<li><span class="swatch chance"></span>chance level</li>')
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _run_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _bar_chart(board: _Board) -> str:
    """Grouped bars: one group per section plus overall, one bar per run, a dashed line at chance;
    runs of later leaderboard groups stand apart and paler."""
    runs, titles, slots = board.runs, _run_titles(board), _slots(board)
    left, top, plot_h, bottom = 44, 16, 260, 30
    bar_w = max(8.0, min(34.0, 150 / max(len(runs), 1)))
    span = (slots[-1] + 1) if slots else 1
    group_w = bar_w * span + 28
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
            x = x0 + slots[index] * bar_w
            score, level = run.scores[key], run.chance_for(key)
            kind = board.group_of(run).kind
            if score is not None:
                title = f"{titles[index]}: {TITLES[key]} {score:.3f}"
                if level is not None:
                    title += f" (chance {level:.3f})"
                fade = ' fill-opacity="0.45"' if _faded(board, run) else ""
                parts.append(
                    f'<rect class="bar" data-run="{index + 1}" data-section="{key}" data-score="{score:.3f}" '
                    f'data-group="{kind}" x="{x:.1f}" y="{y(score):.1f}" width="{bar_w - 2:.1f}" '
                    f'height="{plot_h * score:.1f}" fill="{_run_colour(index)}"{fade}>'
                    f"<title>{escape(title)}</title></rect>"
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
            f'<text x="{x0 + bar_w * span / 2:.1f}" y="{top + plot_h + 18}" font-size="12" '
            f'text-anchor="middle" font-weight="600">{TITLES[key]}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _heatmap(board: _Board) -> str:
    """Rows are scenarios grouped by set and section, columns are runs; grey cells were not run.
    A dashed line and a gap part the runs of one leaderboard group from the next."""
    runs, slots = board.runs, _slots(board)
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
    titles = _run_titles(board)
    title_w = 6.0 * max(len(title) for title in titles)  # run titles are rotated 30 degrees
    header_h = 20 + title_w / 2
    span = slots[-1] + 1
    width = max(label_w + cell_w * span, label_w + cell_w * (span - 0.5) + title_w * 0.87 + 10)
    height = header_h + sum(group_h + cell_h * len(rows) for _, rows in groups) + 8

    parts = [f'<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}">']
    for index, title in enumerate(titles):
        x = label_w + cell_w * slots[index] + cell_w / 2
        parts.append(
            f'<text class="hm-run" font-size="11" transform="translate({x:.1f},{header_h - 6:.1f}) rotate(-30)">'
            f"{escape(title)}</text>"
        )
    for index in range(1, len(runs)):
        if slots[index] - slots[index - 1] > 1:
            x = label_w + cell_w * (slots[index] - 0.3)
            parts.append(
                f'<line class="group-break" data-before-run="{index + 1}" x1="{x:.1f}" x2="{x:.1f}" '
                f'y1="{header_h:.1f}" y2="{height - 4:.1f}"/>'
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
                x = label_w + cell_w * slots[index]
                accuracy = scenario.accuracy if scenario else None
                fill = ABSENT if accuracy is None else heat_colour(accuracy)
                tip = f"{path} · {titles[index]}: " + (
                    "not run" if accuracy is None else f"{accuracy:.3f} (n={scenario.n if scenario else '?'})"
                )
                parts.append(
                    f'<rect class="hm-cell" data-run="{index + 1}" data-scenario="{escape(path)}" '
                    f'data-accuracy="{"" if accuracy is None else f"{accuracy:.3f}"}" x="{x + 1:.1f}" y="{y + 1}" '
                    f'width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}"><title>{escape(tip)}</title></rect>'
                )
                if accuracy is not None:
                    parts.append(
                        f'<text class="hm-value" data-run="{index + 1}" data-scenario="{escape(path)}" '
                        f'x="{x + cell_w / 2:.1f}" y="{y + 14}" font-size="11" text-anchor="middle" '
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
