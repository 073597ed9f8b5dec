"""JudgeBench end to end, as a user runs it: `data fetch` from a local fake of GitHub's raw files,
`run` of a generative judge through the real openai SDK against the fake server (a judge that
answers every presentation with the labels the committed official arena_hard output's
response held for it, some only after the follow-up turn) and of a tiny `hf:` reward model, then
report, compare, view and jury. The scores must be the official scorer's on the same verdicts
and rewards (tests/judgebench_official.py)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import torch
from fake_api import Reply, prompt_text
from judgebench_official import arena_hard_decision, category_scores, reward_model_decision
from local_site import serving, static_site
from test_judgebench import OFFICIAL, TABLE, rows
from tiny_models import build_tiny_reward_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmb_judge import benchmarks, cli
from rmb_judge.benchmarks.judgebench import SPLITS
from rmb_judge.providers.mock import extract_pair

JB = benchmarks.get("judgebench")
COMMIT = "e2c52c284e735e139b3daa61c206ee208f36c461"
HAIKU = "arena_hard:claude-3-haiku-20240307"
FIRST_REPLY = "Let me work through both answers first; a verdict follows."  # states no label


def replay(name: str, every: int = 5):
    """A fake judge answering each presentation of the committed output's split with the labels
    that output's response held for it (the data's order: judgment 0; swapped: 1). Every
    `every`-th presentation (by its prompt's digest) first answers without any label, and gives
    them when asked to continue (the follow-up turn)."""
    output = OFFICIAL[name]
    labels: dict[tuple[str, str], list[str]] = {}
    for row, stored in zip(rows(output["split"]), output["pairs"], strict=True):
        a, b = row["response_A"].strip(), row["response_B"].strip()
        labels[a, b], labels[b, a] = stored[0][1], stored[1][1]

    def respond(body: dict, wire: str) -> Reply:
        messages = body["messages"]
        first = next(m["content"] for m in messages if m["role"] == "user")
        shown = extract_pair(first)
        assert shown is not None, first[:200]
        said = " and ".join(f"[[{label}]]" for label in labels[shown[0].strip(), shown[1].strip()])
        if len(messages) > 2:  # the follow-up turn: the same request, the first reply, "continue ..."
            assert messages[-2] == {"role": "assistant", "content": FIRST_REPLY}
            assert messages[-1]["content"] == JB_FOLLOW_UP
            return Reply(f"My final verdict: {said}")
        if hashlib.sha256(prompt_text(body, wire).encode()).digest()[0] % every == 0:
            return Reply(FIRST_REPLY)
        return Reply(f"Comparing both answers with my own. {said}")

    return respond


JB_FOLLOW_UP = "continue your judgment and finish by outputting a final verdict label"


@pytest.fixture
def github(tmp_path, judgebench_data):
    """raw.githubusercontent.com for ScalerLab/JudgeBench at the pinned commit, from its own thread:
    /ScalerLab/JudgeBench/<commit>/data/<file>. Records the raw paths asked for."""
    asked: list[str] = []
    site = tmp_path / "github"
    folder = site / "ScalerLab" / "JudgeBench" / COMMIT / "data"
    folder.mkdir(parents=True)
    for name in SPLITS.values():
        (folder / name).write_bytes((judgebench_data / name).read_bytes())

    with serving(static_site(site, asked)) as url:
        yield f"{url}/ScalerLab/JudgeBench/{COMMIT}", asked, folder


def test_fetch_verifies_every_file_against_the_pinned_manifest(github, tmp_path, capsys):
    base, asked, served = github
    manifest = JB.manifest()
    assert manifest.commit == COMMIT and [manifest.url(e) for e in manifest.files] == [
        f"https://raw.githubusercontent.com/ScalerLab/JudgeBench/{COMMIT}/data/"
        f"dataset%3Djudgebench%2Cresponse_model%3D{model}.jsonl"
        for model in ("claude-3-5-sonnet-20240620", "gpt-4o-2024-05-13")]
    dest = tmp_path / "jb"
    assert cli.main(["data", "fetch", "--benchmark", "judgebench", "--data", str(dest), "--base-url", base]) == 0
    assert "2 files downloaded, 0 already present and verified; 620 records" in capsys.readouterr().out
    # (the client sends = and , as they are: a path may hold them)
    assert sorted(asked) == sorted(f"/ScalerLab/JudgeBench/{COMMIT}/data/{e.path}" for e in manifest.files)
    for entry in manifest.files:
        assert hashlib.sha256((dest / entry.path).read_bytes()).hexdigest() == entry.sha256
    assert cli.main(["data", "validate", "--benchmark", "judgebench", "--data", str(dest)]) == 0
    assert "2 of 2 data files, 620 records, all well-formed" in capsys.readouterr().out
    assert cli.main(["data", "info", "--benchmark", "judgebench", "--data", str(dest), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sections"]["knowledge"]["records"] == 308 and info["scenarios"]["livecodebench"] == 73
    # a mirror serving other bytes: the file is refused, nothing of it kept
    tampered = served / SPLITS["gpt"]
    tampered.write_bytes(tampered.read_bytes().replace(b"A>B", b"B>A", 1))
    other = tmp_path / "other"
    assert cli.main(["data", "fetch", "--benchmark", "judgebench", "--data", str(other), "--base-url", base]) == 2
    err = capsys.readouterr().err
    assert "does not match the manifest" in err and not (other / SPLITS["gpt"]).exists()


def test_a_generative_judge_scores_as_the_official_code_with_its_follow_up_turns(
        judgebench_data, tmp_path, fake_api_thread, monkeypatch, capsys):
    """The committed claude-3-haiku arena_hard output replayed through the fake server, some
    verdicts given only on the follow-up turn: the run's scores are the official ones (87 of
    270 pairs; 13 judgments held two different labels: no verdict, no follow-up), each
    follow-up is sent once, after the reply that stated no label, and a rerun pays nothing."""
    api = fake_api_thread
    api.responder = replay(HAIKU)
    for variable, value in api.env().items():
        monkeypatch.setenv(variable, value)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", "--benchmark", "judgebench", "--split", "claude", "--judge", "openai:gpt-4o-mini",
            "--data", str(judgebench_data), "--out", str(out), "--cache", str(cache), "--no-progress"]
    assert cli.main(args) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    expected = {key: a / b for key, (a, b) in TABLE[HAIKU].items()}
    assert summary["scores"] == pytest.approx(expected, abs=1e-12)
    assert summary["benchmark"] == "judgebench" and summary["complete"] and not summary["suspect"]
    calls = api.calls("openai")
    follow_ups = [c for c in calls if len(c.body["messages"]) == 4]
    firsts = [c for c in calls if len(c.body["messages"]) == 2]
    # each request asked once: 539, as one pair's two answers are the same text (both orders
    # show the same prompt, asked once for both)
    shown = {(r["question"], r[a], r[b]) for r in rows("claude")
             for a, b in (("response_A", "response_B"), ("response_B", "response_A"))}
    assert len(firsts) == len(shown) == 539 and 40 < len(follow_ups) < 160
    assert len({json.dumps(c.body["messages"]) for c in follow_ups}) == len(follow_ups)
    assert summary["usage"]["requests"] == len(calls)
    for call in firsts:  # the official request: temperature 0, max_tokens 4096, system + user
        assert call.body["temperature"] == 0 and call.body["max_tokens"] == 4096
        assert [m["role"] for m in call.body["messages"]] == ["system", "user"]
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 540 and {line["benchmark"] for line in lines} == {"judgebench"}
    asked_again = [line for line in lines if line["raw"].startswith("\n" + FIRST_REPLY + "\n")]
    assert len(asked_again) == len(follow_ups)
    assert all(line["raw"].startswith("\nLet me") and "My final verdict" in line["raw"] for line in asked_again)
    # the official scorer on the verdicts the run read: the same numbers
    judged = {(line["uid"], line["order"]): line for line in lines}
    pairs = []
    for row in rows("claude"):
        data_order = "AB" if row["label"] == "A>B" else "BA"
        swapped = "BA" if data_order == "AB" else "AB"
        decisions = [arena_hard_decision(judged[row["pair_id"], order]["raw"])[0] for order in (data_order, swapped)]
        pairs.append({**row, "judgments": [{"decision": d} for d in decisions]})
    assert summary["scores"] == pytest.approx(category_scores(pairs, True), abs=1e-12)
    # rerun: nothing sent, the same scores; --order fixed (the single game) from the same answers
    assert cli.main(args) == 0 and len(api.calls("openai")) == len(calls)
    assert json.loads((out / "summary.json").read_text())["scores"] == summary["scores"]
    fixed = tmp_path / "fixed"
    assert cli.main([*args[:-5], "--out", str(fixed), "--cache", str(cache), "--order", "fixed", "--no-progress"]) == 0
    assert len(api.calls("openai")) == len(calls)
    assert json.loads((fixed / "summary.json").read_text())["scores"] == pytest.approx(
        category_scores(pairs, False), abs=1e-12)
    assert json.loads((fixed / "summary.json").read_text())["scores"]["overall"] == pytest.approx(80 / 270)


def plain_rewards(model_dir: Path, records) -> dict[str, float]:
    """An independent one-at-a-time forward pass on [user question, assistant answer], as the
    official reward_model judge scores each answer."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    rewards = {}
    with torch.no_grad():
        for record in records:
            for answer in record.answers:
                conv = [{"role": "user", "content": record.conversation[0].content},
                        {"role": "assistant", "content": answer.text}]
                text = tok.apply_chat_template(conv, tokenize=False)
                ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
                rewards[answer.text] = model(input_ids=ids).logits[0, 0].item()
    return rewards


