"""95% intervals for scores, rates and paired differences: pure functions, standard library only.

Every score rmb-judge reports is a weighted mean of stratum means: a section score is the mean
over its records, which is the mean of its scenarios' accuracies weighted by their sizes; `overall`
weights each section's scenarios by 1/sections; a macro average weights scenarios equally; a
`--precision` run weights each scenario by its size in the selection although it judged only a
sample of it. The interval treats the records of a scenario as a sample of the records that
scenario stands for (the judge's accuracy on more prompts of that kind is what the interval is
about), so a full run has one too and a sampled run's is wider.

The method (README: "How sure is a score?"):
- the variance of the estimate is the stratified one, sum of W_h^2 s_h^2 / n_h over scenarios h
  (records resampled within each scenario would give the same, up to n/(n-1)), with each s_h^2
  shrunk a little toward the pooled within-scenario variance (see `stratified`); units that come
  in clusters (the comparisons of one Best-of-N record, the two orders of `--order both`) are
  summed per cluster first, so correlated units are not counted as independent;
- the interval is Wilson's score interval at the effective sample size that variance implies
  (n_eff = p(1-p)/variance, Korn and Graubard's design-effect adjustment). A Wald interval
  p +- 1.96 se is too narrow near 0 and 1, where a near-perfect judge's scores sit: it is
  [1, 1] for a scenario whose every record was won. Wilson's stays inside [0, 1] and keeps
  its coverage there; `bin/bench-precision` measures it. A record's score lies in [0, 1] (ties
  score 0.5), so its variance is at most p(1-p), which the Wilson form assumes.

Paired differences of two runs on the same records use the paired (within-record) differences:
a stratified normal interval for the mean difference, and for the p-value the sign-flip test
(under "no difference" each record's difference is as likely to have either sign), exact when
few records differ and by its normal approximation (McNemar's test, generalized to ties and
weights) when many do.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)
EXACT_SUPPORT = 20_000  # the sign-flip distribution is enumerated when it has at most this many values


@dataclass(frozen=True)
class Stratum:
    """One scenario's sample: its weight in the score and, per cluster (a record), the sum of
    its units' values and how many units it has (a record's score is one unit)."""

    weight: float
    sums: Sequence[float]
    counts: Sequence[int] | None = None  # None: one unit per cluster

    @property
    def clusters(self) -> int:
        return len(self.sums)

    @property
    def units(self) -> int:
        return len(self.sums) if self.counts is None else sum(self.counts)


@dataclass(frozen=True)
class Estimate:
    """A weighted mean of stratum means, its variance and its 95% interval."""

    value: float
    variance: float
    n_eff: float  # the binomial sample size with the same information (Wilson's n)
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return half_width(self.value, (self.low, self.high))

    @property
    def interval(self) -> list[float]:
        return [self.low, self.high]


def half_width(value: float, interval: Sequence[float]) -> float:
    """How far the 95% interval reaches from the score, on its farther side: Wilson's interval
    is not symmetric near 0 and 1, and "±H" must hold on both sides."""
    return max(value - interval[0], interval[1] - value)


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion p observed on n trials (n may be fractional)."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(p, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at p = 0 (1) the lower (upper) bound is exactly 0 (1); rounding must not move it off
    return (0.0 if p == 0 else max(0.0, centre - half)), (1.0 if p == 1 else min(1.0, centre + half))


SHRINK = 4.0  # a stratum's variance is pooled with the others', worth this many clusters


def _spread(stratum: Stratum, mean: float) -> tuple[float, int]:
    """A stratum's unit variance (of one cluster, per unit: the variance of its mean times its
    clusters) and its degrees of freedom (0 with one cluster)."""
    n = stratum.clusters
    if n < 2:
        return 0.0, 0
    counts = stratum.counts or [1] * n
    per_cluster = sum(counts) / n
    spread = sum((y - mean * m) ** 2 for y, m in zip(stratum.sums, counts, strict=True))
    return spread / (n - 1) / (per_cluster * per_cluster), n - 1


def stratified(strata: Iterable[Stratum], z: float = Z95, bounded: bool = True) -> Estimate | None:
    """The weighted mean of the strata's means with its variance and interval (None: no data).

    Weights are normalized over the strata that hold any unit. Each stratum's variance is
    shrunk toward the pooled within-stratum variance, as if it held SHRINK more clusters of
    that spread: a scenario whose few records were all won (or a single record) says little
    about its variance, and a variance of 0 there made the interval of a near-perfect judge
    too narrow (bin/bench-precision measured 85% coverage without it). Large strata keep
    their own. `bounded`: values lie in [0, 1] and the interval is Wilson's at the effective
    sample size; otherwise (a difference) it is the normal one.
    """
    present = [s for s in strata if s.clusters and s.units]
    if not present:
        return None
    total_weight = sum(s.weight for s in present)
    if total_weight <= 0:
        return None
    weights = [s.weight / total_weight for s in present]
    means = [sum(s.sums) / s.units for s in present]
    value = sum(w * m for w, m in zip(weights, means, strict=True))
    spreads = [_spread(s, m) for s, m in zip(present, means, strict=True)]
    freedom = sum(df for _, df in spreads)
    pooled = sum(u * df for u, df in spreads) / freedom if freedom else 0.0
    if not bounded:
        # A difference has no binomial fallback: strata of one record borrow at least the
        # spread of those records across strata (collapsed strata), and one record alone
        # says nothing about its spread.
        singles = [m for m, (_, df) in zip(means, spreads, strict=True) if df == 0]
        if len(singles) >= 2:
            pooled = max(pooled, statistics.variance(singles))
        elif singles and not freedom:
            return Estimate(value, math.inf, 0.0, -math.inf, math.inf)
    variance = sum(
        w * w * (u * df + SHRINK * pooled) / (df + SHRINK) / s.clusters
        for w, s, (u, df) in zip(weights, present, spreads, strict=True)
    )
    kish = 1 / sum(w * w / s.clusters for w, s in zip(weights, present, strict=True))
    if not bounded:
        half = z * math.sqrt(variance)
        return Estimate(value, variance, kish, value - half, value + half)
    p = min(max(value, 0.0), 1.0)
    n_eff = p * (1 - p) / variance if variance > 0 and 0 < p < 1 else kish
    low, high = wilson(p, n_eff, z)
    return Estimate(value, variance, n_eff, low, high)


def mean_of(values: Sequence[float], z: float = Z95) -> Estimate | None:
    """A plain mean of independent values in [0, 1] (a scenario's accuracy)."""
    return stratified([Stratum(1.0, values)], z)


def clustered(clusters: Iterable[Sequence[float]], z: float = Z95) -> Estimate | None:
    """The mean of units in [0, 1] that come in clusters (a record's comparisons or votes)."""
    groups = [c for c in clusters if c]
    return stratified([Stratum(1.0, [sum(c) for c in groups], [len(c) for c in groups])], z)


@dataclass(frozen=True)
class Difference:
    """A paired difference of two scores on the same records."""

    value: float
    low: float
    high: float
    p_value: float
    records: int
    differing: int  # records on which the two scores differ
    exact: bool  # p-value by enumeration rather than its normal approximation


def paired(strata: Iterable[tuple[float, Sequence[float]]], z: float = Z95) -> Difference | None:
    """The weighted mean of per-record differences (each stratum: weight, differences), with a
    normal 95% interval and the two-sided p-value of the sign-flip test."""
    listed = [(w, d) for w, d in strata if d]
    estimate = stratified([Stratum(w, d) for w, d in listed], z, bounded=False)
    if estimate is None:
        return None
    total_weight = sum(w for w, _ in listed)
    magnitudes = [w / total_weight / len(d) * abs(x) for w, d in listed for x in d if x]
    p_value, exact = sign_flip_p(estimate.value, magnitudes)
    low, high = max(-1.0, estimate.low), min(1.0, estimate.high)
    return Difference(estimate.value, low, high, p_value, sum(len(d) for _, d in listed), len(magnitudes), exact)


def sign_flip_p(observed: float, magnitudes: Sequence[float]) -> tuple[float, bool]:
    """P(|sum of +-magnitudes| >= |observed|) with independent fair signs; (p, exact)."""
    if not magnitudes:
        return 1.0, True
    # in units of the largest magnitude, so rounding and tolerance are relative to the values
    # (absolute ones lost the observed sum's own probability when magnitudes were ~1/3000)
    scale = max(magnitudes)
    observed = abs(observed) / scale
    tolerance = 1e-7
    grouped: dict[float, int] = {}
    for m in magnitudes:
        key = round(m / scale, 9)
        grouped[key] = grouped.get(key, 0) + 1
    if math.prod(c + 1 for c in grouped.values()) <= EXACT_SUPPORT:
        distribution = {0.0: 1.0}
        for magnitude, count in grouped.items():
            step = {magnitude * (2 * k - count): _half_binomial(count, k) for k in range(count + 1)}
            merged: dict[float, float] = {}
            for a, pa in distribution.items():
                for b, pb in step.items():
                    key = round(a + b, 9)
                    merged[key] = merged.get(key, 0.0) + pa * pb
            distribution = merged
        p = sum(pr for total, pr in distribution.items() if abs(total) >= observed - tolerance)
        return min(1.0, p), True
    spread = math.sqrt(sum((m / scale) ** 2 for m in magnitudes))
    return 2 * (1 - NormalDist().cdf(observed / spread)), False


def _half_binomial(n: int, k: int) -> float:
    """P(K = k) for K ~ Binomial(n, 1/2)."""
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2))
