"""How good a judge's verdict probabilities are (--verdict-probs): Brier score, expected
calibration error with its reliability bins, and AUROC, each with a 95% interval; and the
paired differences of the three between two runs (`compare`).

Each comparison whose every presentation has verdict probabilities gives one forecast,
q = P(the label-preferred answer is better) = P(it wins) + P(tie) / 2, averaged over its orders
(and, within a presentation, over its votes). The labels say the preferred answer is better,
so:
- Brier score: the mean of (1 - q)^2 (0 for a judge certain and right, 0.25 for one that always
  says 50/50). A mean of values in [0, 1] over comparisons, a record's comparisons one cluster:
  its interval is every score's (intervals.clustered, Wilson's at the effective sample size).
- Expected calibration error, read as for any binary classifier's top-label confidence: the
  judge favours the answer it gives more than half (confidence max(q, 1 - q)); comparisons are
  binned by confidence (BINS equal bins over [0.5, 1]), and ECE is the mean over comparisons
  of |accuracy - mean confidence| of their bin, accuracy being how often the favoured answer
  is the preferred one (a 50/50 forecast scores half). The bins are the reliability diagram.
- AUROC of P(right answer): every comparison's preferred answer is a positive with score q,
  its other answer a negative with score 1 - q; AUROC is the chance that a random positive
  scores above a random negative (ties count half), over all n x n pairs. 0.5 is no better
  than chance; 1 means every right answer was rated above every wrong one.

Intervals. AUROC is a two-sample U-statistic: its variance is Obuchowski's (1997) clustered
form of DeLong's (1988), from each record's placement values (the share of negatives a
positive beats, of positives above a negative), with the interval Wilson's at the effective
sample size that variance implies, as for the scores (it stays inside [0, 1]). ECE has no such
formula (it sums absolute values of per-bin gaps, which are not smooth where a gap is near 0),
and it is biased upward (|noise| adds to every bin), most where the judge is well calibrated.
Its sampling distribution under record resampling is simulated in the large-sample limit:
per record, the comparisons and each bin's sum of (accuracy - confidence) form a vector; their
totals over records are approximately normal with the clustered covariance the record
bootstrap would give them (the sum over records of the centred vectors' outer products, times
K/(K-1)); DRAWS seeded draws of the totals give DRAWS values of ECE (the cluster bootstrap
without resampling 20,000 comparisons a thousand times in pure Python). The interval is the
basic (reverse-percentile) bootstrap one, [2 ECE - q97.5, 2 ECE - q2.5], which removes the
estimate's bias to first order, with its lower end lowered once more by the simulated bias
(the mean of the draws less ECE): near 0 the bias at the estimate understates the bias at the
truth (a folded normal's), and the percentile interval, which ignores the bias, covered a
calibrated judge's ECE 0% of the time in simulation (bin/bench-verdict-probs --coverage
measures each). `compare` uses the same draws for the difference of two runs' ECE on their
shared comparisons (both runs' bins in one vector; a basic interval, the two biases largely
cancelling), the paired Obuchowski covariance for AUROC, and the clustered paired mean for Brier.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

from . import intervals, verdict_probs
from .judgments import Judged
from .measures import Calibration, Gap, Measure, ReliabilityBin, paired, share

BINS = 10  # confidence bins over [0.5, 1], 0.05 wide
DRAWS = 2000  # simulated draws of the ECE's sampling distribution
SEED = 0
DIGITS = 12  # forecasts are rounded to this many digits, so q and 1 - q tie where they should

Pairs = Mapping[Any, Sequence[tuple[float, float]]]  # record -> its comparisons' (q of run A, q of run B)


def forecasts(judged: Sequence[Judged]) -> tuple[dict[Hashable, list[float]], int]:
    """Each record's comparisons' q, and how many judged comparisons have none (a presentation
    without probabilities: no verdict token read, no logprobs)."""
    by_comparison: dict[Hashable, list[Judged]] = {}
    for j in judged:
        by_comparison.setdefault(j.judgment, []).append(j)
    result: dict[Hashable, list[float]] = {}
    without = 0
    for group in by_comparison.values():
        q = verdict_probs.right([(j.probs, j.presentation.order) for j in group])
        if q is None:
            without += 1
        else:
            result.setdefault(group[0].record, []).append(q)
    return result, without


def measure(judged: Sequence[Judged]) -> Calibration | None:
    """The calibration of a run's verdict probabilities (None: it has none at all)."""
    found, without = forecasts(judged)
    return measure_forecasts(list(found.values()), without) if found else None


