"""`run --precision H`: a seeded, stratified, growing sample that stops at the half-width it
promised, reuses every answer when H shrinks or the full run follows, and composes with
--max-cost. Requests are counted at the fake server."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import DATA, make_config
from fake_api import FAKE_KEY, FakeAPI

from rmb_judge import cli, intervals, records
from rmb_judge.compare import compare, read_run
from rmb_judge.config import EngineConfig
from rmb_judge.precision import Pool, Sampler, allocate
from rmb_judge.session import run

MODEL = "gpt-4o-mini"
SCENARIOS = ["*Chat*"]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


def config(api, out: Path, precision: float | None, **kw):
    return make_config(judge=f"openai:{MODEL}", data=DATA, out=out, cache=out.parent / "cache",
                       base_urls=[api.openai_url], selection=records.Selection(scenarios=SCENARIOS),
                       precision=precision, replace=True, **kw)


def population() -> dict[str, int]:
    """Records per scenario, counted from the data files themselves."""
    return {path.relative_to(DATA).with_suffix("").as_posix(): len(json.loads(path.read_text()))
            for path in DATA.rglob("*.json") if "Chat" in path.as_posix()}


def recomputed_overall(out: Path) -> tuple[float, dict[str, list[float]]]:
    """Overall from samples.jsonl: each scenario's mean record score weighted by its size in
    the data, within its section; then the mean of the sections."""
    by_record: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in (out / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        by_record[(sample["category_path"], sample["uid"])].append(sample["correct"])
    by_scenario: dict[str, list[float]] = defaultdict(list)
    for (path, _), scores in by_record.items():
        by_scenario[path].append(scores[0] if path.startswith("Pairwise") else float(all(s == 1 for s in scores)))
    sizes = population()
    sections: dict[str, list[str]] = defaultdict(list)
    for path in by_scenario:
        sections["/".join(path.split("/")[:2])].append(path)
    means = [sum(sizes[p] * sum(by_scenario[p]) / len(by_scenario[p]) for p in paths) / sum(sizes[p] for p in paths)
             for paths in sections.values()]
    return sum(means) / len(means), by_scenario


def bodies(api) -> list[str]:
    return [json.dumps(call.body, sort_keys=True) for call in api.calls()]


def test_stops_at_the_promised_half_width_and_a_smaller_one_reuses_every_answer(tmp_path):
    with FakeAPI().run_in_thread() as api:
        coarse = run(config(api, tmp_path / "coarse", 0.12)).json
        sent_coarse = len(api.calls())
        fine = run(config(api, tmp_path / "fine", 0.08)).json
        full = run(config(api, tmp_path / "full", None)).json
        sent = bodies(api)
    assert len(sent) == len(set(sent))  # no request was ever sent twice
    for summary in (coarse, fine):
        assert summary["stopped_reason"] == "precision" and summary["complete"] is True
        low, high = summary["intervals"]["overall"]
        reach = max(summary["scores"]["overall"] - low, high - summary["scores"]["overall"])  # the farther side
        assert reach <= summary["settings"]["precision"]
        assert summary["precision"]["z"] > 1.96  # corrected for stopping when narrow enough
        assert summary["precision"]["reached"] and summary["precision"]["half_width"] == pytest.approx(reach)
        assert summary["data"]["records_scored"] < summary["data"]["records"] == sum(population().values())
    out = tmp_path / "coarse"
    overall, by_scenario = recomputed_overall(out)
    assert coarse["scores"]["overall"] == pytest.approx(overall)
    assert set(by_scenario) == set(population()) and min(map(len, by_scenario.values())) >= 2
    assert coarse["usage"]["requests"] == sent_coarse
    # the finer run judged a superset of the coarse sample and paid only for what it added
    assert fine["usage"]["cache_hits"] >= coarse["data"]["comparisons_judged"]
    assert fine["data"]["records_scored"] > coarse["data"]["records_scored"]
    # the full run: everything, of which the fine run's answers came from the cache
    assert full["stopped_reason"] is None and full["precision"] is None
    # (a cached answer may serve a comparison outside the sample too: the same prompt twice in the data)
    assert full["usage"]["cache_hits"] >= fine["data"]["comparisons_judged"]
    assert full["usage"]["requests"] + fine["usage"]["requests"] + coarse["usage"]["requests"] == len(sent)
    # the sampled estimate lands within H of the full-data score (seeded: a fact of this sample)
    assert abs(fine["scores"]["overall"] - full["scores"]["overall"]) <= 0.08
    # compare weighs the sample's scenarios as the sampled run does: the same answers, no difference
    paired = compare(read_run(tmp_path / "fine"), read_run(tmp_path / "full"))
    assert paired.shared == fine["data"]["records_scored"] and paired.differs == ["precision: 0.08 vs default"]
    assert paired.overall is not None and paired.overall.a == pytest.approx(fine["scores"]["overall"])
    assert paired.overall.difference == 0 and paired.overall.p_value == 1


def test_a_budget_stops_a_precision_run_first_and_a_rerun_finishes_it(tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        args = ["run", "--judge", f"openai:{MODEL}", "--data", str(DATA), "--scenarios", SCENARIOS[0],
                "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--base-url", api.openai_url,
                "--precision", "0.08", "--price", "published", "--no-progress"]
        assert cli.main([*args, "--max-cost", "0.005"]) == cli.EXIT_BUDGET
        partial = json.loads((tmp_path / "o" / "summary.json").read_text())
        assert partial["stopped_reason"] == "budget" and partial["complete"] is False
        assert partial["precision"]["target"] == 0.08
        assert partial["usage"]["cost_usd"] <= 0.005
        capsys.readouterr()
        assert cli.main([*args, "--max-cost", "5"]) == 0
        assert "--precision 0.08: reached" in capsys.readouterr().err
        done = json.loads((tmp_path / "o" / "summary.json").read_text())
        sent = bodies(api)
    assert done["stopped_reason"] == "precision" and done["precision"]["reached"]
    assert len(sent) == len(set(sent))


def test_an_offline_rerun_of_a_precision_run_needs_only_its_sample(tmp_path):
    with FakeAPI().run_in_thread() as api:
        first = run(config(api, tmp_path / "a", 0.1)).json
        again = run(config(api, tmp_path / "b", 0.1, engine=EngineConfig(offline=True))).json
        assert len(api.calls()) == first["usage"]["requests"]
    assert again["usage"]["requests"] == 0 and again["scores"] == first["scores"]


def pools(sizes: dict[str, int], cost: float = 1.0) -> list[Pool]:
    return [Pool(key, key.split("/")[0], list(range(n)), [cost] * n) for key, n in sizes.items()]


def test_the_sampler_grows_prefixes_only_and_stops_at_the_target():
    drawn = pools({"a/x": 400, "a/y": 100, "b/z": 300})
    sampler = Sampler(drawn, 0.05)
    sizes = sampler.first()
    assert sizes == {"a/x": 2, "a/y": 2, "b/z": 2}
    truth = {"a/x": [float(i % 3 != 0) for i in range(400)], "a/y": [float(i % 2) for i in range(100)],
             "b/z": [float(i % 5 != 0) for i in range(300)]}
    while True:
        step = sampler.step({k: truth[k][:n] for k, n in sizes.items()})
        if step.stop:
            break
        assert all(step.sizes[k] >= sizes[k] for k in sizes)  # the sample only grows
        sizes = step.sizes
    assert step.stop == "precision" and step.estimate is not None and step.estimate.half_width <= 0.05
    estimate = intervals.stratified([intervals.Stratum(w, truth[k][: sizes[k]]) for k, w in
                                     {"a/x": 400 / 500 / 2, "a/y": 100 / 500 / 2, "b/z": 0.5}.items()])
    assert estimate is not None and step.estimate.value == pytest.approx(estimate.value)


def test_neyman_allocation_by_hand():
    # two strata, weights 1/2 each, variances 0.25 and 0.0625 (S_h = 0.5 and 0.25), costs 1 and 4:
    # n_h = W_h S_h / sqrt(c_h) * sum_k W_k S_k sqrt(c_k) / V = (0.25, 0.0625) * 0.5 / 0.001
    drawn = [Pool("x", "s", list(range(1000)), [1.0] * 1000), Pool("y", "s", list(range(1000)), [4.0] * 1000)]
    sizes = allocate(drawn, {"x": 0.5, "y": 0.5}, {"x": 0.25, "y": 0.0625}, {}, 0.001)
    assert sizes == {"x": 125, "y": 32}  # 31.25 rounded up
    # which meets the target exactly: W^2 S^2 / n = 0.0005 each
    assert 0.25 * 0.25 / 125 + 0.25 * 0.0625 / 31.25 == pytest.approx(0.001)


def test_estimate_predicts_the_sample_from_an_assumed_variance_and_the_run_stays_within_it(tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        args = ["--judge", f"openai:{MODEL}", "--data", str(DATA), "--scenarios", SCENARIOS[0],
                "--cache", str(tmp_path / "c"), "--base-url", api.openai_url, "--precision", "0.08"]
        assert cli.main(["estimate", *args, "--json"]) == 0
        predicted = json.loads(capsys.readouterr().out)
        assert cli.main(["run", *args, "--out", str(tmp_path / "o"), "--no-progress"]) == 0
        summary = json.loads((tmp_path / "o" / "summary.json").read_text())
        capsys.readouterr()
        assert cli.main(["estimate", *args, "--json"]) == 0
        after = json.loads(capsys.readouterr().out)
    assert 0.5 <= predicted["precision"]["assumed_accuracy"] <= 0.95
    assert predicted["precision"]["population"] == sum(population().values())
    assert 0 < predicted["requests"] < predicted["comparisons"]
    # the judge here wins about half its comparisons: the run needed no more than predicted (plus rounding)
    assert summary["usage"]["requests"] <= predicted["requests"] * 1.1
    assert after["cached"] > 0 and after["requests"] < predicted["requests"]


def test_the_same_command_on_the_same_answers_gives_the_same_sample_whatever_the_cache_holds(tmp_path):
    """A --precision run's sample follows from its command and the answers alone: rerun on a
    cache that also holds every other answer (a full run's), it judges the same records and
    reports the same score, for nothing."""
    with FakeAPI().run_in_thread() as api:
        first = run(config(api, tmp_path / "first", 0.1)).json
        run(config(api, tmp_path / "full", None))
        sent = len(api.calls())
        again = run(config(api, tmp_path / "again", 0.1)).json
        assert len(api.calls()) == sent
    for key in ("records", "rounds", "requests_sample", "half_width"):
        assert again["precision"][key] == first["precision"][key], key
    assert again["scores"] == first["scores"] and again["intervals"] == first["intervals"]
    assert again["usage"]["requests"] == 0


def test_a_resumed_run_ends_as_an_uninterrupted_one(tmp_path, capsys):
    """Stopped by --max-cost in its second round and rerun, a --precision run judges the same
    sample and reports the same numbers as one that was never stopped."""
    with FakeAPI().run_in_thread() as api:
        whole = run(config(api, tmp_path / "whole", 0.08, price="published")).json
        args = ["run", "--judge", f"openai:{MODEL}", "--data", str(DATA), "--scenarios", SCENARIOS[0],
                "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c2"), "--base-url", api.openai_url,
                "--precision", "0.08", "--price", "published", "--no-progress"]
        budget = whole["usage"]["cost_usd"] * 0.7
        assert cli.main([*args, "--max-cost", f"{budget:.6f}"]) == cli.EXIT_BUDGET
        assert cli.main(args) == 0
    resumed = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert whole["precision"]["rounds"] >= 2
    for key in ("records", "rounds", "requests_sample", "half_width", "reached"):
        assert resumed["precision"][key] == whole["precision"][key], key
    assert resumed["scores"] == whole["scores"] and resumed["intervals"] == whole["intervals"]


def test_a_run_whose_requests_failed_does_not_say_it_reached_its_precision(tmp_path, capsys):
    """Requests that fail after every retry leave holes in the sample: the run stops growing it,
    says the target was not reached and exits incomplete; a rerun retries them."""
    with FakeAPI(failing_share=0.05).run_in_thread() as api:
        args = ["run", "--judge", f"openai:{MODEL}", "--data", str(DATA), "--scenarios", SCENARIOS[0],
                "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--base-url", api.openai_url,
                "--precision", "0.1", "--no-progress", "--max-retries", "0"]
        assert cli.main(args) == cli.EXIT_INCOMPLETE
        err = capsys.readouterr().err
        summary = json.loads((tmp_path / "o" / "summary.json").read_text())
        assert summary["usage"]["failed"] > 0 and summary["complete"] is False
        assert "--precision 0.1: not reached" in err and "reached ±" not in err
        assert summary["precision"]["reached"] is False and summary["stopped_reason"] != "precision"
        api.failing_share = 0.0
        assert cli.main(args) == 0
        assert "--precision 0.1: reached" in capsys.readouterr().err


def last_progress_line(err: str) -> str:
    return [line for line in err.splitlines() if line.startswith("[rmb-judge")][-1]


def test_the_live_view_of_a_precision_run_shows_its_rounds_and_the_summarys_numbers(tmp_path, capsys):
    """The plain progress line of a --precision run: its round, the current ± against the
    target and the round's requests, records of the sample (not the whole selection) and the
    section scores and counters its summary ends with."""
    with FakeAPI().run_in_thread() as api:
        args = ["run", "--judge", f"openai:{MODEL}", "--data", str(DATA), "--scenarios", SCENARIOS[0],
                "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--base-url", api.openai_url,
                "--precision", "0.1", "--no-progress"]
        assert cli.main(args) == 0
    line = last_progress_line(capsys.readouterr().err)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    sampling = summary["precision"]
    assert f"round {sampling['rounds']}" in line
    assert f"overall {summary['scores']['overall']:.3f} ±{sampling['half_width']:.3f} (target ±0.1)" in line
    assert f"{sampling['records']}/{sampling['records']} records" in line
    assert "ETA" not in line and "projected" not in line  # (of the whole selection, which it does not judge)
    assert "round requests" in line
    for key in summary["sections"]:
        assert f"{key} {100 * summary['scores'][key]:.1f}%" in line, key
    usage = summary["usage"]
    for name in ("unparsed", "refused", "failed", "truncated"):
        assert f"{name} {usage[name]}" in line
