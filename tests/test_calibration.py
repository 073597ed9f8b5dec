"""Brier score, expected calibration error and AUROC of verdict probabilities, and their
intervals, against independent computations on fixed inputs: by hand, over every pair, and a
brute-force record bootstrap."""

from __future__ import annotations

import json
import random

import pytest

from rmb_judge import agreement, calibration

# one comparison per record: P(the preferred answer is better)
FIXED = [0.9, 0.8, 0.3, 0.6, 0.55, 0.5, 0.97, 0.1]


def test_brier_ece_and_bins_by_hand():
    clusters = [[q] for q in FIXED]
    # confidence max(q, 1 - q), accuracy 1 when q > 0.5, 0 when below, 0.5 at 0.5; bins 0.05 wide from 0.5:
    # 0.5 -> [0.5, 0.55) acc 0.5; 0.55 -> [0.55, 0.6) acc 1; 0.6 -> [0.6, 0.65) acc 1; 0.3 -> 0.7 in [0.7, 0.75)
    # acc 0; 0.8 -> [0.8, 0.85) acc 1; 0.9 and 0.1 -> [0.9, 0.95) acc 1 and 0; 0.97 -> [0.95, 1] acc 1
    bins = calibration.reliability(clusters)
    assert [(round(b.low, 2), b.n, round(b.confidence, 6), b.accuracy) for b in bins] == [
        (0.5, 1, 0.5, 0.5), (0.55, 1, 0.55, 1.0), (0.6, 1, 0.6, 1.0), (0.7, 1, 0.7, 0.0), (0.8, 1, 0.8, 1.0),
        (0.9, 2, 0.9, 0.5), (0.95, 1, 0.97, 1.0)]
    value, interval = calibration.ece(clusters)
    assert value == pytest.approx((0 + 0.45 + 0.4 + 0.7 + 0.2 + 2 * 0.4 + 0.03) / 8)
    assert interval is not None and interval[0] <= value <= interval[1]
    measured = calibration.measure_forecasts(clusters)
    assert measured.brier.value == pytest.approx(
        (0.01 + 0.04 + 0.49 + 0.16 + 0.2025 + 0.25 + 0.0009 + 0.81) / 8)
    assert measured.ece.value == pytest.approx(value) and measured.comparisons == 8


def brute_auroc(qs):
    """Every right answer (score q) against every wrong one (score 1 - q), ties half."""
    pairs = [(s, 1 - t) for s in qs for t in qs]
    return sum(1.0 if s > t + 1e-12 else 0.5 if abs(s - t) <= 1e-12 else 0.0 for s, t in pairs) / len(pairs)


def ranked_auroc(qs):
    """Mann-Whitney from average ranks of the pooled scores: another way to the same number."""
    pooled = sorted([(round(q, 9), 1) for q in qs] + [(round(1 - q, 9), 0) for q in qs])
    ranks, i = [], 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            j += 1
        ranks += [((i + 1 + j) / 2, label) for _, label in pooled[i:j]]
        i = j
    n = len(qs)
    return (sum(r for r, label in ranks if label) - n * (n + 1) / 2) / (n * n)


def test_auroc_equals_the_count_over_every_pair():
    assert calibration.auroc([[q] for q in FIXED])[0] == pytest.approx(brute_auroc(FIXED))
    assert brute_auroc(FIXED) == pytest.approx(ranked_auroc(FIXED))
    grouped = [[0.7, 0.7, 0.3], [0.5], [0.9, 0.2]]  # ties, a 50/50 and clusters
    assert calibration.auroc(grouped)[0] == pytest.approx(brute_auroc([q for c in grouped for q in c]))


def synthetic(seed, records=300):
    """Records of 1 to 3 comparisons, forecasts of a somewhat informative, overconfident judge."""
    rng = random.Random(seed)
    clusters = []
    for _ in range(records):
        hard = rng.random()  # a record's comparisons share its difficulty
        clusters.append([min(0.99, max(0.01, rng.gauss(0.8 - 0.6 * hard, 0.1))) for _ in range(rng.randint(1, 3))])
    return clusters


def bootstrap(clusters, statistic, reps, seed=1):
    rng = random.Random(seed)
    return [statistic([q for _ in clusters for q in clusters[rng.randrange(len(clusters))]]) for _ in range(reps)]


def plain_ece(qs):
    sums = {}
    for q in qs:
        confidence, accuracy = max(q, 1 - q), 1.0 if q > 0.5 else 0.0 if q < 0.5 else 0.5
        b = min(int(round((confidence - 0.5) * 20, 9)), 9)
        n, gap = sums.get(b, (0, 0.0))
        sums[b] = (n + 1, gap + accuracy - confidence)
    return sum(abs(gap) for _, gap in sums.values()) / len(qs)


