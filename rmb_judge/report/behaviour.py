"""A run's behaviour and calibration in words (the terminal after `run` and `jury`), and the
reliability diagram of the HTML report: each run with verdict probabilities drawn as its
bins' accuracy against their mean confidence, beside the diagonal of a calibrated judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..measures import Calibration, Gap, Measure, Preference
from .legend import Key, legend
from .legend import height as legend_height
from .load import Run
from .view import Board

MODELS_SHOWN = 6  # responder models in the terminal lines, most presentations first
LEGEND_WIDTH = 600  # px of the reliability diagram, wider than its plot so its legend can name the runs


def _measure(m: Measure, percent: bool = False) -> str:
    if m.value is None:
        return "—"
    scale, unit = (100, "%") if percent else (1, "")
    digits = 1 if percent else 3
    text = f"{scale * m.value:.{digits}f}{unit}"
    if m.interval:
        text += f" ({scale * m.interval[0]:.{digits}f}{unit} to {scale * m.interval[1]:.{digits}f}{unit})"
    return text


def _gap(g: Gap) -> str:
    if g.value is None:
        return "—"
    text = f"{g.value:+.3f}"
    if g.interval:
        text += f" ({g.interval[0]:+.3f} to {g.interval[1]:+.3f}"
        text += ", p < 0.001)" if g.p_value is not None and g.p_value < 0.001 else \
            f", p = {g.p_value:.3f})" if g.p_value is not None else ")"
    return text


def _preference(what: str, p: Preference) -> str:
    return (f"picks {what} {_measure(p.judge)} of {p.judge.n:,} presentations, the labels prefer it "
            f"{_measure(p.label)}: difference {_gap(p.difference)}")


def lines(run: Run) -> list[str]:
    """The run's behaviour and calibration, a line each (95% intervals in brackets)."""
    said = []
    behaviour = run.behaviour
    if behaviour is not None:
        if behaviour.length:
            said.append("length: " + _preference("the longer answer", behaviour.length))
        own = behaviour.self_preference
        if own is not None:
            said.append(f"self-preference ({own.family}): " + _preference(f"{own.family} answers", own.prefers_own)
                        + f"; accuracy with a {own.family} answer {_measure(own.accuracy_own)}, "
                          f"without {_measure(own.accuracy_others)}")
        if behaviour.refusal is not None:
            refusal = behaviour.refusal
            said.append(f"refusals: {_measure(refusal, percent=True)} of {refusal.n:,} presentations")
        if behaviour.models:
            shown = ", ".join(f"{m.model} {_value(m.when_preferred)} / {_value(m.when_other)}"
                              for m in behaviour.models[:MODELS_SHOWN])
            said.append(f"accuracy by responder model (where it wrote the preferred / the other answer): {shown}")
    if run.calibration is not None:
        said.append(calibration_line(run.calibration, jury=bool(run.jury)))
    return said


def sections(shown: Board) -> list[tuple[str, list[str]]]:
    """Each run's lines under its title, in rank order (runs with nothing to say left out)."""
    return [(row.title, said) for row in shown.rows if (said := lines(row.run))]


def _value(m: Measure) -> str:
    return "—" if m.value is None else f"{m.value:.2f}"


def calibration_line(c: Calibration, jury: bool = False) -> str:
    why = "a member gave none" if jury else "no verdict token read"
    without = f" ({c.without:,} without: {why})" if c.without else ""
    return (f"verdict probabilities on {c.comparisons:,} comparisons{without}: Brier {_measure(c.brier)}, "
            f"ECE {_measure(c.ece)}, AUROC {_measure(c.auroc)}")


# ---------------------------------------------------------------- reliability diagram


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    r: float
    tip: str


@dataclass(frozen=True)
class Curve:
    rank: int
    colour: str
    title: str
    path: str  # the SVG path through its points
    points: list[Point]


@dataclass(frozen=True)
class Reliability:
    width: int
    height: int
    left: int
    top: int
    size: int  # of the square plot
    ticks: list[tuple[float, str, float, str]]  # x pixel and its confidence, y pixel and its accuracy
    curves: list[Curve]
    legend: list[Key]


@dataclass(frozen=True)
class Forecaster:
    """A run as the reliability diagram draws it."""

    rank: int
    title: str
    colour: str
    calibration: Calibration | None


def reliability(runs: Sequence[Forecaster]) -> Reliability | None:
    """The diagram over confidence 0.5 to 1 (x) and accuracy 0 to 1 (y), one curve per run with
    verdict probabilities; a point's area follows its bin's comparisons."""
    rows = [row for row in runs if row.calibration and row.calibration.bins]
    if not rows:
        return None
    left, top, size = 44, 12, 300

    def x(confidence: float) -> float:
        return left + size * (confidence - 0.5) * 2

    def y(accuracy: float) -> float:
        return top + size * (1 - accuracy)

    curves = []
    for row in rows:
        calibration = row.calibration
        assert calibration is not None
        largest = max(b.n for b in calibration.bins)
        points = [Point(x(b.confidence), y(b.accuracy), 2 + 5 * (b.n / largest) ** 0.5,
                        f"{row.title}: confidence {b.low:.2f}-{b.high:.2f}, {b.n:,} comparisons, mean confidence "
                        f"{b.confidence:.3f}, accuracy {b.accuracy:.3f}") for b in calibration.bins]
        path = "M" + "L".join(f"{p.x:.1f},{p.y:.1f}" for p in points)
        curves.append(Curve(row.rank, row.colour, f"{row.title} (ECE {calibration.ece.value:.3f})"
                            if calibration.ece.value is not None else row.title, path, points))
    ticks = [(x(0.5 + t / 2), f"{0.5 + t / 2:g}", y(t), f"{t:g}") for t in (0, 0.25, 0.5, 0.75, 1)]
    width = max(left + size + 16, LEGEND_WIDTH)
    keys = legend([(curve.colour, curve.title, "swatch") for curve in curves]
                  + [("#111827", "a calibrated judge", "dashed")], 8, top + size + 44, width - 8)
    return Reliability(width, top + size + 44 + legend_height(len(keys)), left, top, size, ticks, curves, keys)
