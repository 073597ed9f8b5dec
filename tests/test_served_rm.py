"""`vllm-rm:` judges end to end through the CLI, against the fake server speaking vLLM's
pooling API: rewards are what the server returned for the tokens vLLM would score, verdicts
are recomputed here from the raw data files, requests spread over replicas, a replica may
die mid-run, and reruns come from the cache."""

import json
import sqlite3
from collections import defaultdict
from statistics import mean

import aiohttp
import pytest
from conftest import DATA, RMB
from fake_api import FakeAPI, Fault, ServedRewardModel, fake_reward
from tiny_models import build_tokenizer

from rmb_judge import cli, records
from rmb_judge.served_rm import PROBES

SCENARIOS = ["*Chat/Discussion", "*Harmlessness/multi"]
NAME = "tiny-rm"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """The model's folder as the server's `root` names it: the client loads its tokenizer."""
    directory = tmp_path_factory.mktemp("served-rm")
    build_tokenizer().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def serve(tokenizer_dir, tokenizer, **kw) -> FakeAPI:
    api = FakeAPI()
    api.served = ServedRewardModel(NAME, str(tokenizer_dir), tokenizer=tokenizer, **kw)
    return api


def selected(data_root, **selection):
    return RMB.load(data_root, records.Selection(**selection)).records


def expected(records_, tokenizer, root, max_length=4096):
    """Each answer's reward as the fake server computes it for the tokens vLLM scores (the
    chat template as text, tokenized without special tokens, cut from the left), and each
    section's score as RMB defines it for scalar models (strictly higher reward wins)."""
    def reward(record, answer):
        conv = [{"role": m.role, "content": m.content} for m in record.conversation]
        text = tokenizer.apply_chat_template(conv + [{"role": "assistant", "content": answer.text}], tokenize=False)
        return fake_reward(root, tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:])

    sections = defaultdict(list)
    rewards = {}
    for r in records_:
        best = rewards[r, r.chosen[0].text] = reward(r, r.chosen[0])
        for o in r.rejected:
            rewards[r, o.text] = reward(r, o)
        sections[r.section].append(float(all(best > rewards[r, o.text] for o in r.rejected)))
    return {k: mean(v) for k, v in sections.items()}, rewards


def probes(api):
    """The preflight's /pooling calls: every probe input in one request (a list of inputs)."""
    return [c for c in api.pooling_calls() if c.body and isinstance(c.body["input"][0], list)]


def scored(api):
    """The /pooling calls that scored an answer (one input each)."""
    return [c for c in api.pooling_calls() if c not in probes(api)]


def run(tmp_path, urls, *extra, limit=3, out="out"):
    args = ["run", "--judge", f"vllm-rm:{NAME}", "--data", str(DATA), "--limit", str(limit),
            "--out", str(tmp_path / out), "--cache", str(tmp_path / "cache"), "--no-progress"]
    for url in urls:
        args += ["--base-url", url]
    for s in SCENARIOS:
        args += ["--scenarios", s]
    code = cli.main([*args, *extra])
    summary = tmp_path / out / "summary.json"
    return code, json.loads(summary.read_text()) if summary.exists() else None


@pytest.fixture(autouse=True)
def _data(data_root):
    """(the data must be there: data_root says where it is missing)"""


def check_scores(summary, scores, tmp_path, out, rewards, records_):
    assert summary["complete"] and summary["scores"].keys() >= scores.keys()
    for key, value in scores.items():
        assert summary["scores"][key] == pytest.approx(value, abs=1e-12), key
    lines = [json.loads(l) for l in (tmp_path / out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == sum(len(r.rejected) for r in records_)
    wanted = {rewards[r, r.chosen[0].text] for r in records_} | {rewards[r, o.text] for r in records_ for o in r.rejected}
    assert {x for l in lines for x in l["raw"]} == wanted  # the server's rewards, exactly


def start_run(tmp_path, url, out, *extra):
    """`rmb-judge run` in its own process (as a second run, or one to interrupt)."""
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "rmb_judge.cli", "run", "--judge", f"vllm-rm:{NAME}", "--data", str(DATA),
            "--limit", "3", "--out", str(tmp_path / out), "--cache", str(tmp_path / "cache"), "--base-url", url,
            "--no-progress", *extra]
    for s in SCENARIOS:
        args += ["--scenarios", s]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})


