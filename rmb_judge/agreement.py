"""What `compare` says of two judges beyond their scores: how often they agree (raw agreement
and Cohen's kappa) and how their verdict probabilities compare (Brier, ECE and AUROC, A - B),
on the comparisons of the records both runs scored.

Agreement is over each shared comparison's verdict relative to the label (the preferred
answer, the other, or a tie; `samples.combined` over its orders) where both runs read one;
kappa = (p_o - p_e) / (1 - p_e), p_e from each run's own shares of the three verdicts. Raw
agreement is a clustered share (a record's comparisons one cluster) with Wilson's interval;
kappa's interval comes from the simulated sampling distribution of the 3 x 3 table's totals
under record resampling, as ECE's (calibration.simulate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from . import calibration, samples
from .measures import Gap, JudgeAgreement, Measure, share

VERDICTS = ("win", "loss", "tie")


def kappa(table: Sequence[float]) -> float:
    """Cohen's kappa of a 3 x 3 table of counts (row: run A's verdict, column: run B's), flat."""
    n = sum(table)
    if n <= 0:
        return float("nan")
    size = len(VERDICTS)
    observed = sum(table[i * size + i] for i in range(size)) / n
    expected = sum(sum(table[i * size: (i + 1) * size]) * sum(table[i::size]) for i in range(size)) / (n * n)
    return (observed - expected) / (1 - expected) if expected < 1 else float("nan")


def between(a: Path, b: Path, records: set[tuple[str, str]]) -> tuple[JudgeAgreement, dict[str, Gap]]:
    """Agreement of runs `a` and `b`, and the differences of their probability measures, on the
    comparisons of `records` ((category_path, uid), those `compare` matched)."""
    ours, theirs = samples.read(a), samples.read(b)
    verdicts: dict[tuple[str, str], list[tuple[str | None, str | None]]] = {}
    forecasts: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for key, mine in ours.items():
        record = key[:2]
        if record not in records or key not in theirs:
            continue
        other = theirs[key]
        verdicts.setdefault(record, []).append((mine.outcome, other.outcome))
        if (x := mine.right) is not None and (y := other.right) is not None:
            forecasts.setdefault(record, []).append((x, y))
    read = {r: [(x, y) for x, y in pairs if x is not None and y is not None] for r, pairs in verdicts.items()}
    clusters = [c for c in read.values() if c]
    vectors = [_table(c) for c in clusters]
    totals, draws = calibration.simulate(vectors, len(VERDICTS) ** 2, kappa)
    low, high = calibration.quantiles(draws)
    n = sum(map(len, clusters))
    value = kappa(totals) if n else math.nan  # NaN: both runs gave one and the same verdict throughout
    agreement = JudgeAgreement(
        comparisons=n,
        raw=share([[float(x == y) for x, y in c] for c in clusters]),
        kappa=Measure(None, None, n) if math.isnan(value) else Measure(
            value, None if low is None else [low, high], n),  # type: ignore[list-item]
        without=sum(map(len, verdicts.values())) - n,
    )
    return agreement, calibration.differences(forecasts)


def _table(pairs: Sequence[tuple[str | None, str | None]]) -> dict[int, float]:
    cells: dict[int, float] = {}
    for x, y in pairs:
        cell = VERDICTS.index(x or "") * len(VERDICTS) + VERDICTS.index(y or "")
        cells[cell] = cells.get(cell, 0.0) + 1
    return cells


TITLES = {"brier": "Brier score", "ece": "calibration error (ECE)", "auroc": "AUROC"}


def render(agreement: JudgeAgreement | None, probabilities: dict[str, Gap]) -> list[str]:
    """`compare`'s lines on agreement and probabilities (none when not measured)."""
    lines = []
    if agreement is not None and agreement.comparisons:
        raw, kappa_ = agreement.raw, agreement.kappa
        left_out = f" ({agreement.without:,} left out: a verdict missing in either run)" if agreement.without else ""
        said = _with(kappa_) if kappa_.value is not None else \
            "undefined (both gave one and the same verdict throughout)"
        lines.append(f"agreement on {agreement.comparisons:,} comparisons both read: {_with(raw)} of verdicts "
                     f"equal, Cohen's kappa {said}{left_out}")
    for key, gap in probabilities.items():
        if gap.value is not None:
            p = "" if gap.p_value is None else f", p = {gap.p_value:.3f}" if gap.p_value >= 0.001 else ", p < 0.001"
            ci = "" if gap.interval is None else f" (95% CI {gap.interval[0]:+.3f} to {gap.interval[1]:+.3f}{p})"
            lines.append(f"{TITLES[key]}, A - B on {gap.n:,} comparisons with probabilities in both: "
                         f"{gap.value:+.3f}{ci}")
    return [""] + lines if lines else []


def _with(measure: Measure) -> str:
    if measure.value is None:
        return "—"
    if measure.interval is None:
        return f"{measure.value:.3f}"
    return f"{measure.value:.3f} (95% CI {measure.interval[0]:.3f} to {measure.interval[1]:.3f})"