def measure_forecasts(found: Sequence[Sequence[float]], without: int = 0) -> Calibration:
    """Brier, ECE with its bins, and AUROC of forecasts, each record's comparisons a cluster."""
    clusters = [[round(q, DIGITS) for q in qs] for qs in found if qs]
    n = sum(map(len, clusters))
    ece_value, ece_interval = ece(clusters)
    area, area_variance = auroc(clusters)
    return Calibration(
        comparisons=n,
        without=without,
        mean_probability=sum(map(sum, clusters)) / n,
        brier=share([[(1 - q) ** 2 for q in c] for c in clusters]),
        ece=Measure(ece_value, ece_interval, n),
        auroc=Measure(area, _wilson(area, area_variance, len(clusters)), n),
        bins=reliability(clusters),
    )


# ---------------------------------------------------------------- reliability and ECE


def _confidence(q: float) -> tuple[float, float, int]:
    """(confidence, accuracy, bin) of one forecast: the favoured answer's probability, whether
    it is the preferred one (half for 50/50), and the bin its confidence falls in."""
    confidence = max(q, 1 - q)
    accuracy = 1.0 if q > 0.5 else 0.0 if q < 0.5 else 0.5
    # (rounded first: 1 - 0.3 is 0.7 less a rounding step, which belongs in the bin from 0.7)
    return confidence, accuracy, min(math.floor(round((confidence - 0.5) * 2 * BINS, 9)), BINS - 1)


def reliability(clusters: Sequence[Sequence[float]]) -> list[ReliabilityBin]:
    """The reliability diagram: each non-empty bin's count, mean confidence and accuracy."""
    sums = [[0, 0.0, 0.0] for _ in range(BINS)]
    for q in (q for c in clusters for q in c):
        confidence, accuracy, b = _confidence(q)
        sums[b][0] += 1
        sums[b][1] += confidence
        sums[b][2] += accuracy
    return [ReliabilityBin(0.5 + b / (2 * BINS), 0.5 + (b + 1) / (2 * BINS), int(n), c / n, a / n)
            for b, (n, c, a) in enumerate(sums) if n]


def _ece_vector(qs: Sequence[float]) -> dict[int, float]:
    """A record's comparisons (index 0) and per bin its sum of accuracy - confidence (1 + bin)."""
    vector: dict[int, float] = {0: float(len(qs))}
    for q in qs:
        confidence, accuracy, b = _confidence(q)
        vector[1 + b] = vector.get(1 + b, 0.0) + accuracy - confidence
    return vector


def _ece_of(totals: Sequence[float], offset: int = 1) -> float:
    return sum(abs(totals[offset + b]) for b in range(BINS)) / totals[0] if totals[0] > 0 else math.nan


def ece(clusters: Sequence[Sequence[float]]) -> tuple[float, list[float] | None]:
    """ECE and its 95% interval (simulated, see the module docstring)."""
    vectors = [_ece_vector(c) for c in clusters if c]
    totals, draws = simulate(vectors, 1 + BINS, _ece_of)
    value = _ece_of(totals)
    low, high = quantiles(draws)
    if low is None or high is None:
        return value, None
    bias = sum(draws) / len(draws) - value
    return value, [max(0.0, 2 * value - high - bias), min(1.0, max(0.0, 2 * value - low))]


# ---------------------------------------------------------------- AUROC


def _placements(clusters: Sequence[Sequence[float]]) -> tuple[float, list[float]]:
    """AUROC over every positive (q) and negative (1 - q), and each cluster's score: its
    positives' and negatives' placement values less AUROC, summed and divided by n (the
    Hajek projection of the U-statistic onto clusters, Obuchowski 1997)."""
    positives = [q for c in clusters for q in c]
    n = len(positives)
    negatives = sorted(round(1 - q, DIGITS) for q in positives)
    ranked = sorted(positives)
    placed = []
    for c in clusters:
        beats = [(bisect_left(negatives, q) + (bisect_right(negatives, q) - bisect_left(negatives, q)) / 2) / n
                 for q in c]
        beaten = [((n - bisect_right(ranked, t)) + (bisect_right(ranked, t) - bisect_left(ranked, t)) / 2) / n
                  for t in (round(1 - q, DIGITS) for q in c)]
        placed.append((beats, beaten))
    area = sum(sum(b) for b, _ in placed) / n
    return area, [(sum(b) - len(b) * area + sum(w) - len(w) * area) / n for b, w in placed]


def auroc(clusters: Sequence[Sequence[float]]) -> tuple[float, float]:
    """AUROC of the forecasts and its clustered variance."""
    area, scores = _placements(clusters)
    k = len(scores)
    return area, k / (k - 1) * sum(s * s for s in scores) if k > 1 else math.inf


def _wilson(value: float, variance: float, clusters: int) -> list[float]:
    """Wilson's interval at the effective sample size `variance` implies (the clusters when it
    implies none: a value of 0 or 1, or no spread)."""
    if math.isinf(variance):
        return [0.0, 1.0]
    n_eff = value * (1 - value) / variance if variance > 0 and 0 < value < 1 else clusters
    return list(intervals.wilson(value, n_eff))