def estimate(tmp_path, urls, capsys):
    args = ["estimate", "--judge", f"vllm-rm:{NAME}", "--data", str(DATA), "--limit", "3",
            "--cache", str(tmp_path / "cache"), "--json", *(f"--base-url={u}" for u in urls)]
    for s in SCENARIOS:
        args += ["--scenarios", s]
    capsys.readouterr()
    assert cli.main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_scores_exactly_spread_over_replicas_and_reruns_from_cache(tokenizer_dir, tokenizer, tmp_path, capsys):
    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    scores, rewards = expected(chosen, tokenizer, str(tokenizer_dir))
    unique = len(set(rewards.values()))
    a, b = serve(tokenizer_dir, tokenizer), serve(tokenizer_dir, tokenizer)
    with a.run_in_thread(), b.run_in_thread():
        before = estimate(tmp_path, [a.url, b.url], capsys)
        assert before["requests"] == before["total_requests"] >= unique and before["cached"] == 0
        code, summary = run(tmp_path, [a.url, f"{b.url}/v1"])
        assert code == 0
        check_scores(summary, scores, tmp_path, "out", rewards, chosen)
        sent = [len(scored(a)), len(scored(b))]
        assert sum(sent) == summary["usage"]["answers_scored"] == summary["usage"]["unique_answers"]
        assert sum(sent) >= unique and abs(sent[0] - sent[1]) <= 1  # in turn, each answer once
        assert len(probes(a)) == len(probes(b)) == 2  # each replica probed before scoring
        calls = [len(a.pooling_calls()), len(b.pooling_calls())]
        for call in scored(a) + scored(b):
            assert call.body["use_activation"] is False and call.body["add_special_tokens"] is False
            assert call.body["model"] == NAME and all(isinstance(t, int) for t in call.body["input"])
        with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == sum(sent)
            assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        # a rerun asks the servers what they serve, and scores nothing
        code, again = run(tmp_path, [a.url, b.url], out="again")
        assert code == 0 and again["scores"] == summary["scores"] and again["usage"]["answers_scored"] == 0
        assert [len(a.pooling_calls()), len(b.pooling_calls())] == calls
        # ... and a served model's run resumes in its folder on other replicas (rewards follow
        # the served model's identity, and replicas are probed to agree)
        assert run(tmp_path, [b.url])[0] == 0
        after = estimate(tmp_path, [a.url, b.url], capsys)
        assert after["requests"] == 0 and after["cached"] == before["total_requests"] == sum(sent)
    # the servers are gone: --offline still has every reward
    code, offline = run(tmp_path, [], "--offline", out="offline")
    assert code == 0 and offline["scores"] == summary["scores"]
    # ... of inputs cut to the server's length, not to another one
    code, _ = run(tmp_path, [], "--offline", "--max-length", "64", out="shorter")
    err = capsys.readouterr().err
    assert code == 4 and "only for root" in err and "max_length 4096" in err and "not for --max-length 64" in err


