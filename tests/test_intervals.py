"""95% intervals: the estimators on cases computed by hand, and every score of a real run
carrying one that `report` shows."""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import defaultdict

import pytest
from conftest import make_config
from rich.console import Console

from rmb_judge import intervals, records
from rmb_judge.intervals import Stratum
from rmb_judge.report import load_runs, render_html, render_markdown, render_terminal
from rmb_judge.scoring import estimates
from rmb_judge.session import run

Z = 1.959963984540054


def test_student_quantiles_match_the_tables():
    for freedom, t in [(3, 3.1824), (5, 2.5706), (10, 2.2281), (30, 2.0423), (100, 1.9840)]:
        assert intervals.student(Z, freedom) == pytest.approx(t, abs=0.025 if freedom == 3 else 0.003)
    assert intervals.student(Z, math.inf) == Z


def test_wilson_matches_the_published_interval():
    # 5 of 10: Wilson's interval is 0.2366 to 0.7634 (Newcombe 1998, table I)
    low, high = intervals.wilson(0.5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    # 0 of 10: 0 to 0.2775, never below 0
    assert intervals.wilson(0.0, 10)[0] == 0.0 and intervals.wilson(1.0, 10)[1] == 1.0
    assert round(intervals.wilson(0.0, 10)[1], 4) == 0.2775


def test_stratified_mean_and_variance_by_hand():
    # weights 3:1; means 2/3 and 1/2; sample variances 1/3 and 1/3
    estimate = intervals.stratified([Stratum(3, [1, 0, 1]), Stratum(1, [1, 1, 0, 0])])
    assert estimate is not None
    assert estimate.value == pytest.approx(0.75 * 2 / 3 + 0.25 * 0.5)  # 0.625
    assert estimate.variance == pytest.approx(0.75**2 * (1 / 3) / 3 + 0.25**2 * (1 / 3) / 4)  # 0.0677083
    n_eff = 0.625 * 0.375 / estimate.variance
    assert estimate.n_eff == pytest.approx(n_eff)
    # the variance is estimated from 2 + 3 degrees of freedom. Each term W^2/n (df s^2 + 4 P) /
    # (df + 4), P = (2 s_1^2 + 3 s_2^2) / 5 pooled, so the sum is lambda_1 s_1^2 + lambda_2 s_2^2:
    c, df = [0.75**2 / 3, 0.25**2 / 4], [2, 3]
    pooled_part = sum(c_k * 4 / (d + 4) for c_k, d in zip(c, df))
    weight = [c_k * d / (d + 4) + pooled_part * d / 5 for c_k, d in zip(c, df)]
    a = [w / 3 for w in weight]  # (each s^2 = 1/3)
    freedom = sum(a) ** 2 / (a[0] ** 2 / 2 + a[1] ** 2 / 3)
    low, high = intervals.wilson(0.625, n_eff, intervals.student(Z, freedom))
    assert estimate.interval == pytest.approx([low, high])
    assert low < 0.625 < high


def test_a_stratum_of_one_record_borrows_the_pooled_spread():
    # the pooled within-stratum variance is the first stratum's s^2 = 1/3 (the only one with any)
    estimate = intervals.stratified([Stratum(1, [1, 0, 0]), Stratum(1, [1])])
    assert estimate is not None
    assert estimate.value == pytest.approx(0.5 * (1 / 3) + 0.5 * 1)
    assert estimate.variance == pytest.approx(0.25 * (1 / 3) / 3 + 0.25 * (1 / 3))


def test_a_stratum_all_won_is_shrunk_toward_the_pooled_variance():
    # s^2 = 0 (df 1) and 1/3 (df 3): pooled (0 * 1 + 1/3 * 3) / 4 = 1/4; shrunk with 4 clusters
    # of the pooled spread: (0 + 4/4) / (1 + 4) = 0.2 and (1 + 4/4) / (3 + 4) = 2/7
    estimate = intervals.stratified([Stratum(1, [1, 1]), Stratum(1, [1, 0, 1, 0])])
    assert estimate is not None
    assert estimate.variance == pytest.approx(0.25 * 0.2 / 2 + 0.25 * (2 / 7) / 4)


def test_clustered_units_count_as_one_per_cluster():
    # clusters (1, 1), (0, 1), (0,): 3 of 5 units; ratio-estimator variance
    # sum over clusters of (y - p m)^2 = (2 - 1.2)^2 + (1 - 1.2)^2 + (0 - 0.6)^2 = 1.04
    estimate = intervals.clustered([[1, 1], [0, 1], [0]])
    assert estimate is not None
    assert estimate.value == pytest.approx(0.6)
    assert estimate.variance == pytest.approx(3 / 2 * 1.04 / 25)


def test_a_perfect_score_still_has_an_interval_below_one():
    estimate = intervals.mean_of([1.0] * 20)
    assert estimate is not None and estimate.high == 1.0
    assert estimate.low == pytest.approx(intervals.wilson(1.0, 20)[0]) and estimate.low < 0.87


def test_paired_difference_by_hand():
    # per-record differences 1, 1, 1, 0, -1: mean 0.4, s^2 = 0.8, se^2 = 0.16; on the [0, 1]
    # scale (d + 1) / 2 the mean is 0.7 with se^2 0.04, so Wilson's interval at n = 0.21 / 0.04,
    # with t for the 4 degrees of freedom of s^2
    difference = intervals.paired([Stratum(1.0, [1, 1, 1, 0, -1])])
    assert difference is not None
    assert difference.value == pytest.approx(0.4)
    low, high = intervals.wilson(0.7, 0.7 * 0.3 / 0.04, intervals.student(Z, 4))
    assert (difference.low, difference.high) == pytest.approx((2 * low - 1, 2 * high - 1))
    # sign flips of four nonzero differences of 1/5 each: |sum| >= 0.4 unless two go each way
    assert difference.p_value == pytest.approx(1 - 6 / 16)
    assert difference.exact and difference.records == 5 and difference.differing == 4


def test_paired_difference_of_identical_runs_is_zero_with_p_one():
    difference = intervals.paired([Stratum(1.0, [0, 0, 0]), Stratum(2.0, [0, 0])])
    assert difference is not None
    assert (difference.value, difference.p_value) == (0.0, 1.0)


def test_equal_weights_give_the_exact_mcnemar_test():
    # 30 records won only by A, 15 only by B, 55 by both or neither: two-sided binomial(45, 1/2)
    difference = intervals.paired([Stratum(1.0, [1.0] * 30 + [-1.0] * 15 + [0.0] * 55)])
    assert difference is not None and difference.exact
    tail = sum(math.comb(45, k) for k in range(30, 46)) / 2**45
    assert difference.p_value == pytest.approx(2 * tail)


def brute_force_p(strata):
    """The sign-flip p-value by enumerating every sign pattern of the nonzero differences."""
    import itertools

    total = sum(w for w, _ in strata)
    magnitudes = [w / total / len(d) * abs(x) for w, d in strata for x in d if x]
    observed = abs(sum(w / total / len(d) * x for w, d in strata for x in d))
    hits = sum(abs(sum(s * m for s, m in zip(signs, magnitudes))) >= observed - 1e-12
               for signs in itertools.product((1, -1), repeat=len(magnitudes)))
    return hits / 2 ** len(magnitudes)


@pytest.mark.parametrize("strata", [
    [(1.0, [-0.5, -1.0, -0.5] + [0.0] * 2997)],  # a section of 3,000 records, mixed ties and wins
    [(1.0, [1.0] * 4 + [0.0] * 2883)],
    [(0.3, [0.5, 1.0, 0.0, -0.5]), (0.7, [1.0, 1.0] + [0.0] * 1700)],
])
def test_the_exact_p_value_equals_the_enumeration_in_large_sections(strata):
    difference = intervals.paired([Stratum(w, d) for w, d in strata])
    assert difference is not None and difference.exact
    assert difference.p_value == pytest.approx(brute_force_p(strata))


def test_a_difference_on_records_alone_in_their_scenarios_has_a_width():
    # one record per scenario: no within-scenario spread, so the spread across them stands in
    difference = intervals.paired([Stratum(1.0, [d]) for d in (1.0, 0.0, 1.0, -1.0)])
    assert difference is not None and difference.high - difference.low > 0.5
    alone = intervals.paired([Stratum(1.0, [1.0])])  # one record: nothing known of the spread
    assert alone is not None and (alone.low, alone.high) == (-1.0, 1.0)


def test_linked_records_flip_their_signs_together():
    """Swapping the two runs' answers to a comparison swaps every score it went into: the
    sign-flip test flips a linked set as one. By enumeration of the four sets' signs."""
    import itertools

    strata = [Stratum(1.0, [1.0, -1.0, 1.0], group="a", links=["x", "y", "z"]),
              Stratum(1.0, [1.0, 0.5], group="b", links=["x", "w"])]
    sets = {"x": 0.5 / 3 + 0.5 / 2, "y": -0.5 / 3, "z": 0.5 / 3, "w": 0.5 * 0.5 / 2}
    observed = sum(sets.values())
    hits = sum(abs(sum(sign * v for sign, v in zip(signs, sets.values(), strict=True))) >= abs(observed) - 1e-12
               for signs in itertools.product((1, -1), repeat=4))
    difference = intervals.paired(strata)
    assert difference is not None and difference.value == pytest.approx(observed)
    assert difference.exact and difference.p_value == pytest.approx(hits / 16)


def test_many_distinct_differences_use_the_normal_approximation():
    # 40 strata of unequal weights: 2^40 sign patterns, too many to enumerate
    strata = [(1.0 + k, [1.0, -1.0, 1.0]) for k in range(40)]
    difference = intervals.paired([Stratum(w, d) for w, d in strata])
    assert difference is not None and not difference.exact
    total = sum(w for w, _ in strata)
    magnitudes = [w / total / 3 for w, d in strata for _ in d]
    z = difference.value / math.sqrt(sum(m * m for m in magnitudes))
    assert difference.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))


