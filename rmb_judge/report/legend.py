"""A chart's legend inside its SVG, so a chart downloaded for a paper still says which colour
is which run: one entry a line under the plot, its text cut to the chart's width (the whole
title is the entry's tooltip)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROW = 16  # px per entry
CHAR = 6.4  # px of an average character at the legend's 11 px (system-ui); a text is cut to fit


@dataclass(frozen=True)
class Key:
    x: float
    y: float  # the baseline of its text
    colour: str
    mark: str  # "swatch" (a run), "line" or "dashed" (a reference line)
    text: str
    tip: str


def legend(entries: Sequence[tuple[str, str, str]], x: float, y: float, width: float) -> list[Key]:
    """(colour, title, mark) entries laid out from (x, y) down, each cut to `width` px."""
    chars = max(8, int((width - 18) / CHAR))
    return [Key(x, y + ROW * number + 11, colour, mark, title if len(title) <= chars else title[: chars - 1] + "…",
                title)
            for number, (colour, title, mark) in enumerate(entries)]


def height(entries: int) -> int:
    """What a legend of this many entries adds to a chart's height."""
    return ROW * entries + 8 if entries else 0