def test_survives_a_replica_dying_mid_run(tokenizer_dir, tokenizer, tmp_path, capsys):
    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    scores, rewards = expected(chosen, tokenizer, str(tokenizer_dir))
    a, b = serve(tokenizer_dir, tokenizer, die_after=2 + 5), serve(tokenizer_dir, tokenizer)  # (2: the probe)
    with a.run_in_thread(), b.run_in_thread():
        code, summary = run(tmp_path, [a.url, b.url], "--concurrency", "4", "--progress-interval", "0.05")
        assert code == 0
        check_scores(summary, scores, tmp_path, "out", rewards, chosen)
        assert len(scored(b)) >= summary["usage"]["unique_answers"] - 5
        assert 5 <= len(scored(a)) <= 5 + 4  # the calls in flight when it died were dropped
    # the progress lines count answers, and how many each replica answered
    unique = summary["usage"]["unique_answers"]
    last = [l for l in capsys.readouterr().err.splitlines() if "answers scored" in l][-1]
    assert f"answers scored {unique}/{unique}" in last
    assert f"answered per replica 5, {unique - 5}" in last


def test_a_hung_replica_is_passed_over(tokenizer_dir, tokenizer, tmp_path):
    """A replica that accepts requests and never answers: after a few timeouts in a row its
    requests go to the other one, and the run completes with exact scores."""
    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    scores, rewards = expected(chosen, tokenizer, str(tokenizer_dir))
    a, b = serve(tokenizer_dir, tokenizer), serve(tokenizer_dir, tokenizer)
    a.schedule(None, None, *[Fault.hang(60)] * 200)  # (after the probe)
    with a.run_in_thread(), b.run_in_thread():
        code, summary = run(tmp_path, [a.url, b.url], "--concurrency", "4", "--timeout", "1", "--max-retries", "2")
        assert code == 0
        check_scores(summary, scores, tmp_path, "out", rewards, chosen)
        # the 4 in flight when it hung and the 3 in a row that pass it over, not one per answer
        assert len(scored(a)) <= 4 + 3 < summary["usage"]["unique_answers"]


def test_errors_are_retried_like_other_providers_and_inputs_cut_like_hf(tokenizer_dir, tokenizer, tmp_path, capsys):
    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    scores, rewards = expected(chosen, tokenizer, str(tokenizer_dir), max_length=64)
    api = serve(tokenizer_dir, tokenizer)
    api.schedule(None, None, Fault.http(429, retry_after_ms=10), Fault.http(500), Fault.http(503),  # (None: the probe)
                 Fault.garbage(), Fault.invalid_json(), Fault.empty(), Fault.reset())
    with api.run_in_thread():
        code, summary = run(tmp_path, [api.url], "--max-length", "64")
        assert code == 0
        check_scores(summary, scores, tmp_path, "out", rewards, chosen)
        assert len(api.pooling_calls()) == 2 + summary["usage"]["unique_answers"] + 7
        assert max(len(c.body["input"]) for c in scored(api) if c.body) == 64
        assert summary["usage"]["truncated_inputs"] > 0


def test_reward_shapes():
    """vLLM's answer shapes: one value per input (classify), one per token (token_classify:
    the last token's); anything else is not a reward."""
    from rmb_judge.errors import RmbJudgeError
    from rmb_judge.retry import BrokenAnswer
    from rmb_judge.served_rm import reward_of

    assert reward_of({"data": [{"index": 0, "data": [-2.5]}]}) == -2.5
    assert reward_of({"data": [{"index": 0, "data": [[0.1], [0.2], [3.0]]}]}) == 3.0
    with pytest.raises(RmbJudgeError, match="4 numbers per input"):
        reward_of({"data": [{"index": 0, "data": [0.1, 0.2, 0.3, 0.4]}]})  # hidden states (task embed)
    for broken in ({"data": []}, {"object": "error"}, [], {"data": [{"index": 0, "data": [None]}]},
                   {"data": [{"index": 0, "data": [True]}]}):
        with pytest.raises(BrokenAnswer):
            reward_of(broken)
    # one input, one entry, with index 0: anything else is another input's answer, or a mix-up
    for mixed in ({"data": [{"index": 1, "data": [9.0]}, {"index": 0, "data": [-2.5]}]},
                  {"data": [{"index": 0, "data": [-2.5]}, {"index": 0, "data": [9.0]}]},
                  {"data": [{"index": 1, "data": [-2.5]}]}, {"data": [{"data": [-2.5]}]},
                  {"data": [{"index": True, "data": [-2.5]}]}):
        with pytest.raises(BrokenAnswer, match="entr|index"):
            reward_of(mixed)