def test_a_section_score_weighted_by_scenario_size_is_the_plain_mean_over_records():
    values = {"a/x": [1, 0, 1, 1], "a/y": [0, 1], "b/z": [1, 1, 0]}
    section_of = {"a/x": "a", "a/y": "a", "b/z": "b"}
    scores, macros = estimates(["a", "b"], values, section_of)
    assert scores["a"].value == pytest.approx(4 / 6)
    assert scores["overall"].value == pytest.approx((4 / 6 + 2 / 3) / 2)
    assert macros["a"].value == pytest.approx((3 / 4 + 1 / 2) / 2)
    # the section's variance: (4/6)^2 * s_x^2 / 4 + (2/6)^2 * s_y^2 / 2 with s_x^2 = 1/4 (df 3) and
    # s_y^2 = 1/2 (df 1) shrunk toward their pooled 5/16: (3/4 + 5/4) / 7 and (1/2 + 5/4) / 5
    assert scores["a"].variance == pytest.approx((4 / 6) ** 2 * (2 / 7) / 4 + (2 / 6) ** 2 * 0.35 / 2)
    # a sampled run weighs scenarios by their size in the selection, not in the sample
    sampled, _ = estimates(["a", "b"], values, section_of, population={"a/x": 10, "a/y": 30, "b/z": 3})
    assert sampled["a"].value == pytest.approx(0.25 * 3 / 4 + 0.75 * 1 / 2)