# ---------------------------------------------------------------- two runs


def differences(pairs: Pairs) -> dict[str, Gap]:
    """Brier, ECE and AUROC of run A minus run B on the comparisons both gave a forecast,
    `pairs` being each record's (q_a, q_b)."""
    clusters = [list(c) for c in pairs.values() if c]
    a = [[round(x, DIGITS) for x, _ in c] for c in clusters]
    b = [[round(y, DIGITS) for _, y in c] for c in clusters]
    n = sum(map(len, a))
    if not n:
        return {}
    brier = paired([[(1 - x) ** 2 - (1 - y) ** 2 for x, y in c] for c in clusters])
    vectors = []
    for ca, cb in zip(a, b, strict=True):
        va, vb = _ece_vector(ca), _ece_vector(cb)
        vectors.append({**va, **{BINS + k: v for k, v in vb.items() if k}})

    def gap(totals: Sequence[float]) -> float:
        return _ece_of(totals) - _ece_of(totals, 1 + BINS)

    totals, draws = simulate(vectors, 1 + 2 * BINS, gap)
    value = gap(totals)
    reflected = [2 * value - d for d in draws]  # the basic bootstrap: each run's ECE bias cancels to first order
    low, high = quantiles(reflected)
    sides = min(sum(d <= 0 for d in reflected), sum(d >= 0 for d in reflected)) / len(draws) if draws else 1.0
    ece_gap = Gap(value, None if low is None else [low, high], min(1.0, 2 * sides), n)  # type: ignore[list-item]
    (area_a, scores_a), (area_b, scores_b) = _placements(a), _placements(b)
    k = len(clusters)
    variance = k / (k - 1) * sum((x - y) ** 2 for x, y in zip(scores_a, scores_b, strict=True)) if k > 1 else 0.0
    d = area_a - area_b
    se = math.sqrt(variance)
    p = (2 * (1 - NormalDist().cdf(abs(d) / se)) if se > 0 else float(d == 0))
    auroc_gap = Gap(d, [max(-1.0, d - intervals.Z95 * se), min(1.0, d + intervals.Z95 * se)], p, n)
    return {"brier": brier, "ece": ece_gap, "auroc": auroc_gap}


# ---------------------------------------------------------------- the simulation


def simulate(vectors: Sequence[Mapping[int, float]], size: int, statistic: Callable[[Sequence[float]], float],
             draws: int = DRAWS, seed: int = SEED) -> tuple[list[float], list[float]]:
    """The totals of per-cluster vectors (sparse: index -> value, `size` long), and `draws`
    values of `statistic` at totals drawn from the normal approximation of their record
    bootstrap: mean the totals, covariance K/(K-1) times the sum of the clusters' centred outer
    products. Seeded, so a run's interval is the same on every rerun."""
    k = len(vectors)
    totals = [0.0] * size
    products = [[0.0] * size for _ in range(size)]
    for vector in vectors:
        items = list(vector.items())
        for i, x in items:
            totals[i] += x
            row = products[i]
            for j, y in items:
                row[j] += x * y
    if k < 2:
        return totals, []
    scale = k / (k - 1)
    covariance = [[scale * (products[i][j] - totals[i] * totals[j] / k) for j in range(size)] for i in range(size)]
    factor = _cholesky(covariance)
    rng = random.Random(seed)
    values = []
    for _ in range(draws):
        z = [rng.gauss(0.0, 1.0) for _ in range(size)]
        drawn = [totals[i] + sum(factor[i][j] * z[j] for j in range(i + 1)) for i in range(size)]
        value = statistic(drawn)
        if not math.isnan(value):
            values.append(value)
    return totals, values


def _cholesky(matrix: Sequence[Sequence[float]]) -> list[list[float]]:
    """A lower-triangular L with L L^T = matrix, for a positive semi-definite matrix: a
    direction of (numerically) no variance gets a zero column."""
    size = len(matrix)
    lower = [[0.0] * size for _ in range(size)]
    scale = max((matrix[i][i] for i in range(size)), default=0.0)
    for j in range(size):
        pivot = matrix[j][j] - sum(lower[j][m] ** 2 for m in range(j))
        if pivot <= 1e-12 * max(scale, 1e-300):
            continue
        lower[j][j] = math.sqrt(pivot)
        for i in range(j + 1, size):
            lower[i][j] = (matrix[i][j] - sum(lower[i][m] * lower[j][m] for m in range(j))) / lower[j][j]
    return lower


def quantiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The 2.5% and 97.5% quantiles (linear between order statistics), or None without values."""
    if not values:
        return None, None
    ordered = sorted(values)

    def at(p: float) -> float:
        position = p * (len(ordered) - 1)
        below = math.floor(position)
        above = min(below + 1, len(ordered) - 1)
        return ordered[below] + (ordered[above] - ordered[below]) * (position - below)

    return at(0.025), at(0.975)