def test_an_answer_with_stray_entries_is_retried_and_never_scored(tokenizer_dir, tokenizer, tmp_path, capsys):
    """An answer holding more than the one entry asked for (a proxy mixing up answers) is
    broken: retried, and never read as the reward (its first entry is another input's)."""
    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    scores, rewards = expected(chosen, tokenizer, str(tokenizer_dir))
    api = serve(tokenizer_dir, tokenizer)
    api.served.decoys = {3, 4, 5}
    with api.run_in_thread():
        code, summary = run(tmp_path, [api.url])
        assert code == 0
        check_scores(summary, scores, tmp_path, "out", rewards, chosen)
        assert len(api.pooling_calls()) == len(scored(api)) + len(probes(api))
        assert len(scored(api)) == summary["usage"]["unique_answers"] + 3
        # a server that always mixes them up: no score comes out of it with exit 0
        api.served.decoys = set(range(len(api.pooling_calls()) + 3, 10_000))
        code, summary = run(tmp_path, [api.url], "--max-retries", "1", "--limit", "4", out="mixed")
    assert code not in (0, 6)
    assert summary is None or summary["complete"] is False


def test_server_side_rendering_of_messages_gives_the_same_reward(tokenizer_dir, tokenizer, data_root):
    """The choice made: token ids rendered here. vLLM's own rendering of the same messages
    (chat template as text, tokenized without special tokens) scores the same input."""
    import asyncio

    from rmb_judge.local_rm import ScoreItem
    from rmb_judge.providers.base import ChatRequest
    from rmb_judge.served_rm import ServedTokenizer, VllmServer

    chosen = selected(data_root, limit=2, scenarios=SCENARIOS)
    client = ServedTokenizer(f"vllm-rm:{NAME}", tokenizer, 4096)

    async def compare(url):
        server = VllmServer(NAME, url, client.tokens)
        async with aiohttp.ClientSession() as session:
            for r in chosen:
                for answer in (r.chosen[0], *r.rejected):
                    conversation = tuple((m.role, m.content) for m in r.conversation)
                    messages = (*conversation, ("assistant", answer.text))
                    ours = await server.complete(ChatRequest(NAME, messages, max_tokens=0), 10)
                    body = {"model": NAME, "messages": [{"role": x, "content": y} for x, y in messages],
                            "use_activation": False}
                    async with session.post(f"{url}/pooling", json=body) as reply:
                        theirs = (await reply.json())["data"][0]["data"][0]
                    assert ours.extra["reward"] == theirs
                    assert ours.text == repr(theirs)
                    text = client.render(ScoreItem(conversation, answer.text))
                    assert ours.input_tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"])
        await server.aclose()

    api = serve(tokenizer_dir, tokenizer)
    with api.run_in_thread():
        asyncio.run(compare(api.url))


def test_other_weights_under_the_same_name_share_no_rewards(tokenizer_dir, tokenizer, tmp_path, capsys):
    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    a = serve(tokenizer_dir, tokenizer)
    with a.run_in_thread():
        assert run(tmp_path, [a.url])[0] == 0
    # the same name, served from other weights (here: the same tokenizer files under another path)
    other = tmp_path / "other-weights"
    tokenizer.save_pretrained(other)
    scores, rewards = expected(chosen, tokenizer, str(other))
    b = serve(other, tokenizer)
    with b.run_in_thread():
        code, summary = run(tmp_path, [b.url], out="other")
        assert code == 0 and len(scored(b)) == summary["usage"]["unique_answers"]
        check_scores(summary, scores, tmp_path, "other", rewards, chosen)
    # both are in the cache now: offline cannot tell which one is meant
    assert run(tmp_path, [], "--offline", out="which")[0] == 2
    assert "from 2 served models" in capsys.readouterr().err