def test_a_stratum_linked_to_its_own_copy_has_the_variance_of_one():
    """Two strata holding the same records (each record linked to its copy, as a comparison
    judged once serves a pairwise and a Best-of-N record): their mean is one stratum's mean,
    so its variance is one stratum's, not half of it."""
    values = [1, 0, 1, 1, 0, 1, 1]
    alone = intervals.stratified([Stratum(1, values)])
    copies = intervals.stratified([Stratum(1, values, group="a", links=range(7)),
                                   Stratum(1, values, group="b", links=range(7))])
    unlinked = intervals.stratified([Stratum(1, values, group="a"), Stratum(1, values, group="b")])
    assert alone is not None and copies is not None and unlinked is not None
    assert copies.variance == pytest.approx(alone.variance)
    assert unlinked.variance == pytest.approx(alone.variance / 2)
    # opposite copies (a record lost where its copy won) cancel: their mean is 1/2 for certain
    flipped = intervals.stratified([Stratum(1, values, group="a", links=range(7)),
                                    Stratum(1, [1 - v for v in values], group="b", links=range(7))])
    assert flipped is not None and flipped.value == 0.5 and flipped.variance == pytest.approx(0, abs=1e-15)


def test_the_covariance_of_linked_strata_by_hand():
    # A = (1, 0, 1), mean 2/3, residuals (1/3, -2/3, 1/3), s^2 = 1/3; B = (1, 0), mean 1/2,
    # residuals (1/2, -1/2), s^2 = 1/2; A's first two records linked to B's two. The residual
    # products sum to 1/6 + 1/3; centered on their strata's means they hold only kappa of the
    # covariance: kappa = (P - sum P_L (1/3 + 1/2) + P^2 / (3 * 2)) / P = 1/2 with P = 2 pairs.
    estimate = intervals.stratified([Stratum(1, [1, 0, 1], group="a", links=["x", "y", "z"]),
                                     Stratum(1, [1, 0], group="b", links=["x", "y"])])
    assert estimate is not None
    covariance = (1 / 6 + 1 / 3) / (3 * 2) / 0.5
    assert estimate.variance == pytest.approx(0.25 * (1 / 3) / 3 + 0.25 * 0.5 / 2 + 2 * 0.25 * covariance)


