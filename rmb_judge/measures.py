"""How a judge behaves beyond its scores, typed: biases (`Behaviour`), verdict probabilities
(`Calibration`) and agreement between two judges (`JudgeAgreement`), as summary.json and `compare`
hold them; `behaviour.py`, `calibration.py` and `agreement.py` compute them. Every measure
carries its 95% interval, and the few helpers here give the intervals of the shares and
paired differences they are built of, with each record's units as one cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from . import intervals


@dataclass
class Measure:
    """A number with its 95% interval, over `n` units (comparisons or presentations)."""

    value: float | None = None
    interval: list[float] | None = None
    n: int = 0


@dataclass
class Gap:
    """A paired difference (the judge's share minus the labels', run A minus run B), its 95%
    interval and two-sided p-value."""

    value: float | None = None
    interval: list[float] | None = None
    p_value: float | None = None
    n: int = 0


@dataclass
class Preference:
    """How often the judge picks answers of a kind (the longer one, its own family's) against
    how often the labels prefer them, on the same presentations."""

    judge: Measure = field(default_factory=Measure)
    label: Measure = field(default_factory=Measure)
    difference: Gap = field(default_factory=Gap)  # judge - label: above 0, the judge favours them more


@dataclass
class SelfPreference:
    family: str = ""  # the judge's model family
    # on presentations where exactly one answer comes from that family and the verdict picks a side
    prefers_own: Preference = field(default_factory=Preference)
    accuracy_own: Measure = field(default_factory=Measure)  # presentations with an answer of that family
    accuracy_others: Measure = field(default_factory=Measure)  # presentations with none


@dataclass
class ModelAccuracy:
    """Accuracy on the presentations where `model` wrote one of the answers, and split by
    whether it wrote the label-preferred one or the other."""

    model: str = ""
    family: str | None = None
    accuracy: Measure = field(default_factory=Measure)
    when_preferred: Measure = field(default_factory=Measure)
    when_other: Measure = field(default_factory=Measure)


@dataclass
class Behaviour:
    """Biases and behaviour, from the run's judged presentations: each order and comparison
    is a unit (a tie counts 0.5 of a win), a record's units one cluster."""

    presentations: int = 0
    length: Preference | None = None  # on presentations whose answers differ in length and verdict picks a side
    self_preference: SelfPreference | None = None  # None: the judge's model family is not known
    models: list[ModelAccuracy] = field(default_factory=list)  # most presentations first
    refusal: Measure | None = None  # share of presentations the judge refused (None: a reward model)
    note: str = ""  # what was left out, and why


@dataclass
class ReliabilityBin:
    """Comparisons whose confidence (the probability of the answer the judge favours) lies in
    [low, high): their mean confidence and how often the favoured answer was the preferred one."""

    low: float = 0.0
    high: float = 0.0
    n: int = 0
    confidence: float = 0.0
    accuracy: float = 0.0


@dataclass
class Calibration:
    """--verdict-probs: how well the judge's P(right answer) forecasts the labels."""

    comparisons: int = 0  # with a probability (every presentation's verdict token read)
    without: int = 0  # judged comparisons without one (no verdict token, or no logprobs)
    mean_probability: float | None = None  # of the label-preferred answer (a tie counts half)
    brier: Measure = field(default_factory=Measure)  # mean (1 - P(right))^2: 0 perfect, 0.25 a coin
    ece: Measure = field(default_factory=Measure)  # expected calibration error over `bins`
    auroc: Measure = field(default_factory=Measure)  # P(a right answer's probability > a wrong one's)
    bins: list[ReliabilityBin] = field(default_factory=list)


@dataclass
class JudgeAgreement:
    """Two judges' verdicts on the comparisons both judged (relative to the label: the
    preferred answer, the other, or a tie), where both read one."""

    comparisons: int = 0
    raw: Measure = field(default_factory=Measure)  # share of equal verdicts
    kappa: Measure = field(default_factory=Measure)  # Cohen's kappa: agreement beyond chance (None: 0/0)
    without: int = 0  # shared comparisons left out: a verdict missing in either run


def share(clusters: Sequence[Sequence[float]]) -> Measure:
    """The mean of units in [0, 1] that come in clusters, with its interval (intervals.clustered)."""
    estimate = intervals.clustered(clusters)
    n = sum(map(len, clusters))
    return Measure(None, None, n) if estimate is None else Measure(estimate.value, estimate.interval, n)


def paired(clusters: Sequence[Sequence[float]]) -> Gap:
    """The mean of paired differences in [-1, 1] that come in clusters: its interval as
    `intervals.paired` gives one (Wilson's on the (d + 1) / 2 scale, mapped back, so differences
    all alike keep the width their number allows) and the sign-flip test's p-value (each
    cluster's sum flips as one)."""
    groups = [c for c in clusters if c]
    n = sum(map(len, groups))
    if not n:
        return Gap()
    sums = [sum(c) for c in groups]
    counts = [len(c) for c in groups]
    value = sum(sums) / n
    scaled = intervals.stratified([intervals.Stratum(1.0, [(s + m) / 2 for s, m in zip(sums, counts, strict=True)],
                                                     counts)])
    assert scaled is not None
    low, high = (2 * scaled.low - 1, 2 * scaled.high - 1) if len(groups) > 1 else (-1.0, 1.0)
    p_value, _ = intervals.sign_flip_p(value, [abs(s) / n for s in sums if s])
    return Gap(value, [max(-1.0, min(low, value)), min(1.0, max(high, value))], p_value, n)