def test_setup_errors_are_one_line(tokenizer_dir, tokenizer, tmp_path, capsys):
    a, b = serve(tokenizer_dir, tokenizer), serve(tokenizer_dir, tokenizer)
    b.served.max_model_len = 2048  # another model under the same name
    with a.run_in_thread(), b.run_in_thread():
        assert run(tmp_path, [a.url, b.url])[0] == 2
        assert "serve different models under one name" in capsys.readouterr().err
        a.served.name = "other-rm"
        assert run(tmp_path, [a.url])[0] == 3  # as an unknown model is for API judges
        assert f"serves other-rm, not {NAME}" in capsys.readouterr().err
        assert run(tmp_path, [b.url], "--max-length", "4096")[0] == 2
        assert "takes at most 2048 tokens" in capsys.readouterr().err
        assert run(tmp_path, [b.url], "--samples", "3")[0] == 2
        assert "--samples: not used by a served reward model" in capsys.readouterr().err
        b.required_key = "sk-vllm-secret-123456"
        code, _ = run(tmp_path, [b.url])
        err = capsys.readouterr().err
        assert code == 3 and "401" in err and "VLLM_API_KEY" in err and len(err.strip().splitlines()) == 1
        assert "sk-vllm-secret" not in err
        assert a.pooling_calls() == b.pooling_calls() == []
    assert run(tmp_path, [])[0] == 2
    assert "--base-url" in capsys.readouterr().err
    assert run(tmp_path, [a.url])[0] == 3  # the server is gone
    assert f"cannot ask {a.url} what it serves: connection refused" in capsys.readouterr().err


def test_a_server_answering_byte_by_byte_stops_the_run_within_the_prepare_limit(tokenizer_dir, tokenizer, tmp_path,
                                                                                capsys):
    """Every byte of GET /v1/models comes well within a read timeout, the whole answer long
    after: the prepare limit (30 s, or --timeout when shorter) holds for the whole answer."""
    import time

    api = serve(tokenizer_dir, tokenizer)
    api.served.models_trickle = 8.0
    with api.run_in_thread():
        started = time.monotonic()
        code, _ = run(tmp_path, [api.url], "--timeout", "1")
        took = time.monotonic() - started
    assert code == 3 and took < 6
    assert f"cannot ask {api.url} what it serves: no whole answer within 1 s" in capsys.readouterr().err


def test_processes_sharing_a_cache_share_the_work(tokenizer_dir, tokenizer, tmp_path):
    """Two runs at once on one cache (how to use more client cores): each answer is scored
    once, by one of them, and both come out with every reward."""
    import time

    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    scores, rewards = expected(chosen, tokenizer, str(tokenizer_dir))
    api = serve(tokenizer_dir, tokenizer)
    api.latency = 1.0  # 2 answers a second: the second run starts well before the first ends
    with api.run_in_thread():
        first = start_run(tmp_path, api.url, "one", "--concurrency", "2")
        while not scored(api):  # the first is scoring: start the second
            time.sleep(0.05)
        second = start_run(tmp_path, api.url, "two", "--concurrency", "2")
        assert first.wait(120) == 0 and second.wait(120) == 0, first.stderr.read() + second.stderr.read()
    summaries = [json.loads((tmp_path / out / "summary.json").read_text()) for out in ("one", "two")]
    for out, summary in zip(("one", "two"), summaries):
        check_scores(summary, scores, tmp_path, out, rewards, chosen)
    counts = [s["usage"]["answers_scored"] for s in summaries]
    assert len(scored(api)) == sum(counts) == summaries[0]["usage"]["unique_answers"]


