"""Scores on real RMB records with a judge whose every verdict is known in advance,
checked against an independent computation straight from the JSON files."""

import json
from collections import defaultdict
from statistics import mean

import pytest
from conftest import make_config, present_files

from rmb_judge import records
from rmb_judge.judges import parse_spec
from rmb_judge.providers.mock import stable_hash
from rmb_judge.scoring import majority
from rmb_judge.session import run

LIMIT = 12


def mock_prefers_first(a: str, b: str) -> bool:
    return stable_hash(a.strip()) >= stable_hash(b.strip())


def independent_scores(root, limit):
    """RMB's definitions, computed from the raw files: pairwise = chosen beats rejected;
    Best-of-N = bon_best beats every loser; section = mean over records."""
    sections, scenarios = defaultdict(list), defaultdict(list)
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        set_name = "pairwise" if rel.startswith("Pairwise_set") else "bon"
        section = rel.split("/")[1].lower()
        for item in json.loads(path.read_text())[:limit]:
            if set_name == "pairwise":
                win = mock_prefers_first(item["chosen"]["answer"], item["reject"]["answer"])
            else:
                best = item["bon_best"]["answer"]
                win = all(mock_prefers_first(best, l["answer"]) for l in item["loser_list"])
            sections[f"{set_name}_{section}"].append(float(win))
            scenarios[item["category_path"]].append(float(win))
    scores = {k: mean(v) for k, v in sections.items()}
    scores["overall"] = mean(scores.values())
    return scores, {k: mean(v) for k, v in scenarios.items()}


def test_scores_equal_independent_computation(data_root, tmp_path):
    config = make_config(judge=parse_spec("mock"), data=data_root, out=tmp_path / "out",
                       selection=records.Selection(limit=LIMIT), order="fixed", cache=tmp_path / "c")
    result = run(config)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected, per_scenario = independent_scores(data_root, LIMIT)
    assert result.complete and summary["complete"] is True
    for key, value in expected.items():
        assert abs(summary["scores"][key] - value) < 1e-12, key
    got = {s["category_path"]: s["accuracy"] for s in summary["scenarios"]}
    assert got.keys() == per_scenario.keys() and len(got) == len(present_files())
    for path, value in per_scenario.items():
        assert abs(got[path] - value) < 1e-12, path
    assert summary["simulated"] is True  # labelled in every output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["simulated"] is True
    # one samples line per comparison, with its Best-of-N loser index
    lines = [json.loads(l) for l in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == summary["data"]["comparisons_expected"]
    bon = [l for l in lines if l["category_path"].startswith("BoN")]
    assert bon and all(isinstance(l["loser_index"], int) for l in bon)
    assert all(l["order"] == "AB" and l["verdict"] in ("A", "B") and l["simulated"] for l in lines)
    # rerun: everything from the cache
    again = run(config)
    assert again.json["usage"]["requests"] == 0
    assert again.json["usage"]["cache_hits"] == len(lines)
    assert again.json["scores"] == summary["scores"]


def test_majority_vote():
    assert majority(["A", "A", "B"]) == "A"
    assert majority(["A", "B", None]) == "tie"
    assert majority(["A", "B", "tie"]) == "tie"
    assert majority([None, None, "B"]) == "B"
    assert majority([None, None]) is None


def test_a_sampled_runs_chance_level_weighs_scenarios_by_population(data_root):
    """Two records of each Best-of-N scenario stand for the whole scenario, as in the scores."""
    from conftest import RMB

    from rmb_judge.scoring import chance_levels

    dataset = RMB.load(data_root, records.Selection(sets=("bon",), sections=("helpfulness",)))
    by_path = defaultdict(list)
    for record in dataset.records:
        by_path[record.subset].append(record)
    sample = [r for rs in by_path.values() for r in rs[:2]]
    population = {path: len(rs) for path, rs in by_path.items()}
    chance = {path: mean(0.5 ** len(r.rejected) for r in rs[:2]) for path, rs in by_path.items()}  # all N-1 won
    expected = sum(population[p] * chance[p] for p in by_path) / sum(population.values())
    assert chance_levels(RMB, sample, False, population)["bon_helpfulness"] == pytest.approx(expected)
    assert chance_levels(RMB, sample, False)["bon_helpfulness"] == pytest.approx(
        mean(0.5 ** len(r.rejected) for r in sample))


def test_the_first_pick_rate_counts_decisive_verdicts_only(data_root, tmp_path, monkeypatch):
    """A judge that picks the answer shown first whenever it picks one, and calls every third
    prompt a tie: it picked first on every decisive verdict, so its first-pick rate is 1, and
    a tie is neither the first nor the second answer."""
    from fake_api import FAKE_KEY, FakeAPI, Reply, prompt_text

    def respond(body, wire):
        prompt = prompt_text(body, wire)
        return Reply("[[A=B]]" if stable_hash(prompt) % 3 == 0 else "[[A>B]]")

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeAPI(respond).run_in_thread() as api:
        run(make_config(judge="openai:gpt-4o-mini", data=data_root, out=tmp_path / "out", cache=tmp_path / "c",
                        base_urls=[api.openai_url], template="arena-hard",
                        selection=records.Selection(limit=3, scenarios=["*Chat*"])))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    verdicts = [json.loads(line)["verdict"] for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert verdicts.count("tie") >= 5 and verdicts.count("A") >= 20 and "B" not in verdicts
    position = summary["position"]
    assert position["first_pick_rate"] == 1.0
    assert all(rate == 1.0 for rate in position["by_section"].values())
    assert position["first_pick_interval"][1] == 1.0
    # the guard names the bias over the decisive verdicts only
    assert any(f"shown first in 100% of {verdicts.count('A')} verdicts" in w for w in summary["warnings"])


def test_the_live_figures_are_the_summarys(data_root, tmp_path, capsys):
    """The progress line's per-section figure is the score the summary shows: a Best-of-N
    record counts once, won only if every comparison is."""
    from rmb_judge import cli

    assert cli.main(["run", "--judge", "mock", "--data", str(data_root), "--limit", "5", "--scenarios", "*Chat*",
                     "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--no-progress"]) == 0
    line = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[rmb-judge")][-1]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    records = summary["data"]["records_scored"]
    assert f"{records}/{records} records" in line
    for key in summary["sections"]:
        assert f"{key} {100 * summary['scores'][key]:.1f}%" in line, key