def test_the_covariance_of_linked_strata_is_not_lost_to_their_means():
    """Stratum b holds copies of two of stratum a's four records and one of its own, all won
    independently with probability 0.6: every outcome enumerated, the estimated variance of
    the two strata's mean must match its true variance on average (from above: a stratum of
    records all alike gets a floor), where residual products alone, centered on means of 3
    and 4 records, showed too little of the covariance."""
    true = 0.25 * (0.24 / 4 + 0.24 / 3 + 2 * 2 * 0.24 / 12)
    expected = 0.0
    for outcome in itertools.product((0.0, 1.0), repeat=5):
        a, b = list(outcome[:4]), [outcome[0], outcome[1], outcome[4]]
        estimate = intervals.stratified([Stratum(1, a, group="a", links=[0, 1, 2, 3]),
                                         Stratum(1, b, group="b", links=[0, 1, 9])])
        assert estimate is not None
        expected += math.prod(0.6 if v else 0.4 for v in outcome) * estimate.variance
    assert true <= expected <= 1.15 * true


def test_linked_records_of_one_stratum_count_as_one_cluster():
    # records (1, 1) and (0, 0) linked in pairs: two clusters of two, as the clustered form says
    linked = intervals.stratified([Stratum(1, [1, 1, 0, 0], links=["a", "a", "b", "b"])])
    as_clusters = intervals.stratified([Stratum(1, [2, 0], counts=[2, 2])])
    assert linked is not None and as_clusters is not None
    assert linked.variance == pytest.approx(as_clusters.variance) == pytest.approx(0.25)


def test_independent_records_linked_in_one_stratum_are_not_credited_with_less_variance():
    """Six records of one scenario, linked in sets of three, two and one (sharing an answer) but
    won independently with probability 0.7: every outcome is enumerated; on average the
    estimated variance must match the true one, 0.21 / 6 (from above: six records all alike get
    a floor). Residual products of linked records summed inside the stratum fell short (each is
    negatively correlated with the others through the stratum's mean), and so did G/(G-1) for
    sets of unequal sizes."""
    expected = 0.0
    for outcome in itertools.product((0.0, 1.0), repeat=6):
        chance = math.prod(0.7 if v else 0.3 for v in outcome)
        estimate = intervals.stratified([Stratum(1, outcome, links=[0, 0, 0, 1, 1, 2])])
        assert estimate is not None
        expected += chance * estimate.variance
    assert 0.21 / 6 <= expected <= 1.15 * 0.21 / 6


