"""The leaderboard as Markdown: a table per group, then the notes and the published rows; with
runs on several benchmarks, a judge x benchmark table first and a leaderboard per benchmark."""

from __future__ import annotations

import re

from .behaviour import sections
from .load import Run
from .view import Board, Group, across, boards


def render_markdown(runs: list[Run], published: bool = False) -> str:
    shown = boards(runs, published)
    lines: list[str] = []
    if table := across(shown):
        lines += ["# Judges across benchmarks", "",
                  *_table(["Judge", *table.titles], [[judge, *cells] for judge, cells in table.rows],
                          [False, *(True for _ in table.titles)]),
                  "", _md(table.note), ""]
    return "\n".join(lines + [line for each in shown for line in _board(each)]) + "\n"


def _board(shown: Board) -> list[str]:
    lines = [f"# {_md(shown.title)}"]
    for group in shown.groups:
        lines += ["", f"## {_md(group.title)}", "", *_group_table(shown, group)]
    if shown.notes:
        lines += ["", *(f"- {_md(note)}" for note in shown.notes)]
    if shown.paired:
        lines += ["", "## Paired comparisons", "", *(f"- {_md(line)}" for line in shown.paired)]
    if said := sections(shown):
        lines += ["", "## Behaviour", ""]
        for title, told in said:
            lines += [f"- {_md(title)}", *(f"  - {_md(line)}" for line in told)]
    if shown.published:
        paper = shown.published
        headers = ["Model", "Type", *shown.score_titles]
        rows = [[model, kind, *scores] for model, kind, scores in paper.rows]
        lines += [
            "", f"## Published: {_md(paper.title)}", "",
            *_table(headers, rows, [index >= 2 for index in range(len(headers))]),
            "", f"Source: {_md(paper.source)}",
        ]
    if shown.views:
        lines += ["", "## Browse the records", "",
                  *(f"- {_md(what)}: `` {command} ``" for what, command in shown.views)]
    return lines + [""]


def _group_table(shown: Board, group: Group) -> list[str]:
    """Judge and settings in columns of their own; a chance row under the runs when they share one."""
    headers = ["#", "Judge", "Settings", *group.score_titles, "Status", *shown.detail_titles]
    numeric = [header not in ("Judge", "Settings", "Status") for header in headers]
    rows = [
        [str(row.rank), row.run.judge, row.run.label, *row.scores, row.status_text, *row.details]
        for row in group.rows
    ]
    if group.chance:
        rows.append(["", "chance level", "", *group.chance, "", *[""] * len(shown.detail_titles)])
    return _table(headers, rows, numeric)


def _table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(map(_md, cells)) + " |"

    return [line(headers), "| " + " | ".join("---:" if right else "---" for right in numeric) + " |", *map(line, rows)]


def _md(text: str) -> str:
    """Text as Markdown shows it literally: `--scenarios '*Chat*'` must not turn italic, nor `|` split a cell."""
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", text)