def test_a_replica_applying_a_sigmoid_is_refused_before_anything_is_scored(tokenizer_dir, tokenizer, tmp_path, capsys):
    """A server that ignores use_activation (vLLM before 0.12) sends probabilities: among
    good replicas or alone, the preflight probe finds it and nothing is scored."""
    good, old = serve(tokenizer_dir, tokenizer), serve(tokenizer_dir, tokenizer, old_vllm=True)
    with good.run_in_thread(), old.run_in_thread():
        for urls in ([good.url, old.url], [old.url]):
            code, summary = run(tmp_path, urls)
            err = capsys.readouterr().err
            assert code == 3 and summary is None
            assert f"{old.url} applies a sigmoid" in err and len(err.strip().splitlines()) == 2
        assert scored(good) == scored(old) == [] and probes(old)
        for call in probes(good):  # every replica, the same inputs: raw, then with the activation
            assert call.body["input"] == probes(old)[0].body["input"] and len(call.body["input"]) == len(PROBES)
        assert [c.body["use_activation"] for c in probes(good)] == [False, True]
    with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == 0


def test_replicas_giving_other_rewards_are_refused_and_rewards_say_where_they_came_from(
        tokenizer_dir, tokenizer, tmp_path, capsys):
    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    a, b = serve(tokenizer_dir, tokenizer), serve(tokenizer_dir, tokenizer)
    other = serve(tokenizer_dir, tokenizer)
    other.served.weights = "another checkpoint under the same path"
    with a.run_in_thread(), b.run_in_thread(), other.run_in_thread():
        code, _ = run(tmp_path, [a.url, other.url])
        err = capsys.readouterr().err
        assert code == 2 and "give different rewards for the same input" in err
        assert a.url in err and other.url in err and scored(a) == scored(other) == []
        code, summary = run(tmp_path, [a.url, b.url])
        assert code == 0
        # each cached reward names the replica that gave it
        with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
            rows = dict(db.execute("SELECT endpoint, COUNT(*) FROM rewards WHERE model = ? GROUP BY endpoint",
                                   (NAME,)).fetchall())
        assert rows == {a.url: len(scored(a)), b.url: len(scored(b))}
        assert len(scored(a)) + len(scored(b)) == summary["usage"]["unique_answers"]
        # a later run with answers to score, against a server unlike those that filled the
        # cache, is refused until the rewards of each of them are removed
        pruned = set()
        for _ in (a, b):
            code, _ = run(tmp_path, [other.url], limit=4, out="later")
            err = capsys.readouterr().err
            assert code == 2 and "unlike those cached for this model from" in err, err
            named = err.split("`rmb-judge cache prune --endpoint ")[1].split()[0]
            assert named in {a.url, b.url} - pruned and scored(other) == []
            assert cli.main(["cache", "prune", "--endpoint", named, "--cache", str(tmp_path / "cache")]) == 0
            pruned.add(named)
        code, summary = run(tmp_path, [other.url], limit=4, out="later")
        assert code == 0 and len(scored(other)) == summary["usage"]["unique_answers"]
        chosen = selected(DATA, limit=4, scenarios=SCENARIOS)
        scores, rewards = expected(chosen, tokenizer, other.served.weights)
        check_scores(summary, scores, tmp_path, "later", rewards, chosen)


def test_a_cache_filled_by_a_sigmoid_server_before_servers_were_probed_is_named(tokenizer_dir, tokenizer, tmp_path):
    import math

    api = serve(tokenizer_dir, tokenizer)
    with api.run_in_thread():
        assert run(tmp_path, [api.url], "--sets", "bon", limit=10)[0] == 0
        with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:  # as an earlier version left it
            rows = db.execute("SELECT model_key, text_sha256, reward FROM rewards").fetchall()
            db.executemany("UPDATE rewards SET endpoint = NULL, reward = ? WHERE model_key = ? AND text_sha256 = ?",
                           [(0.5 * (1 + math.tanh(r / 2)), k, d) for k, d, r in rows])
        code, summary = run(tmp_path, [api.url], "--sets", "bon", limit=10, out="again")
    assert code in (0, 6) and summary["usage"]["answers_scored"] == 0
    assert summary["usage"]["unique_answers"] >= 50
    assert any("between 0 and 1" in w for w in summary["warnings"])