def test_shrinkage_pools_within_each_group_only():
    # group a: s^2 = 0 (df 1) and 1/3 (df 3), pooled 1/4; group b: s^2 = 1/2 (df 1), its own.
    # Each stratum shrunk toward its own group's pooled variance with 4 clusters of it.
    estimate = intervals.stratified([Stratum(1, [1, 1], group="a"), Stratum(1, [1, 0, 1, 0], group="a"),
                                     Stratum(2, [0, 1], group="b")])
    assert estimate is not None
    a1, a2, b = (0 + 4 * 0.25) / 5, (1 + 4 * 0.25) / 7, 0.5
    assert estimate.variance == pytest.approx(0.25**2 * a1 / 2 + 0.25**2 * a2 / 4 + 0.5**2 * b / 2)


def test_records_all_alike_still_leave_room():
    """Twelve ties (every record 0.5) cannot show that the judge never scores otherwise: a judge
    scoring 1 on a fifth of its records and 0.5 on the rest ties all twelve with probability
    0.8^12 = 0.069, so 0.6 is not excluded at 95%; nor 0.4."""
    ties = intervals.mean_of([0.5] * 12)
    assert ties is not None and ties.low < 0.4 and ties.high > 0.6
    # two scenarios, each all alike but unlike the other: no spread inside either says as little
    apart = intervals.stratified([Stratum(1, [1.0, 1.0]), Stratum(1, [0.0, 0.0])])
    assert apart is not None and apart.high - apart.low > 0.2


def test_equal_differences_still_leave_room():
    """A won all twelve records B lost: a pair of judges whose difference is +1 on 80% of records
    and -1 on the rest (mean 0.6) does that with probability 0.8^12 = 0.069, so 0.6 stays in the
    interval; twelve records on which the runs agree leave +-0.15 in (0.85^12 = 0.14)."""
    ahead = intervals.paired([Stratum(1.0, [1.0] * 12)])
    assert ahead is not None and ahead.low < 0.6 and ahead.high == 1.0 and ahead.low > 0
    assert ahead.p_value < 0.001
    same = intervals.paired([Stratum(1.0, [0.0] * 12)])
    assert same is not None and same.low < -0.15 and same.high > 0.15 and same.p_value == 1


def test_a_random_samples_variance_counts_its_random_mix_of_scenarios():
    """--sample keeps each record by a coin, so how many records of each scenario it holds is
    random, and with them each scenario's weight in the section score. Every draw of two
    scenarios of 16 records each (kept with probability 1/2; a kept record won with probability
    0.95 in one, 0.05 in the other) is enumerated for the true mean squared error of the
    section score around the judge's expected score on the whole selection (1/2); the
    estimated variance must match it on average, where the fixed-count one leaves out the mix
    and falls short by half."""
    def binomial(n: int, k: int, p: float) -> float:
        return math.comb(n, k) * p**k * (1 - p) ** (n - k)

    size, odds = 16, {"s/won": 0.95, "s/lost": 0.05}
    mse = expected = fixed = mass = 0.0
    for n_won, n_lost in itertools.product(range(2, size + 1), repeat=2):  # (each scenario drawn twice at least)
        for k_won, k_lost in itertools.product(range(n_won + 1), range(n_lost + 1)):
            chance = (binomial(size, n_won, 0.5) * binomial(size, n_lost, 0.5)
                      * binomial(n_won, k_won, odds["s/won"]) * binomial(n_lost, k_lost, odds["s/lost"]))
            if chance < 1e-9:
                continue
            drawn = {"s/won": [1.0] * k_won + [0.0] * (n_won - k_won),
                     "s/lost": [1.0] * k_lost + [0.0] * (n_lost - k_lost)}
            section = {p: "s" for p in drawn}
            score = estimates(["s"], drawn, section, sampled=0.5)[0]["s"]
            mse += chance * (score.value - 0.5) ** 2
            expected += chance * score.variance
            fixed += chance * estimates(["s"], drawn, section)[0]["s"].variance
            mass += chance
    mse, expected, fixed = mse / mass, expected / mass, fixed / mass
    assert 0.9 * mse <= expected <= 1.2 * mse
    assert fixed < 0.6 * mse


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("run") / "out"
    run(make_config(judge="mock", data=data_root, out=out, cache=out.parent / "cache",
                    selection=records.Selection(limit=6, scenarios=["*Chat*", "*Code*"]), order="both"))
    return out