def test_a_reward_model_scores_as_the_official_code(judgebench_data, tmp_path):
    """A tiny hf: model on the first pair of each source, both orders (the default) and the single
    game: each answer scored once, the decisions the official reward_model rule gives on an
    independent forward pass, the official scores."""
    from rmb_judge.records import Selection

    model = build_tiny_reward_model(tmp_path / "rm", seed=5, max_position_embeddings=8192)
    out = tmp_path / "out"
    base = ["run", "--benchmark", "judgebench", "--judge", f"hf:{model}", "--data", str(judgebench_data),
            "--limit", "1", "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert cli.main([*base, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = JB.load(judgebench_data, Selection(limit=1)).records
    rewards = plain_rewards(model, records)
    pairs = []
    for row in (r for r in rows("gpt") if r["pair_id"] in {rec.uid for rec in records}):
        a, b = rewards[row["response_A"]], rewards[row["response_B"]]
        pairs.append({**row, "judgments": [{"decision": reward_model_decision(a, b)},
                                           {"decision": reward_model_decision(b, a)}]})
    expected = {k: v for k, v in category_scores(pairs, True).items()}
    assert summary["scores"] == pytest.approx(expected, abs=1e-12)
    assert summary["usage"]["answers_scored"] == 34 and summary["settings"]["order"] == "both"
    with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == 34
    fixed = tmp_path / "fixed"
    assert cli.main([*base, "--out", str(fixed), "--order", "fixed"]) == 0
    assert json.loads((fixed / "summary.json").read_text())["scores"] == pytest.approx(
        category_scores(pairs, False), abs=1e-12)
    assert json.loads((fixed / "summary.json").read_text())["usage"]["answers_scored"] == 0  # all cached


def test_report_compare_view_and_jury_read_judgebench_runs(judgebench_data, data_root, tmp_path, capsys):
    """Runs of the mock judge on JudgeBench (and one on RMB): the report groups them by benchmark
    with a judge x benchmark table and JudgeBench's published rows, compare pairs their records,
    view shows them, and a jury is built from them."""
    runs = tmp_path / "runs"
    base = ["run", "--judge", "mock", "--cache", str(tmp_path / "cache"), "--no-progress", "--limit", "2"]
    for name, extra in (("jb-arena", []), ("jb-fixed", ["--order", "fixed"]), ("jb-arena-2", ["--seed", "1"]),
                        ("jb-claude", ["--split", "claude"])):
        assert cli.main([*base, "--benchmark", "judgebench", "--data", str(judgebench_data),
                         "--out", str(runs / name), *extra]) == 0
    assert cli.main([*base, "--data", str(data_root), "--scenarios", "*Chat*", "--out", str(runs / "rmb")]) == 0
    capsys.readouterr()
    assert cli.main(["report", str(runs), "--published", "--markdown", str(tmp_path / "board.md")]) == 0
    board = (tmp_path / "board.md").read_text()
    assert "# Judges across benchmarks" in board and "JudgeBench" in board and "RMB" in board
    assert "o1-mini-2024-09-12 (arena\\_hard judge)" in board and "0.657" in board
    # each split is a selection of its own, said in words (never "selection not recorded")
    assert "split claude" in board and "split gpt" in board and "not recorded" not in board
    capsys.readouterr()
    assert cli.main(["compare", str(runs / "jb-arena"), str(runs / "jb-fixed"), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["shared"] == 34 and [s["key"] for s in compared["scores"]][-1] == "overall"
    assert any("order: both vs fixed" in d for d in compared["differs"])
    assert cli.main(["compare", str(runs / "jb-arena"), str(runs / "rmb")]) == 2
    assert "different benchmarks" in capsys.readouterr().err
    from rmb_judge.explorer.index import build

    index = build([runs / "jb-arena", runs / "jb-fixed"])
    assert len(index.entries) == 34 and not index.notes
    entry = index.entries[0]
    shown = index.detail(entry.id)
    assert shown is not None and [a["label"] for a in shown["answers"]] == ["chosen", "rejected"]
    (comparison,) = shown["runs"][0]["comparisons"]
    assert [p["order"] for p in comparison["presentations"]] == list(JB.orders_for(
        JB.judgments(entry.record, "pairwise")[0], "both", 0))
    system, user = comparison["presentations"][0]["prompts"][0]
    assert system["role"] == "system" and user["content"].startswith("<|User Prompt|>\n")
    assert cli.main(["jury", str(runs / "jb-arena"), str(runs / "jb-fixed"), str(runs / "jb-arena-2"),
                     "--out", str(tmp_path / "jury")]) in (0, 6)
    jury = json.loads((tmp_path / "jury" / "summary.json").read_text())
    assert jury["benchmark"] == "judgebench" and set(jury["scores"]) == {
        "knowledge", "reasoning", "math", "coding", "overall"}