def test_the_same_inputs_as_hf(tmp_path):
    """A model folder scored by hf: and served by vLLM: the same rendered texts are scored
    (the rewards of both are keyed on them), each under its own identity."""
    from tiny_models import build_tiny_reward_model

    model = build_tiny_reward_model(tmp_path / "model", seed=1)
    args = ["--data", str(DATA), "--limit", "2", "--scenarios", SCENARIOS[0], "--cache", str(tmp_path / "cache"),
            "--no-progress"]
    assert cli.main(["run", "--judge", f"hf:{model}", "--out", str(tmp_path / "hf"), *args]) == 0
    api = FakeAPI()
    api.served = ServedRewardModel(NAME, str(model))
    with api.run_in_thread():
        assert cli.main(["run", "--judge", f"vllm-rm:{NAME}", "--base-url", api.url, "--out", str(tmp_path / "v"),
                         *args]) == 0
    with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
        rows = db.execute("SELECT model, model_key, text_sha256 FROM rewards").fetchall()
    by_judge = defaultdict(set)
    for judge, key, digest in rows:
        by_judge[judge, key].add(digest)
    assert len(by_judge) == 2 and len({frozenset(d) for d in by_judge.values()}) == 1
    # both labelled by model, as answers are: `cache prune --model` finds each
    assert {judge for judge, _ in by_judge} == {str(model), NAME}
    left = len(rows)
    for name in (NAME, str(model)):
        assert cli.main(["cache", "prune", "--model", name, "--cache", str(tmp_path / "cache")]) == 0
        with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
            left, before = db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0], left
        assert left == before - len(rows) // 2


def test_ctrl_c_keeps_the_rewards_in_flight_and_the_rerun_scores_only_the_rest(tokenizer_dir, tokenizer, tmp_path):
    import signal
    import time

    chosen = selected(DATA, limit=3, scenarios=SCENARIOS)
    scores, rewards = expected(chosen, tokenizer, str(tokenizer_dir))
    api = serve(tokenizer_dir, tokenizer)
    api.latency = 0.5
    with api.run_in_thread():
        proc = start_run(tmp_path, api.url, "out", "--concurrency", "2")
        while len(scored(api)) < 5:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        partial = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert partial["complete"] is False and partial["stopped_reason"] == "interrupted"
        sent = len(scored(api))
        with sqlite3.connect(tmp_path / "cache" / "rmb-judge.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == sent  # those in flight too
        api.latency = 0.0
        code, summary = run(tmp_path, [api.url])
        assert code == 0
        check_scores(summary, scores, tmp_path, "out", rewards, chosen)
        assert len(scored(api)) == summary["usage"]["unique_answers"]  # none scored twice
        assert summary["usage"]["answers_scored"] == summary["usage"]["unique_answers"] - sent


def test_precision_scores_a_sample_and_a_finer_one_scores_each_answer_once(tokenizer_dir, tokenizer, tmp_path):
    with serve(tokenizer_dir, tokenizer).run_in_thread() as api:
        code, coarse = run(tmp_path, [api.url], "--precision", "0.3", limit=40, out="coarse")
        assert code == 0 and coarse["stopped_reason"] == "precision"
        assert coarse["data"]["records_scored"] < coarse["data"]["records"]
        code, fine = run(tmp_path, [api.url], "--precision", "0.15", limit=40, out="fine")
        assert code == 0 and fine["data"]["records_scored"] > coarse["data"]["records_scored"]
        inputs = [json.dumps(call.body["input"]) for call in scored(api)]
    assert len(inputs) == len(set(inputs)) == coarse["usage"]["answers_scored"] + fine["usage"]["answers_scored"]
