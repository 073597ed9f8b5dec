"""`hf:` judges end to end through the CLI: a tiny reward model built offline, loaded
with from_pretrained(path) like a user's model, scored once per unique answer, cached,
and scored exactly as RMB defines it for scalar models."""

import json
import sqlite3
from collections import defaultdict
from statistics import mean

import pytest
import torch
from conftest import RMB
from tiny_models import build_tiny_reward_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmb_judge import cli, records

SCENARIOS = ["*Chat/Discussion", "*Harmlessness/multi"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_reward_model(tmp_path_factory.mktemp("rm"), seed=3, max_position_embeddings=4096)


def plain_rewards(model_dir, texts):
    """An independent one-at-a-time forward pass: tokenizer + model, nothing of ours."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = {}
    with torch.no_grad():
        for text in texts:
            ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
            out[text] = model(input_ids=ids).logits[0, 0].item()
    return out, tok


def run_args(model_dir, data_root, tmp_path, *selection: str) -> list[str]:
    """`run` of the tiny model on SCENARIOS, into tmp_path/out with its own cache."""
    args = ["run", "--judge", f"hf:{model_dir}", "--data", str(data_root), *selection,
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-progress"]
    for s in SCENARIOS:
        args += ["--scenarios", s]
    return args


def test_hf_judge_scores_like_rmb_and_scores_each_answer_once(model_dir, data_root, tmp_path, capsys):
    args = run_args(model_dir, data_root, tmp_path, "--limit", "3")
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())

    selected = RMB.load(data_root, records.Selection(limit=3, scenarios=SCENARIOS)).records
    tok = AutoTokenizer.from_pretrained(model_dir)

    def text(record, answer):
        conv = [{"role": m.role, "content": m.content} for m in record.conversation]
        return tok.apply_chat_template(conv + [{"role": "assistant", "content": answer.text}], tokenize=False)

    texts = {text(r, a) for r in selected for a in (r.chosen[0], *r.rejected)}
    rewards, _ = plain_rewards(model_dir, texts)
    sections = defaultdict(list)
    for r in selected:
        best = rewards[text(r, r.chosen[0])]
        wins = [best > rewards[text(r, o)] for o in r.rejected]  # strictly higher, as in RMB
        sections[r.section].append(float(all(wins)))
    for key, values in sections.items():
        assert summary["scores"][key] == pytest.approx(mean(values), abs=1e-12), key
    # each unique answer scored once: one cached reward per unique text
    with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == len(texts)
    assert summary["usage"]["answers_scored"] == summary["usage"]["unique_answers"] == len(texts)
    comparisons = sum(len(r.rejected) for r in selected)
    assert len(texts) < 2 * comparisons  # Best-of-N best answers are shared
    lines = [json.loads(l) for l in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == comparisons and all(len(l["raw"]) == 2 for l in lines)
    for line in lines:
        assert line["correct"] == float(line["raw"][0] > line["raw"][1])
    assert summary["position"] is None and summary["chance"]["bon_helpfulness"] < 0.5

    # rerun: every reward from the cache, even offline
    assert cli.main([*args, "--offline"]) == 0
    again = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert again["usage"]["answers_scored"] == 0 and again["scores"] == summary["scores"]


def test_hf_offline_on_empty_cache_fails(model_dir, data_root, tmp_path, capsys):
    code = cli.main(["run", "--judge", f"hf:{model_dir}", "--data", str(data_root), "--limit", "1",
                     "--scenarios", "*Chat/Discussion", "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "c"), "--offline"])
    assert code != 0 and "--offline" in capsys.readouterr().err


def test_hf_missing_model_is_one_line(data_root, tmp_path, capsys):
    code = cli.main(["run", "--judge", f"hf:{tmp_path}/nope", "--data", str(data_root), "--limit", "1",
                     "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and "nope" in err[-1]


def closed_port() -> str:
    """A local URL nothing listens on: connecting is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_hub_model_that_cannot_be_had_is_one_line(data_root, tmp_path, capsys, monkeypatch):
    """An unreachable hub, or HF_HUB_OFFLINE=1, and a model not in the hub cache: one line at
    once, not half a minute of the hub client's retries, and no run folder."""
    import time

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub := closed_port())
    args = ["run", "--judge", "hf:someorg/some-reward-model", "--data", str(data_root), "--limit", "1",
            "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--no-progress"]
    started = time.monotonic()
    assert cli.main(args) == cli.EXIT_FATAL
    err = capsys.readouterr().err.strip().splitlines()
    assert time.monotonic() - started < 10 and not (tmp_path / "o").exists()
    assert len(err) == 1 and err[0].startswith(f"rmb-judge: hf:someorg/some-reward-model: cannot reach {hub}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(args) == cli.EXIT_FATAL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HF_HUB_OFFLINE=1 forbids downloading it" in err[0]


def test_a_cached_hub_model_loads_from_the_cache_when_the_hub_cannot_be_reached(model_dir, data_root, tmp_path):
    """The hub client would retry for half a minute before falling back to its cache: with
    the hub unreachable, a cached model is loaded from the cache at once, and says so."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--someorg--tiny-rm"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": closed_port()}
    done = subprocess.run([sys.executable, "-m", "rmb_judge.cli", "run", "--judge", "hf:someorg/tiny-rm", "--data",
                           str(data_root), "--limit", "1", "--scenarios", "*Chat/Discussion", "--out",
                           str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cannot be reached: hf:someorg/tiny-rm is loaded from the hub cache" in done.stderr
    assert "Retrying" not in done.stderr and json.loads((tmp_path / "o" / "summary.json").read_text())["complete"]


def test_totals_add_up_over_chunks_and_truncation_is_shown(model_dir, data_root, tmp_path, capsys):
    """More answers than one scoring chunk (256): the totals are the whole run's, not the last
    chunk's; truncated inputs are counted live and in the summary, with a warning."""
    from rmb_judge.scalar import CHUNK
    assert cli.main(["run", "--judge", f"hf:{model_dir}", "--data", str(data_root), "--limit", "2",
                     "--sets", "bon", "--max-length", "64", "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "c"), "--no-progress", "--progress-interval", "0.05"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    usage = summary["usage"]
    assert usage["unique_answers"] > CHUNK
    assert usage["answers_scored"] == usage["unique_answers"]
    with sqlite3.connect(tmp_path / "c" / "rmb-judge.sqlite3") as db:
        tokens, truncated = db.execute("SELECT SUM(tokens), SUM(truncated) FROM rewards").fetchone()
    assert usage["input_tokens"] == tokens and usage["truncated_inputs"] == truncated > 0
    assert any("longer than --max-length 64 tokens" in w for w in summary["warnings"])
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "it/s]" not in err  # no third-party bars in our view
    last = [l for l in err.splitlines() if "answers scored" in l][-1]
    assert f"answers scored {usage['unique_answers']}/{usage['unique_answers']}" in last
    assert f"inputs truncated {truncated}" in last


def test_generative_flags_are_refused_for_hf(model_dir, data_root, tmp_path, capsys):
    code = cli.main(["run", "--judge", f"hf:{model_dir}", "--data", str(data_root), "--samples", "3",
                     "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    assert code == 2 and "--samples: not used by a local reward model" in capsys.readouterr().err


def test_hf_precision_scores_a_sample_and_reruns_it_offline(model_dir, data_root, tmp_path, capsys):
    args = run_args(model_dir, data_root, tmp_path, "--precision", "0.3")
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    selected = RMB.load(data_root, records.Selection(scenarios=SCENARIOS)).records
    assert summary["stopped_reason"] == "precision" and summary["precision"]["reached"]
    assert summary["data"]["records_scored"] < len(selected) == summary["precision"]["population"]
    assert 0 < summary["usage"]["answers_scored"] < len({(r.uid, a.text) for r in selected for a in (r.chosen[0], *r.rejected)})
    assert cli.main([*args, "--offline"]) == 0
    again = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert again["usage"]["answers_scored"] == 0 and again["scores"] == summary["scores"]
