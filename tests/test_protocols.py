"""Judging protocols end to end: every template through both SDKs, odd judge answers,
refusals, truncation, and majority voting that pays only for new samples."""

import json
import re
from collections import defaultdict
from statistics import mean

import pytest
from conftest import RMB, make_config
from fake_api import FAKE_KEY, FakeAPI, Reply, prompt_text
from test_scoring import independent_scores

from rmb_judge import records
from rmb_judge.judges import parse_spec
from rmb_judge.providers.mock import simulated_reply, stable_hash
from rmb_judge.session import run

LIMIT = 2
SCENARIOS = ["*Chat/Discussion", "*Code/Documentation", "*Harmlessness/S1", "*Harmlessness/multi"]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)


def config(api, wire, data_root, out, **kw):
    url = api.openai_url if wire == "openai" else api.anthropic_url
    return make_config(judge=parse_spec(f"{wire}:judge"), data=data_root, out=out / "out", cache=out / "cache",
                     base_urls=[url], selection=records.Selection(limit=LIMIT, scenarios=SCENARIOS), **kw)


def selected_root(data_root, tmp_path):
    """The selected scenario files alone, for the independent computation."""
    root = tmp_path / "selected"
    for pattern in SCENARIOS:
        for path in data_root.rglob("*.json"):
            rel = path.relative_to(data_root).as_posix()
            import fnmatch
            if fnmatch.fnmatch(rel.removesuffix(".json"), pattern):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(path.read_bytes())
    return root


def rating(answer):
    return 1 + stable_hash(answer.strip()) % 10  # what the fake judge rates an answer


def independent_pointwise(root):
    sections = defaultdict(list)
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        set_name = "pairwise" if rel.startswith("Pairwise") else "bon"
        for item in json.loads(path.read_text())[:LIMIT]:
            if set_name == "pairwise":
                a, b = rating(item["chosen"]["answer"]), rating(item["reject"]["answer"])
                score = 1.0 if a > b else 0.5 if a == b else 0.0
            else:
                best = rating(item["bon_best"]["answer"])
                score = float(all(best > rating(l["answer"]) for l in item["loser_list"]))
            sections[f"{set_name}_{rel.split('/')[1].lower()}"].append(score)
    scores = {k: mean(v) for k, v in sections.items()}
    scores["overall"] = mean(scores.values())
    return scores


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize("template", ["rmb", "rmb-criteria", "arena-hard", "json", "pointwise"])
def test_every_template_end_to_end(template, wire, data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        result = run(config(api, wire, data_root, tmp_path, template=template))
        bodies = [c.body for c in api.calls()]
    root = selected_root(data_root, tmp_path)
    expected = independent_pointwise(root) if template == "pointwise" else independent_scores(root, LIMIT)[0]
    assert result.complete
    assert result.json["scores"] == pytest.approx(expected, abs=1e-12)
    assert result.json["usage"]["unparsed"] == 0
    if template == "pointwise":  # one request per unique answer, whatever the comparisons share
        answers = {(r.uid, a.text) for r in RMB.load(data_root, records.Selection(limit=LIMIT, scenarios=SCENARIOS)).records
                   for a in (r.chosen[0], *r.rejected)}
        assert len(bodies) <= len(answers)
    if template == "json" and wire == "openai":
        assert all(b["response_format"] == {"type": "json_object"} for b in bodies)
    if template == "rmb-criteria":
        systems = [json.dumps(b) for b in bodies]
        assert any("Safety comes first" in s for s in systems) and any("goal is helpfulness" in s for s in systems)


def odd_judge(body, wire):
    """Real judges' habits: markdown, echoed instructions, refusals, truncation, thinking."""
    prompt = prompt_text(body, wire)
    verdict = simulated_reply(prompt)  # "[[A]]" or "[[B]]"
    shape = stable_hash(prompt) % 6
    if shape == 0:
        return Reply(f"Output \"[[A]]\" if A is better, \"[[B]]\" if B is better.\n\nBoth are fine, but **{verdict}**")
    if shape == 1:
        return Reply("I'm sorry, but I can't help with evaluating this content.", refusal=True)
    if shape == 2:
        return Reply("I'm sorry, but I can't assist with that request.")
    if shape == 3:
        return Reply("Assistant A begins well, but", finish="length")
    if shape == 4:
        return Reply(f"```\nFinal verdict: {verdict}\n```", thinking="Let me compare both answers carefully.")
    return Reply(f"## Verdict\n{verdict}")


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_odd_answers_refusals_and_truncation_are_counted(wire, data_root, tmp_path):
    with FakeAPI(odd_judge).run_in_thread() as api:
        result = run(config(api, wire, data_root, tmp_path, order="fixed"))
    lines = [json.loads(l) for l in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    usage = result.json["usage"]
    refused = [l for l in lines if l["refused"]]
    truncated = [l for l in lines if l["truncated"]]
    parsed = [l for l in lines if l["verdict"] is not None]
    assert refused and truncated and parsed
    assert all(l["verdict"] is None for l in refused + truncated)
    assert usage["refused"] == len(refused) and usage["truncated"] == len(truncated)
    assert usage["unparsed"] == len(lines) - len(parsed) - len(refused)
    assert all("I'm sorry" in l["raw"] for l in refused)
    # the per-scenario counts add up to the summary's
    assert sum(s["refused"] for s in result.json["scenarios"]) == len(refused)
    # echoed instructions and thinking never decide: every parsed verdict is the judge's real one
    for l in parsed:
        assert l["verdict"] == re.findall(r"\[\[([AB])\]\]", l["raw"])[-1]


def test_raising_samples_pays_only_for_new_samples(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        one = run(config(api, "openai", data_root, tmp_path, samples=1, temperature=0.7))
        comparisons = one.json["data"]["comparisons_judged"]
        sent_before = len(api.calls())
        three = run(config(api, "openai", data_root, tmp_path, samples=3, temperature=0.7, replace=True))
        new = len(api.calls()) - sent_before
    # RMB repeats a few comparisons verbatim (same conversation and answers): those share
    # one request, so count unique requests
    unique = one.json["usage"]["requests"]
    assert sent_before == unique and 0 < unique <= comparisons
    assert new == three.json["usage"]["requests"] == 2 * unique
    assert three.json["agreement"]["samples"] == 3
    lines = [json.loads(l) for l in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert all(len(l["votes"]) == 3 for l in lines)
