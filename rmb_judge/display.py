"""What the user watches during a run: a rich live view on a terminal, plain periodic
lines otherwise (or with --no-progress). It only reads state; the engine and scorer write it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .judgments import Judged
from .records import Record

QUALITY = ("unparsed", "refused", "failed", "truncated")


class PipeConsole(Console):
    """A rich console for a command's output: stdout's reader going away (`| head`) ends the
    command as any other write would, with BrokenPipeError (exit 141, as for SIGPIPE); rich's
    own handling exits 1, the status of an incomplete run."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


@dataclass
class SectionProgress:
    """A section's records: how many to judge, how many are judged (every comparison), and the
    score they make so far, weighted as the summary weighs them."""

    total: int = 0  # records to judge
    done: int = 0  # records whose every comparison is judged
    scenarios: dict[str, list[float]] = field(default_factory=dict)  # category_path -> [sum, records]
    population: dict[str, int] | None = None  # a --precision run's scenario sizes in the selection

    @property
    def accuracy(self) -> float | None:
        """The section score of the records judged so far (scoring.estimates' value)."""
        judged = {path: total / n for path, (total, n) in self.scenarios.items() if n}
        if not judged:
            return None
        weight = {path: (self.population or {}).get(path) or self.scenarios[path][1] for path in judged}
        return sum(weight[p] * judged[p] for p in judged) / sum(weight.values())


@dataclass
class Rounds:
    """A --precision run's progress: its round, the interval of overall against the target,
    and the requests of the round being judged."""

    target: float
    round: int = 0
    overall: float | None = None  # after the last round judged
    half_width: float | None = None
    requests: int = 0  # the round's requests to send
    answered: int = 0  # of them, answered so far

    def line(self) -> str:
        reached = ("-" if self.overall is None or self.half_width is None
                   else f"{self.overall:.3f} ±{self.half_width:.3f}")
        return (f"round {self.round}: overall {reached} (target ±{self.target:g}); "
                f"round requests {self.answered}/{self.requests}")


@dataclass
class RunProgress:
    """Per-section progress and running scores, plus the engine's live numbers."""

    judge: str
    simulated: bool
    metrics: Callable[[], dict[str, str]] = dict
    sections: dict[str, SectionProgress] = field(default_factory=dict)  # by section key, in order
    started: float = field(default_factory=time.monotonic)
    quality: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUALITY, 0))
    notice: str = ""  # what the run is doing that the numbers do not say (stopping, waiting)
    rounds: Rounds | None = None  # a --precision run's

    def expect(self, sections: Sequence[str], records: Iterable[Record],
               population: dict[str, int] | None = None) -> None:
        """Rows for these sections (in this order); `records` to judge (more may follow:
        `more`); `population`: a --precision run's scenario sizes, which weigh its scores."""
        self.sections = {key: SectionProgress(population=population) for key in sections}
        self.more(records)

    def more(self, records: Iterable[Record]) -> None:
        for record in records:
            self.sections[record.section].total += 1

    def add(self, judged: Judged) -> None:
        """A presentation's verdict: what makes a run suspect, counted as the summary counts it."""
        if judged.error:
            self.quality["failed"] += 1
        elif judged.refused:
            self.quality["refused"] += 1
        elif judged.verdict is None:
            self.quality["unparsed"] += 1
        if judged.truncated:
            self.quality["truncated"] += 1

    def record(self, record: Record, score: float) -> None:
        """A record whose every comparison is judged, with the score the summary gives it."""
        section = self.sections[record.section]
        section.done += 1
        counted = section.scenarios.setdefault(record.subset, [0.0, 0])
        counted[0] += score
        counted[1] += 1

    def quality_line(self) -> str:
        """Verdicts that are not verdicts, so far: what makes a run suspect, seen early."""
        return "  ".join(f"{k}: {v}" for k, v in self.quality.items())

    @property
    def total(self) -> int:
        return sum(s.total for s in self.sections.values())

    @property
    def done(self) -> int:
        return sum(s.done for s in self.sections.values())

    def eta(self) -> str:
        """Time left for the records to judge; a --precision run's rounds have no end known in
        advance, so it says none (its round's requests are counted instead)."""
        elapsed = time.monotonic() - self.started
        if self.rounds is not None or not self.done or self.done >= self.total:
            return "-"
        return _duration(elapsed / self.done * (self.total - self.done))

    def numbers(self) -> dict[str, str]:
        """The engine's numbers, with the ETA where one is known."""
        shown = self.metrics()
        if self.rounds is None:
            shown["ETA"] = self.eta()
        return shown


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


class LiveView:
    """The rich renderable: one progress row per section (records judged, the score so far),
    a --precision run's round, and a line of engine numbers."""

    def __init__(self, progress: RunProgress):
        self.progress = progress

    def __rich__(self) -> Any:
        p = self.progress
        title = f"rmb-judge  {p.judge}" + ("  [SIMULATED judge: not a real model]" if p.simulated else "")
        table = Table(title=title, title_justify="left", expand=False)
        table.add_column("section", no_wrap=True, min_width=21)
        table.add_column("progress", width=26)
        table.add_column("records", justify="right")
        table.add_column("score", justify="right")
        for key, s in p.sections.items():
            if s.total:
                table.add_row(key, ProgressBar(total=s.total, completed=s.done, width=24),
                              f"{s.done}/{s.total}", _percent(s.accuracy))
        line = Text("  ".join(f"{k}: {v}" for k, v in p.numbers().items()), style="dim")
        bad = sum(p.quality[k] for k in ("unparsed", "failed"))
        quality = Text("verdicts  " + p.quality_line(), style="bold red" if bad else "dim")
        parts: list[Any] = [table, quality, line]
        if p.rounds is not None:
            parts.insert(1, Text(p.rounds.line(), style="bold"))
        if p.notice:
            parts.append(Text(p.notice, style="bold yellow"))
        return Group(*parts)


class Display:
    """`async with Display(progress, live=...)`: live view or plain lines every `interval` s."""

    def __init__(self, progress: RunProgress, live: bool, interval: float = 10.0,
                 stream: TextIO | None = None):
        self.progress = progress
        self.live = live
        self.interval = interval
        self.stream = stream or sys.stderr
        self._task: asyncio.Task | None = None
        self._live: Live | None = None

    async def __aenter__(self) -> Display:
        if self.live:
            self._live = Live(LiveView(self.progress), console=Console(stderr=True), refresh_per_second=4,
                              transient=False)
            self._live.start()
        else:
            self._task = asyncio.create_task(self._plain())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._live:
            self._live.refresh()
            self._live.stop()
        if self._task:
            self._task.cancel()
            self.line()

    async def _plain(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.line()

    def line(self) -> None:
        p = self.progress
        total = p.total or 1
        parts = [p.rounds.line()] if p.rounds is not None else []
        parts.append(f"{p.done}/{p.total} records ({100 * p.done / total:.0f}%)")
        parts += [f"{k} {_percent(s.accuracy)}" for k, s in p.sections.items() if s.total]
        parts += [f"{k} {v}" for k, v in {**p.quality, **p.numbers()}.items()]
        if p.notice:
            parts.append(p.notice)
        tag = " [simulated]" if p.simulated else ""
        print(f"[rmb-judge{tag}] " + " | ".join(parts), file=self.stream, flush=True)
