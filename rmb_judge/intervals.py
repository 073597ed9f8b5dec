"""95% intervals for scores, rates and paired differences: pure functions, standard library only.

Every score rmb-judge reports is a weighted mean of stratum means: a section score is the mean
over its records, which is the mean of its scenarios' accuracies weighted by their sizes; `overall`
weights each section's scenarios by 1/sections; a macro average weights scenarios equally; a
`--precision` run weights each scenario by its size in the selection although it judged only a
sample of it. The interval treats the records of a scenario as a sample of the records that
scenario stands for (the judge's accuracy on more prompts of that kind is what the interval is
about), so a full run has one too and a sampled run's is wider.

The method (README: "How sure is a score?"). The estimate is linear in the record scores,
sum over records of a_i y_i with a_i = W_h / n_h, and its variance is the linearization
(sandwich) variance over clusters:
- within a scenario, the stratified one, sum of W_h^2 s_h^2 / n_h (records resampled within
  each scenario would give the same, up to n/(n-1)), each s_h^2 shrunk a little toward its
  section's pooled within-scenario variance (`stratified`, `_shrunk`); units that come in
  clusters (the comparisons of one Best-of-N record, the two orders of `--order both`, the K
  votes of `--samples`) are summed per cluster first, and so are records of one scenario that
  are linked (below);
- records are linked when they hold an answer to the same conversation: a pairwise record and
  a Best-of-N record holding the same comparison are judged by one cached answer (7,476 of
  RMB's 15,728 distinct comparisons are in both sets), a reward model scores a shared answer
  once. Their scores are correlated, so `overall` (a mean over sections) needs the sections'
  covariance: the cross-scenario products of linked records' residuals are added (`_linked`);
  that covariance does not shrink with the sample (it is the full data's), so a sample's
  estimate of it comes from the few linked records it holds both of;
- a `--sample` run keeps each record by a coin, so each scenario's share of a section is
  random: the ratio estimator's between-scenario term, times 1 - f, is added (`_mix`);
- a section in which nothing varies (every record won, twelve ties, a difference of +1 on
  every record) is not certain: it gets a pseudo-count floor (`_pooled`).
The interval is Wilson's score interval at the effective sample size that variance implies
(n_eff = p(1-p)/variance, Korn and Graubard's design-effect adjustment). A Wald interval
p +- 1.96 se is too narrow near 0 and 1, where a near-perfect judge's scores sit: it is [1, 1]
for a scenario whose every record was won. Wilson's stays inside [0, 1] and keeps its coverage
there; `bin/bench-precision` measures it. A record's score lies in [0, 1] (ties score 0.5), so
its variance is at most p(1-p), which the Wilson form assumes. Where the variance rests on few
degrees of freedom (small scenarios, few linked sets), z is Student's t at the same level for
their Satterthwaite count (Korn and Graubard's df-adjusted effective sample size).

Paired differences of two runs on the same records use the paired (within-record) differences
d in [-1, 1]: the interval is the one above for (d + 1) / 2, mapped back, and the p-value the
sign-flip test's (under "no difference" each record's difference, or a linked set's together,
is as likely to have either sign), exact when few records differ and by its normal
approximation (McNemar's test, generalized to ties and weights) when many do.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)
EXACT_SUPPORT = 20_000  # the sign-flip distribution is enumerated when it has at most this many values


@dataclass(frozen=True)
class Stratum:
    """One scenario's sample: its weight in the score and, per cluster (a record), the sum of
    its units' values and how many units it has (a record's score is one unit).

    `group`: strata whose spreads are pooled for shrinkage (a section's scenarios). `links`,
    per cluster: clusters of any stratum that share a link are correlated (a record of
    another section that holds the same comparison, judged once for both) and count as one
    cluster in the variance. `size`: with `sampled`, the count the stratum's weight is
    proportional to within its group (default: its clusters)."""

    weight: float
    sums: Sequence[float]
    counts: Sequence[int] | None = None  # None: one unit per cluster
    group: Hashable = None
    links: Sequence[Hashable] | None = None  # None: each cluster on its own
    size: float | None = None

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


SHRINK = 4.0  # a stratum's variance is pooled with its group's, worth this many clusters


@dataclass(frozen=True)
class _Spread:
    """A stratum's spread: its unit variance u (the variance of its mean times its clusters),
    its degrees of freedom, and per linked set in it the residual total sum(y_c - m k_c) and
    how many of its clusters the set holds."""

    unit: float
    freedom: int
    residuals: dict[Hashable, float]
    sizes: dict[Hashable, int]


def _spread(stratum: Stratum, mean: float) -> _Spread:
    """A stratum's spread. Linked clusters inside the stratum (records of one scenario holding
    the same answer) are summed first and count as one: the variance of the ratio mean is
    c sum_L R_L^2 / (sum k)^2 over its G linked sets L, so correlated clusters are not counted
    as independent and a stratum of few sets is not credited with the freedom of many
    clusters. c = n / (n - sum_L m_L^2 / n), m_L the clusters of set L out of n, makes it
    unbiased when the clusters are in fact independent (the residuals are centered on the
    stratum's mean, which takes more from large sets): n/(n-1) when none are linked, G/(G-1)
    for G sets of equal size."""
    n = stratum.clusters
    counts = stratum.counts or [1] * n
    if stratum.links is None:  # each cluster its own set: the same sums, without a set per cluster
        if n < 2:
            return _Spread(0.0, 0, {}, {})
        squares = sum(r * r for r in (y - mean * k for y, k in zip(stratum.sums, counts, strict=True)))
        units = sum(counts)
        return _Spread(n / (n - 1) * squares / (units * units) * n, n - 1, {}, {})
    links = stratum.links
    residuals: dict[Hashable, float] = defaultdict(float)
    sizes: dict[Hashable, int] = defaultdict(int)
    for y, k, link in zip(stratum.sums, counts, links, strict=True):
        residuals[link] += y - mean * k
        sizes[link] += 1
    if len(residuals) < 2:
        return _Spread(0.0, 0, residuals, sizes)
    units = sum(counts)
    correction = n / (n - sum(m * m for m in sizes.values()) / n)
    unit = correction * sum(r * r for r in residuals.values()) / (units * units) * n
    return _Spread(unit, len(residuals) - 1, residuals, sizes)


def stratified(strata: Iterable[Stratum], z: float = Z95, sampled: float | None = None) -> Estimate | None:
    """The weighted mean of the strata's means (values in [0, 1]) with its variance and its
    interval, Wilson's at the effective sample size (None: no data).

    Weights are normalized over the strata that hold any unit. The variance, in three parts:
    - each stratum's W^2 s^2 / n (`_spread`), its s^2 shrunk toward its group's pooled
      within-stratum variance as if it held SHRINK more clusters of that spread (`_shrunk`):
      a scenario whose few records were all won (or a single record) says little about its
      variance;
    - the covariance of linked clusters in different strata (`_linked`);
    - with `sampled` (each stratum's weight proportional to a random count: the records of
      each scenario a `--sample` run kept, each with probability `sampled`), the variance of
      that random mix (`_mix`).
    That variance is itself estimated, from few degrees of freedom where the strata are small
    or few records carry most of the weight: z becomes Student's t at the same level for its
    Satterthwaite degrees of freedom (`_freedom`), Korn and Graubard's df-adjusted effective
    sample size.
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
    toward = _pooled(present, means, spreads, z)
    shrunk = _shrunk(present, spreads, toward)
    variance = sum(w * w * v / s.clusters for w, s, v in zip(weights, present, shrunk, strict=True))
    variance += _linked(present, weights, spreads, shrunk)
    if sampled is not None:
        variance += (1 - sampled) * _mix(present, weights, means)
    variance = max(variance, 0.0)
    kish = 1 / sum(w * w / s.clusters for w, s in zip(weights, present, strict=True))
    p = min(max(value, 0.0), 1.0)
    n_eff = p * (1 - p) / variance if variance > 0 and 0 < p < 1 else kish
    low, high = wilson(p, n_eff, student(z, _freedom(present, weights, spreads, toward)))
    return Estimate(value, variance, n_eff, low, high)


def student(z: float, freedom: float) -> float:
    """Student's t quantile at the level of the normal quantile z, for `freedom` degrees of
    freedom (Cornish-Fisher expansion: within 0.03 at 3 degrees of freedom, 0.003 from 5 on;
    below 3, taken at 3)."""
    if math.isinf(freedom):
        return z
    v = max(freedom, 3.0)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def _freedom(present: Sequence[Stratum], weights: Sequence[float], spreads: Sequence[_Spread],
             toward: dict[Hashable, tuple[float, bool]]) -> float:
    """The Satterthwaite degrees of freedom of the strata's variance terms. Their sum, shrinkage
    and pooling included, is a linear combination of the strata's own spreads u_k, each with
    its G_k - 1 degrees of freedom: sum_k lambda_k u_k, so (sum lambda_k u_k)^2 / sum
    (lambda_k u_k)^2 / df_k (one stratum alone: its own G - 1). A group of strata of one
    cluster each pools the spread of their means, with one degree of freedom less than it has
    strata; a floor is a prior, not an estimate. (The covariance and mix terms are taken as
    known.)"""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, stratum in enumerate(present):
        members[stratum.group].append(index)
    total = noise = 0.0
    for group, indices in members.items():
        variance, floor = toward[group]
        scale = {i: weights[i] ** 2 / present[i].clusters for i in indices}
        if floor:
            total += sum(scale[i] for i in indices) * variance
            continue
        freedom = sum(spreads[i].freedom for i in indices)
        pooled_part = sum(scale[i] * SHRINK / (spreads[i].freedom + SHRINK) for i in indices)
        total += pooled_part * variance
        if not freedom:  # collapsed strata: the pooled variance is their means' spread
            noise += (pooled_part * variance) ** 2 / max(len(indices) - 1, 1)
            continue
        for i in indices:
            spread = spreads[i]
            if not spread.freedom:
                continue
            own = scale[i] * spread.freedom / (spread.freedom + SHRINK)
            total += own * spread.unit
            part = (own + pooled_part * spread.freedom / freedom) * spread.unit
            noise += part * part / spread.freedom
    return total * total / noise if noise > 0 else math.inf


def pooled(strata: Iterable[Stratum], z: float = Z95) -> dict[Hashable, float]:
    """Each group's pooled within-stratum unit variance, what its strata are shrunk toward
    (`stratified` normalizes nothing here: the strata as given, those without units left out)."""
    present = [s for s in strata if s.clusters and s.units]
    means = [sum(s.sums) / s.units for s in present]
    found = _pooled(present, means, [_spread(s, m) for s, m in zip(present, means, strict=True)], z)
    return {group: variance for group, (variance, _) in found.items()}


def _pooled(present: Sequence[Stratum], means: Sequence[float], spreads: Sequence[_Spread],
            z: float) -> dict[Hashable, tuple[float, bool]]:
    """Each group's pooled unit variance. A group without degrees of freedom (strata of one
    cluster each) pools the spread of its strata's means (collapsed strata). A group with no
    spread at all says little about its spread, not that it has none: it gets the spread that a
    values at each end of [0, 1] would add to its n values of mean q, a (q^2 + (1-q)^2) / (n + 2a).
    Where another group shows a spread, a = 1/2: half a record either way (a near-perfect
    judge's section with no loss yet is not certain, but the interval's own Wilson form already
    allows for its boundary). Where none does (twelve ties, or a difference of +1 on every
    record: nothing else says how wide the interval is), a = z^2/2, the pseudo-counts of
    Wilson's and Agresti and Coull's intervals; both vanish as n grows. (The variance, and
    whether it is such a floor.)"""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, stratum in enumerate(present):
        members[stratum.group].append(index)
    found: dict[Hashable, tuple[float, bool]] = {}
    for group, indices in members.items():
        freedom = sum(spreads[i].freedom for i in indices)
        if freedom:
            spread = sum(spreads[i].unit * spreads[i].freedom for i in indices) / freedom
        else:
            spread = statistics.variance([means[i] for i in indices]) if len(indices) > 1 else 0.0
        found[group] = spread, False
    a = 0.5 if any(v > 0 for v, _ in found.values()) else z * z / 2
    for group, indices in members.items():
        if found[group][0] <= 0:
            n = sum(present[i].clusters for i in indices)
            q = sum(sum(present[i].sums) for i in indices) / sum(present[i].units for i in indices)
            found[group] = a * (q * q + (1 - q) * (1 - q)) / (n + 2 * a), True
    return found


def _shrunk(present: Sequence[Stratum], spreads: Sequence[_Spread],
            toward: dict[Hashable, tuple[float, bool]]) -> list[float]:
    """Each stratum's unit variance shrunk toward its group's pooled one (`_pooled`) as if it
    held SHRINK more clusters of that spread; a group with no spread gets its floor whole (its
    strata's own zeros are what the floor stands in for)."""
    shrunk = []
    for s, spread in zip(present, spreads, strict=True):
        variance, floor = toward[s.group]
        own = spread.unit * spread.freedom
        shrunk.append(variance if floor else (own + SHRINK * variance) / (spread.freedom + SHRINK))
    return shrunk


def _linked(present: Sequence[Stratum], weights: Sequence[float], spreads: Sequence[_Spread],
            shrunk: Sequence[float]) -> float:
    """The covariance of linked sets across strata: the linearization (sandwich) variance adds,
    for every pair of strata h, g and every linked set L in both, 2 E_hL E_gL, where E_hL is
    the set's share of the estimate's deviation in h: W_h R_hL / sum k (times the stratum's
    shrinkage factor sqrt(shrunk / u), as its own term is shrunk).

    Residuals are centered on their strata's means, which holds part of every linked set's
    covariance: with P_L = m_hL m_gL linked pairs in L (m: the set's clusters in each stratum,
    of n_h and n_g), sum_L R_hL R_gL has expectation gamma (sum_L P_L (1 - m_hL/n_h - m_gL/n_g)
    + (sum_L P_L)^2 / (n_h n_g)) where the covariance is gamma sum_L P_L, if every linked pair
    has the same covariance gamma and other records none. The pair's products are divided by
    that ratio, kappa (at least 1/4, that of two strata of two records linked one to one), as
    n/(n-1) corrects a variance: small strata, as a --precision run's first rounds have,
    otherwise showed half their covariance."""
    shares: dict[Hashable, list[tuple[int, float]]] = defaultdict(list)
    for index, (s, w, spread, v) in enumerate(zip(present, weights, spreads, shrunk, strict=True)):
        if s.links is None or spread.unit <= 0:
            continue
        scale = w * math.sqrt(v / spread.unit) / s.units
        for link, residual in spread.residuals.items():
            shares[link].append((index, scale * residual))
    products: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # sum E E, P, P (m/n + m/n)
    for link, found in shares.items():
        for a in range(len(found)):
            h, e_h = found[a]
            for g, e_g in found[a + 1:]:
                m_h, m_g = spreads[h].sizes[link], spreads[g].sizes[link]
                pair = products[(h, g)]
                pair[0] += e_h * e_g
                pair[1] += m_h * m_g
                pair[2] += m_h * m_g * (m_h / present[h].clusters + m_g / present[g].clusters)
    covariance = 0.0
    for (h, g), (product, pairs, taken) in products.items():
        kappa = (pairs - taken + pairs * pairs / (present[h].clusters * present[g].clusters)) / pairs
        covariance += 2 * product / max(kappa, 0.25)
    return covariance


def _mix(present: Sequence[Stratum], weights: Sequence[float], means: Sequence[float]) -> float:
    """The variance of a mean whose strata weigh random counts within their group (a ratio
    estimator: a `--sample` run keeps each record by a coin, so how many of a scenario's
    records it holds, and so its weight, is random): sum of W_h^2 (m_h - m_g)^2 / size_h,
    m_g the group's weighted mean. It is the between-scenario part of the ratio estimator's
    variance (the within part is the strata's own); of a finite selection sampled at rate f
    it is a share 1 - f, which the caller applies."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, stratum in enumerate(present):
        members[stratum.group].append(index)
    total = 0.0
    for indices in members.values():
        share = sum(weights[i] for i in indices)
        centre = sum(weights[i] * means[i] for i in indices) / share
        total += sum(weights[i] ** 2 * (means[i] - centre) ** 2 / (present[i].size or present[i].clusters)
                     for i in indices)
    return total


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


def paired(strata: Iterable[Stratum], z: float = Z95) -> Difference | None:
    """The weighted mean of per-record differences A - B (each stratum's `sums`: its records'
    differences, in [-1, 1]), with its 95% interval and the two-sided p-value of the
    sign-flip test.

    The interval is `stratified`'s on the [0, 1] scale (d + 1) / 2, mapped back: Wilson's at
    the effective sample size, so a difference near +-1 keeps room on its inner side, and
    differences all alike (every record won by A, or none differing) keep the width their
    number allows; one record alone leaves the whole range. Linked records (a comparison
    scored in two sections) flip their signs together in the test: swapping the two runs'
    answers to a comparison swaps every score it went into."""
    listed = [s for s in strata if s.sums]
    if not listed:
        return None
    total_weight = sum(s.weight for s in listed)
    if total_weight <= 0:
        return None
    value = sum(s.weight / total_weight * sum(s.sums) / len(s.sums) for s in listed)
    scaled = stratified([replace(s, sums=[(d + 1) / 2 for d in s.sums]) for s in listed], z)
    assert scaled is not None
    records = sum(len(s.sums) for s in listed)
    low, high = (2 * scaled.low - 1, 2 * scaled.high - 1) if records > 1 else (-1.0, 1.0)
    shares: dict[Hashable, float] = defaultdict(float)
    for number, s in enumerate(listed):
        links = s.links if s.links is not None else [None] * len(s.sums)
        for index, (d, link) in enumerate(zip(s.sums, links, strict=True)):
            shares[("record", number, index) if link is None else link] += s.weight / total_weight / len(s.sums) * d
    p_value, exact = sign_flip_p(value, [abs(x) for x in shares.values() if x])
    differing = sum(1 for s in listed for d in s.sums if d)
    return Difference(value, min(low, value), max(high, value), p_value, records, differing, exact)


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
