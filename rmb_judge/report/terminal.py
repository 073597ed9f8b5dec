"""The leaderboard for the terminal, fitted to its width: tables split by columns rather than
cut, numbers never broken, judge names folded over lines rather than ellipsized."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .load import Run
from .view import (
    PARTIAL,
    RANKED,
    SELECTION,
    SUSPECT,
    Across,
    Board,
    Group,
    PublishedTable,
    Row,
    across,
    boards,
    view_command,
)

_TITLE_STYLES = {RANKED: "bold", SELECTION: "bold cyan", PARTIAL: "bold magenta", SUSPECT: "bold red"}
_FOLD_MIN = 12  # a judge or model column narrower than its names folds them, never cuts them
_NAME_ROOM = 24  # one table for everything only if the names get this much (or all they need)


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
        table.add_column(headers[index], width=width, overflow="fold",
                         justify="right" if columns[index].kind == "number" else "left")
    return table


def render_terminal(runs: list[Run], console: Console, published: bool = False) -> None:
    """The leaderboard fitted to `console.width` (80 when piped, unless COLUMNS says otherwise);
    with runs on several benchmarks, a judge x benchmark table first and a leaderboard per benchmark."""
    shown = boards(runs, published)
    if table := across(shown):
        _render_across(table, console)
    for each in shown:
        _render_board(each, console)


def _render_across(table: Across, console: Console) -> None:
    headers = ["Judge", *table.titles]
    rows = [[judge, *cells] for judge, cells in table.rows]
    kinds = ["name", *("number" for _ in table.titles)]
    columns = [_column(kind, headers[index], [row[index] for row in rows]) for index, kind in enumerate(kinds)]
    console.print(Text("Judges across benchmarks", style="bold"))
    for plan in _layout(columns, [list(range(1, len(kinds)))], console.width):
        printed = _fixed_table(headers, columns, plan)
        for row in rows:
            printed.add_row(*(Text(row[index]) for index, _ in plan))
        console.print(printed)
    console.print(Text(table.note, style="dim"))


def _render_board(shown: Board, console: Console) -> None:
    scores = len(shown.score_keys)
    status_at = 2 + scores  # after rank, judge (with its settings) and the scores
    tables = [  # per group: headers, run rows, chance row
        (_headers(shown, group), [_row(row) for row in group.rows], _chance_row(shown, group))
        for group in shown.groups
    ]
    cells = [row for _, rows, chance in tables for row in [*rows, chance] if row]
    kinds = ["number", "name", *["number"] * scores, "words", *["number"] * len(shown.detail_titles)]
    columns = [
        _column(kind, "\n".join(headers[index] for headers, _, _ in tables), [row[index].plain for row in cells])
        for index, kind in enumerate(kinds)
    ]
    # Scores and status first; counts, cost and bias (by rank) in a second table if they do not fit beside them.
    blocks = [list(range(1, status_at + 1)), list(range(status_at + 1, len(kinds)))]
    plans = _layout(columns, blocks, console.width)
    console.print(Text(shown.title, style="bold"))
    for group, (headers, rows, chance) in zip(shown.groups, tables, strict=True):
        console.print(Text(group.title, style=_TITLE_STYLES[group.kind]))
        for plan in plans:
            table = _fixed_table(headers, columns, plan)
            for row, texts in zip(group.rows, rows, strict=True):
                style = "red" if row.run.suspect else "yellow" if row.run.simulated else None
                table.add_row(*(texts[index] for index, _ in plan), style=style)
            if chance and any(2 <= index < status_at for index, _ in plan):
                table.add_section()
                table.add_row(*(chance[index] for index, _ in plan), style="dim italic")
            console.print(table)
    for note in shown.notes:
        console.print(Text(note, style="dim"))
    if shown.paired:
        console.print(Text("Paired comparisons (rmb-judge compare)", style="bold"))
        for line in shown.paired:
            console.print(Text(line))
    if shown.published:
        _render_published(shown.score_titles, shown.published, console)
    if shown.rows:
        console.print(Text("Browse the records: " + view_command([row.run for row in shown.rows]), style="dim"))


def _headers(shown: Board, group: Group) -> list[str]:
    return ["#", "Judge / settings", *group.score_titles, "Status", *shown.detail_titles]


def _row(row: Row) -> list[Text]:
    """Settings under the judge (dim), status words stacked."""
    judge = Text(row.run.judge)
    if row.run.label:
        judge.append("\n" + row.run.label, style="dim")
    status = Text(row.status_text.replace(" · ", "\n"))
    return [Text(str(row.rank)), judge, *map(Text, row.scores), status, *map(Text, row.details)]


def _chance_row(shown: Board, group: Group) -> list[Text] | None:
    if not group.chance:
        return None
    blank = [Text("") for _ in shown.detail_titles]
    return [Text(""), Text("chance level"), *map(Text, group.chance), Text(""), *blank]


def _render_published(score_titles: list[str], paper: PublishedTable, console: Console) -> None:
    headers = ["Model", "Type", *score_titles]
    rows = [[model, kind, *scores] for model, kind, scores in paper.rows]
    kinds = ["name", "words", *["number"] * len(score_titles)]
    columns = [_column(kind, headers[index], [row[index] for row in rows]) for index, kind in enumerate(kinds)]
    console.print(Text(f"Published: {paper.title}", style="bold"))
    for plan in _layout(columns, [list(range(1, len(kinds)))], console.width):
        table = _fixed_table(headers, columns, plan)
        for row in rows:
            table.add_row(*(Text(row[index]) for index, _ in plan))
        console.print(table)
    console.print(Text(f"Source: {paper.source}", style="dim"))