def test_every_score_of_a_run_has_an_interval_recomputed_from_its_samples(mock_run):
    summary = json.loads((mock_run / "summary.json").read_text())
    assert set(summary["intervals"]) == set(summary["scores"])
    # each record's score from samples.jsonl (both orders per comparison; BoN: every comparison won)
    comparisons: dict[tuple, list[float]] = defaultdict(list)
    for line in (mock_run / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        comparisons[(sample["category_path"], sample["uid"], sample.get("loser_index"))].append(sample["correct"])
    record_scores: dict[tuple, list[float]] = defaultdict(list)
    for (path, uid, _), both in comparisons.items():
        record_scores[(path, uid)].append(1.0 if both == [1, 1] else 0.5 if set(both) == {0, 1} else both[0])
    by_scenario: dict[str, list[float]] = defaultdict(list)
    for (path, _), scores in record_scores.items():
        by_scenario[path].append(scores[0] if len(scores) == 1 else float(all(s == 1 for s in scores)))
    assert any(score is None for score in summary["scores"].values())  # a section with no records
    for key, score in summary["scores"].items():
        if score is None:
            assert summary["intervals"][key] is None
            continue
        low, high = summary["intervals"][key]
        assert low <= score <= high and 0 <= low < high <= 1, key
    for scenario in summary["scenarios"]:
        values = by_scenario[scenario["category_path"]]
        mean = sum(values) / len(values)
        assert scenario["accuracy"] == pytest.approx(mean)
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)
        n_eff = mean * (1 - mean) / variance if 0 < mean < 1 and variance else len(values)
        z = intervals.student(Z, len(values) - 1) if variance else Z  # (all alike: a floor, no estimate)
        assert scenario["interval"] == pytest.approx(list(intervals.wilson(mean, n_eff, z)))
    assert summary["position"]["first_pick_interval"] and summary["position"]["consistency_interval"]


def test_reports_show_intervals_and_error_bars(mock_run):
    runs = load_runs([mock_run])
    summary = json.loads((mock_run / "summary.json").read_text())
    overall, (low, high) = summary["scores"]["overall"], summary["intervals"]["overall"]
    shown = f"{overall:.3f} ±{max(overall - low, high - overall):.3f}"
    out = io.StringIO()
    render_terminal(runs, Console(file=out, width=250))
    assert shown in out.getvalue()
    assert shown in render_markdown(runs)
    html = render_html(runs)
    bars = html.count('class="error-bar"')
    assert bars == sum(1 for key in runs[0].scores if runs[0].scores[key] is not None)
    assert f"95% interval {low:.3f} to {high:.3f}" in html


def test_a_sampled_runs_intervals_count_its_links_and_its_random_mix(data_root, tmp_path):
    """The summary of a --sample run: its intervals are estimates' with the records' linked sets
    (from samples.jsonl) and the sampling rate, recomputed here from the samples alone."""
    out = tmp_path / "out"
    run(make_config(judge="mock", data=data_root, out=out, cache=tmp_path / "cache",
                    selection=records.Selection(sample=0.4, seed=3, scenarios=["*Chat*", "*Code*"])))
    summary = json.loads((out / "summary.json").read_text())
    score: dict[tuple, float] = {}
    link: dict[tuple, int] = {}
    for line in (out / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        score[(sample["category_path"], sample["uid"])] = sample["record_correct"]
        link[(sample["category_path"], sample["uid"])] = sample["link"]
    values: dict[str, list[float]] = defaultdict(list)
    links: dict[str, list[int]] = defaultdict(list)
    for key in sorted(score):
        values[key[0]].append(score[key])
        links[key[0]].append(link[key])
    kind = {"Pairwise_set": "pairwise", "BoN_set": "bon"}
    section_of = {p: f"{kind[p.split('/')[0]]}_{p.split('/')[1].lower()}" for p in values}
    keys = list(summary["scores"])[:-1]
    expected, _ = estimates(keys, values, section_of, links=links, sampled=0.4)
    plain, _ = estimates(keys, values, section_of)
    assert len(set(link.values())) < len(link)  # some records are linked
    for key, estimate in expected.items():
        if estimate is not None:
            assert summary["intervals"][key] == pytest.approx(estimate.interval), key
    assert expected["overall"].variance > plain["overall"].variance