def test_the_intervals_match_a_brute_force_record_bootstrap():
    """AUROC's clustered variance (Obuchowski) and ECE's simulated interval against 800
    resamplings of whole records."""
    clusters = synthetic(7)
    area, variance = calibration.auroc(clusters)
    draws = bootstrap(clusters, ranked_auroc, 800)
    mean = sum(draws) / len(draws)
    spread = (sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)) ** 0.5
    # (counting comparisons as independent would make it 27% narrower here)
    assert variance ** 0.5 == pytest.approx(spread, rel=0.08)
    brier = calibration.measure_forecasts(clusters).brier
    draws = bootstrap(clusters, lambda qs: sum((1 - q) ** 2 for q in qs) / len(qs), 800)
    mean = sum(draws) / len(draws)
    spread = (sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)) ** 0.5
    assert (brier.interval[1] - brier.interval[0]) / 2 / 1.959964 == pytest.approx(spread, rel=0.1)
    value, (low, high) = calibration.ece(clusters)
    assert value == pytest.approx(plain_ece([q for c in clusters for q in c]))
    # the basic bootstrap interval, its lower end lowered once more by the bootstrap's bias
    ordered = sorted(bootstrap(clusters, plain_ece, 800))
    bias = sum(ordered) / len(ordered) - value
    assert low == pytest.approx(2 * value - ordered[779] - bias, abs=0.008)
    assert high == pytest.approx(2 * value - ordered[20], abs=0.008)


def test_two_runs_differences_match_a_paired_bootstrap():
    a, b = synthetic(3), synthetic(4)
    pairs = {i: [(x, y) for x, y in zip(ca, cb)] for i, (ca, cb) in enumerate(zip(a, b)) if min(len(ca), len(cb))}
    gaps = calibration.differences(pairs)
    both = [[(x, y) for x, y in c] for c in pairs.values()]
    flat_a = [x for c in both for x, _ in c]
    flat_b = [y for c in both for _, y in c]
    assert gaps["brier"].value == pytest.approx(sum((1 - x) ** 2 - (1 - y) ** 2 for x, y in zip(flat_a, flat_b))
                                                / len(flat_a))
    assert gaps["auroc"].value == pytest.approx(ranked_auroc(flat_a) - ranked_auroc(flat_b))
    assert gaps["ece"].value == pytest.approx(plain_ece(flat_a) - plain_ece(flat_b))
    rng = random.Random(2)
    auroc_draws, ece_draws = [], []
    for _ in range(600):
        drawn = [both[rng.randrange(len(both))] for _ in both]
        xs, ys = [x for c in drawn for x, _ in c], [y for c in drawn for _, y in c]
        auroc_draws.append(ranked_auroc(xs) - ranked_auroc(ys))
        ece_draws.append(plain_ece(xs) - plain_ece(ys))
    mean = sum(auroc_draws) / len(auroc_draws)
    spread = (sum((d - mean) ** 2 for d in auroc_draws) / (len(auroc_draws) - 1)) ** 0.5
    low, high = gaps["auroc"].interval
    assert (high - low) / 2 / 1.959964 == pytest.approx(spread, rel=0.08)
    ordered = sorted(ece_draws)
    value = gaps["ece"].value
    assert gaps["ece"].interval == pytest.approx([2 * value - ordered[584], 2 * value - ordered[15]], abs=0.01)


def write_samples(folder, verdicts):
    """A samples.jsonl of one presentation per comparison (order AB), from label-relative verdicts
    per record: what `compare` reads of a run's verdicts."""
    folder.mkdir()
    word = {"win": "A", "loss": "B", "tie": "tie", None: None}
    with (folder / "samples.jsonl").open("w") as out:
        for uid, said in enumerate(verdicts):
            for loser, v in enumerate(said):
                out.write(json.dumps({"category_path": "x/y", "uid": str(uid), "loser_index": loser, "order": "AB",
                                      "verdict": word[v], "record_correct": 1.0}) + "\n")


def plain_kappa(pairs):
    n = len(pairs)
    observed = sum(x == y for x, y in pairs) / n
    expected = sum(sum(x == c for x, _ in pairs) * sum(y == c for _, y in pairs) for c in ("win", "loss", "tie")) / n / n
    return (observed - expected) / (1 - expected)


def test_kappa_and_its_interval_match_a_brute_force_record_bootstrap(tmp_path):
    """Cohen's kappa of two judges' verdicts on shared comparisons, and its interval (simulated
    from the 3 x 3 table's clustered covariance) against 800 resamplings of whole records."""
    rng = random.Random(5)
    a, b = [], []
    for _ in range(250):
        k = rng.randint(1, 3)
        easy = rng.random() < 0.6  # a record's comparisons share how easy it is: the judges agree more there
        xs = [rng.choices(("win", "loss", "tie"), (0.7, 0.25, 0.05))[0] for _ in range(k)]
        ys = [x if easy and rng.random() < 0.9 else rng.choices(("win", "loss", "tie"), (0.6, 0.3, 0.1))[0]
              for x in xs]
        a.append(xs)
        b.append(ys)
    a[0][0] = None  # an unread verdict is left out
    write_samples(tmp_path / "a", a)
    write_samples(tmp_path / "b", b)
    found, _ = agreement.between(tmp_path / "a", tmp_path / "b", {("x/y", str(i)) for i in range(len(a))})
    clusters = [[(x, y) for x, y in zip(xs, ys) if x is not None and y is not None] for xs, ys in zip(a, b)]
    pairs = [p for c in clusters for p in c]
    assert found.comparisons == len(pairs) and found.without == 1
    assert found.kappa.value == pytest.approx(plain_kappa(pairs))
    assert found.raw.value == pytest.approx(sum(x == y for x, y in pairs) / len(pairs))
    draws = sorted(bootstrap([c for c in clusters if c], plain_kappa, 800))
    low, high = found.kappa.interval
    assert low == pytest.approx(draws[20], abs=0.015) and high == pytest.approx(draws[779], abs=0.015)
