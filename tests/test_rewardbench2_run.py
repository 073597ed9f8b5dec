"""RewardBench 2 end to end, as a user runs it: `data fetch` from a local fake of the Hugging
Face hub (the endpoints huggingface_hub really calls, HF_ENDPOINT pointing at it), `run` of a
generative judge through the real openai SDK against the fake server (4-way rankings and Ties
ratings; the ratings template), a tiny `hf:` reward model and the mock judge, then report,
compare and view. The scores must be the official code's on the same replies and rewards
(tests/rewardbench2_official.py), recomputed here from what the fake server was sent and said."""

from __future__ import annotations

import hashlib
import json
import re
import warnings

import huggingface_hub
import pytest
import rb2_fixture
import torch
from aiohttp import web
from fake_api import Fault, rewardbench2_judge
from local_site import serving
from rewardbench2_official import (
    Dataset,
    parse_rating,
    process_judgement,
    process_shuffled,
    process_single_model,
    ratings_result,
    reroll_result,
)
from tiny_models import build_tiny_reward_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmb_judge import benchmarks, cli
from rmb_judge.hubdata import LOCK

RB2 = benchmarks.get("rewardbench2")
REPO = "allenai/reward-bench-2"
SHA = "0123456789abcdef0123456789abcdef01234567"
SUBSET_KEYS = {"Factuality": "factuality", "Precise IF": "precise_if", "Math": "math", "Safety": "safety",
               "Focus": "focus"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake hub serving the dataset's parquet at commit SHA (main points there): the revision
    info API and the resolve endpoint (HEAD for metadata, GET for the bytes), as huggingface_hub
    calls them. Yields the served file (tests may tamper with it) and the paths asked for."""
    served = rb2_fixture.write(tmp_path / "served")
    asked: list[str] = []

    async def info(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"id": REPO, "sha": SHA, "siblings": [{"rfilename": rb2_fixture.FILE}]})

    async def resolve(request: web.Request) -> web.StreamResponse:
        asked.append(f"{request.method} {request.path}")
        if request.match_info["revision"] not in (SHA, "main") or request.match_info["file"] != rb2_fixture.FILE:
            return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"})
        body = served.read_bytes()
        headers = {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
                   "Content-Length": str(len(body))}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get(f"/api/datasets/{REPO}/revision/{{revision}}", info)
    app.router.add_route("*", f"/datasets/{REPO}/resolve/{{revision}}/{{file:.+}}", resolve)
    with serving(app) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield served, asked


def test_fetch_locks_the_commit_and_the_file_and_refuses_a_tampered_one(hub, tmp_path, capsys):
    served, asked = hub
    dest = tmp_path / "rb2"
    fetch = ["data", "fetch", "--benchmark", "rewardbench2", "--data", str(dest)]
    assert cli.main(fetch) == 0
    assert "1 files downloaded, 0 already present and verified; 28 records" in capsys.readouterr().out
    assert asked[0] == f"/api/datasets/{REPO}/revision/main"  # the commit main is at, asked once
    assert all(SHA in path for path in asked[1:]) and asked[1:]  # then everything at exactly that commit
    lock = json.loads((dest / LOCK).read_text())
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    assert lock == {"repo": REPO, "commit": SHA,
                    "files": {rb2_fixture.FILE: {"size": served.stat().st_size, "sha256": digest}}}
    assert cli.main(["data", "validate", "--benchmark", "rewardbench2", "--data", str(dest)]) == 0
    assert "1 of 1 data files, 28 records, all well-formed" in capsys.readouterr().out
    assert cli.main(["data", "info", "--benchmark", "rewardbench2", "--data", str(dest), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scenarios"] == {"Factuality": 4, "Focus": 4, "Math": 4, "Precise IF": 4, "Safety": 4, "Ties": 8}
    asked.clear()
    assert cli.main(fetch) == 0 and not asked  # in place and matching its lock: nothing asked
    assert "0 files downloaded, 1 already present and verified" in capsys.readouterr().out
    # the hub now serves other bytes at the locked commit: refused, the copy's lock unchanged
    table = rb2_fixture.rows()
    table[0]["chosen"] = ["A different answer."]
    rb2_fixture.write(served.parent.parent, table)
    (dest / rb2_fixture.FILE).unlink()
    assert cli.main(fetch) == 2
    assert "does not match the lock file" in capsys.readouterr().err
    assert not (dest / rb2_fixture.FILE).exists() and json.loads((dest / LOCK).read_text()) == lock
    assert not list(dest.glob(".fetch-*"))
    # a copy changed on disk is refused by a run, naming the file and its lock
    rb2_fixture.write(dest, table)
    assert cli.main(["run", "--benchmark", "rewardbench2", "--judge", "mock", "--data", str(dest), "--out",
                     str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-progress"]) == 2
    assert "does not match the lock file rmb-judge.lock.json" in capsys.readouterr().err


def test_fetch_at_a_pinned_revision_asks_nothing_else_and_runs_record_it(hub, tmp_path, capsys):
    served, asked = hub
    dest = tmp_path / "pinned"
    assert cli.main(["data", "fetch", "--benchmark", "rewardbench2", "--data", str(dest), "--revision", SHA]) == 0
    assert asked and not any("/api/" in path for path in asked)
    assert cli.main(["data", "fetch", "--benchmark", "rewardbench2", "--data", str(dest),
                     "--revision", "f" * 40]) == 2
    assert f"holds commit {SHA[:12]}" in capsys.readouterr().err
    assert cli.main(["data", "fetch", "--benchmark", "rewardbench2", "--data", str(tmp_path / "x"),
                     "--revision", "main"]) == 2
    assert "40 hex digits" in capsys.readouterr().err
    out = tmp_path / "out"
    assert cli.main(["run", "--benchmark", "rewardbench2", "--judge", "mock", "--data", str(dest), "--out", str(out),
                     "--cache", str(tmp_path / "cache"), "--no-progress", "--limit", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["source"] == {"repo": REPO, "commit": SHA, "lock": LOCK}
    assert manifest["data"]["files"] == {rb2_fixture.FILE: hashlib.sha256(served.read_bytes()).hexdigest()}


def official_from_calls(calls, records) -> dict[str, float]:
    """The official scores recomputed from what the fake server was sent and replied: each 4-way
    request's reply by `process_judgement`, scored by `process_shuffled` at the slot the prompt
    shows the correct answer in; each rating request's reply by `get_single_rating`'s parse,
    grouped into rows (ratings best-of-N, Ties `process_single_model` with -1 for unreadable)."""
    replies = {call.body["messages"][-1]["content"]: call.reply for call in calls}
    results: dict[str, list[float]] = {}
    ties_rows = []
    for record in records:
        texts = [a.text for a in record.answers]
        question = record.conversation[0].content
        if record.subset == "Ties" or not any(f"[User Question]\n{question}\n" in u for u in replies):
            template = "rewardbench2-ratings-ties" if record.subset == "Ties" else "rewardbench2-ratings"
            rating = cli_template(template)
            ratings = [parse_rating(replies[rating.render_single(record.conversation, "", t)[0][1]]) for t in texts]
            if record.subset == "Ties":
                ties_rows.append({"id": record.uid, "subset": "Ties", "num_correct": len(record.chosen),
                                  "scores": ratings})
            else:
                results.setdefault(SUBSET_KEYS[record.subset], []).append(ratings_result(ratings))
            continue
        user = next(u for u in replies if f"[User Question]\n{question}\n" in u)
        shown = re.findall(r"Start of Assistant ([A-D])'s Answer\]\n(.*?)\n\[The End", user, re.S)
        slot = next(i for i, (_, text) in enumerate(shown) if text == texts[0])
        results.setdefault(SUBSET_KEYS[record.subset], []).append(
            process_shuffled(process_judgement(replies[user], None), slot))
    scores = {key: sum(v) / len(v) for key, v in results.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's division by zero, as upstream
        scores["ties"] = process_single_model(Dataset(ties_rows))[1]
    scores["overall"] = sum(scores.values()) / 6
    return scores


def cli_template(name: str):
    from rmb_judge import templates

    return templates.load(name)


@pytest.fixture
def rb2_data(tmp_path):
    rb2_fixture.write(tmp_path / "data")
    return tmp_path / "data"


def test_a_generative_judge_scores_as_the_official_code(rb2_data, tmp_path, fake_api_thread, monkeypatch, capsys):
    """The 4-way prompt for best-of-4 rows (a seeded swap layout each), Ties always rated with its
    own prompt at 1,024 tokens: the scores are the official code's on the replies; an unreadable
    4-way reply scores 0.25 and counts as unparsed; a rerun pays nothing; the ratings template
    rates every answer."""
    api = fake_api_thread
    records = RB2.load(rb2_data).records
    api.responder = rewardbench2_judge(records)
    for variable, value in api.env().items():
        monkeypatch.setenv(variable, value)
    base = ["run", "--benchmark", "rewardbench2", "--judge", "openai:gpt-4o-mini", "--data", str(rb2_data),
            "--cache", str(tmp_path / "cache"), "--no-progress", "--max-unparsed", "0.5"]
    assert cli.main([*base, "--out", str(tmp_path / "four")]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "four" / "summary.json").read_text())
    calls = api.calls("openai")
    four = [c for c in calls if c.body["messages"][0]["role"] == "system"]
    rated = [c for c in calls if c.body["messages"][0]["role"] == "user"]
    assert len(four) == 20 and len(rated) == sum(len(r.answers) for r in records if r.subset == "Ties")
    assert {c.body["max_tokens"] for c in four} == {2048} and {c.body["max_tokens"] for c in rated} == {1024}
    assert {c.body["temperature"] for c in calls} == {0}
    for call in calls:  # what each was answered, for the oracle
        call.reply = api.responder(call.body, "openai").text
    expected = official_from_calls(calls, records)
    assert summary["scores"] == pytest.approx(expected, abs=1e-12)
    unparsed = sum(process_judgement(c.reply, None) == "error" for c in four) + sum(
        parse_rating(c.reply) == -1 for c in rated)
    assert unparsed and sum(s["unparsed"] for s in summary["sections"].values()) == unparsed
    assert summary["complete"] and summary["intervals"]["ties"][0] <= summary["scores"]["ties"]
    layouts = [json.loads(line)["layout"] for line in (tmp_path / "four" / "samples.jsonl").read_text().splitlines()
               if json.loads(line)["subset"] != "Ties"]
    assert len(set(layouts)) > 1
    assert cli.main([*base, "--out", str(tmp_path / "again"), "--replace"]) == 0 and len(api.calls("openai")) == len(
        calls)
    capsys.readouterr()
    # per-answer ratings for every subset
    assert cli.main([*base, "--template", "rewardbench2-ratings", "--out", str(tmp_path / "ratings")]) == 0
    ratings = json.loads((tmp_path / "ratings" / "summary.json").read_text())
    calls = api.calls("openai")
    for call in calls:
        call.reply = api.responder(call.body, "openai").text
    new = calls[len(four) + len(rated):]
    assert len(new) == sum(len(r.answers) for r in records if r.subset != "Ties")  # Ties' answers cached
    assert ratings["scores"] == pytest.approx(official_from_calls(calls[len(four):], records), abs=1e-12)


def test_a_failed_request_leaves_the_run_incomplete_not_a_quarter(rb2_data, tmp_path, fake_api_thread, monkeypatch,
                                                                  capsys):
    api = fake_api_thread
    api.responder = rewardbench2_judge(RB2.load(rb2_data).records)
    for variable, value in api.env().items():
        monkeypatch.setenv(variable, value)
    api.schedule(Fault.http(500))  # the first request fails, and is not retried
    args = ["run", "--benchmark", "rewardbench2", "--judge", "openai:m", "--data", str(rb2_data), "--limit", "1",
            "--cache", str(tmp_path / "cache"), "--no-progress", "--out", str(tmp_path / "out"), "--max-retries", "0"]
    assert cli.main(args) != 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not summary["complete"] and sum(s["failed"] for s in summary["sections"].values()) == 1
    first = json.loads((tmp_path / "out" / "samples.jsonl").read_text().splitlines()[0])
    assert first["error"] and first["record_correct"] == 0.0


def test_a_reward_model_scores_as_the_official_code(rb2_data, tmp_path):
    """Every answer of every row scored once; best-of-n and Ties from those rewards exactly as
    the official scripts/run_v2.py scores them, rewards computed here on an independent pass."""
    model = build_tiny_reward_model(tmp_path / "rm", seed=3)
    out = tmp_path / "out"
    assert cli.main(["run", "--benchmark", "rewardbench2", "--judge", f"hf:{model}", "--data", str(rb2_data),
                     "--cache", str(tmp_path / "c"), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32).eval()
    results: dict[str, list[float]] = {}
    ties = []
    records = RB2.load(rb2_data).records
    for record in records:
        rewards = []
        for answer in record.answers:  # utils.py: [user prompt, assistant answer] through the chat template
            text = tok.apply_chat_template([{"role": "user", "content": record.conversation[0].content},
                                            {"role": "assistant", "content": answer.text}], tokenize=False)
            with torch.no_grad():
                ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
                rewards.append(net(input_ids=ids).logits[0, 0].item())
        if record.subset == "Ties":
            ties.append({"id": record.uid, "subset": "Ties", "num_correct": len(record.chosen), "scores": rewards})
        else:
            results.setdefault(SUBSET_KEYS[record.subset], []).append(float(reroll_result(rewards)))
    expected = {key: sum(v) / len(v) for key, v in results.items()}
    expected["ties"] = process_single_model(Dataset(ties))[1]
    expected["overall"] = sum(expected.values()) / 6
    assert summary["scores"] == pytest.approx(expected, abs=1e-5)
    assert summary["usage"]["answers_scored"] == len({(r.conversation[0].content, a.text)
                                                      for r in records for a in r.answers})


def test_report_compare_view_estimate_and_precision_read_rewardbench2_runs(rb2_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    base = ["run", "--benchmark", "rewardbench2", "--judge", "mock", "--data", str(rb2_data),
            "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert cli.main([*base, "--out", str(runs / "four")]) == 0
    assert cli.main([*base, "--out", str(runs / "fixed"), "--order", "fixed"]) == 0
    assert cli.main([*base, "--out", str(runs / "ratings"), "--template", "rewardbench2-ratings"]) == 0
    capsys.readouterr()
    four = json.loads((runs / "four" / "summary.json").read_text())
    assert cli.main(["report", str(runs), "--published", "--markdown", str(tmp_path / "board.md")]) == 0
    board = (tmp_path / "board.md").read_text()
    assert "RewardBench 2" in board and "Skywork-Reward-Gemma-2-27B" in board and "0.826" in board
    assert f"{four['scores']['ties']:.3f}" in board and f"{four['scores']['overall']:.3f}" in board
    capsys.readouterr()
    assert cli.main(["compare", str(runs / "four"), str(runs / "fixed"), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["shared"] == 28 and [s["key"] for s in compared["scores"]][-1] == "overall"
    assert any("ties, overall: a statistic of the whole set" in note for note in compared["notes"])
    fixed = json.loads((runs / "fixed" / "summary.json").read_text())
    math = next(s for s in compared["scores"] if s["key"] == "math")
    assert math["difference"] == pytest.approx(four["scores"]["math"] - fixed["scores"]["math"])
    from rmb_judge.explorer.index import build

    index = build([runs / "four", runs / "ratings"])
    assert len(index.entries) == 28 and not index.notes
    tie = next(e for e in index.entries if e.record.subset == "Ties")
    shown = index.detail(tie.id)
    assert shown is not None and len(shown["runs"][0]["comparisons"]) == len(tie.record.answers)
    assert cli.main(["estimate", "--benchmark", "rewardbench2", "--judge", "openai:gpt-4o-mini", "--data",
                     str(rb2_data), "--cache", str(tmp_path / "empty"), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["requests"] == 20 + sum(len(r.answers) for r in RB2.load(rb2_data).records if r.subset == "Ties")
    assert cli.main([*base, "--out", str(runs / "precise"), "--precision", "0.3"]) in (0, 6)
    precise = json.loads((runs / "precise" / "summary.json").read_text())
    assert precise["precision"]["records"] <= 28 and set(precise["scores"]) == set(four["scores"])
    # Ties rows are drawn by prompt, a ref row with its tied row, whatever the sample's size
    for target in ("0.3", "0.15"):
        assert cli.main([*base, "--out", str(runs / f"precise-{target}"), "--precision", target]) in (0, 6)
        lines = map(json.loads, (runs / f"precise-{target}" / "samples.jsonl").read_text().splitlines())
        rows = {line["uid"] for line in lines if line["subset"] == "Ties"}
        prompts = {uid.split(":")[1] for uid in rows}
        assert rows and rows == {f"{kind}:{prompt}" for prompt in prompts for kind in ("ref", "tied")}, rows
