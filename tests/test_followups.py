"""Follow-up turns (a template's `follow_up`, JudgeBench's arena_hard): asked once, only after a
reply that states no verdict label, as an ordinary cached request whose messages hold that
reply, in every way a run gets its answers: live, in a second batch round, across --precision
rounds, from the cache (--offline: a missing one is a miss), and counted by `estimate`. Ctrl-C
with follow-ups in flight, and two processes on one cache, pay for nothing twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import zlib

import pytest
from fake_api import FAKE_KEY, UNDECIDED, Fault, Reply, hash_judge, prompt_text, slow_to_conclude
from test_trust import CLI, ROOT, Server, wait_for

from rmb_judge import cli

FOLLOW_UP = "continue your judgment and finish by outputting a final verdict label"


def args_for(judgebench_data, tmp_path, name="out", *extra, limit="2"):
    return ["run", "--benchmark", "judgebench", "--judge", "openai:gpt-4o-mini", "--data", str(judgebench_data),
            "--limit", limit, "--out", str(tmp_path / name), "--cache", str(tmp_path / "cache"), "--no-progress",
            *extra]


def summary(tmp_path, name="out"):
    return json.loads((tmp_path / name / "summary.json").read_text())


def kinds(calls):
    """The first-turn calls and the follow-up calls."""
    return [c for c in calls if len(c.body["messages"]) == 2], [c for c in calls if len(c.body["messages"]) == 4]


@pytest.fixture
def api(fake_api_thread, monkeypatch):
    for variable, value in fake_api_thread.env().items():
        monkeypatch.setenv(variable, value)
    fake_api_thread.responder = slow_to_conclude
    return fake_api_thread


def test_live_offline_and_estimate(api, judgebench_data, tmp_path, capsys):
    """Each reply without a label is followed by one follow-up request holding it; the run scores
    as a judge that never needed one; estimate says "up to N more" until the cache knows; a
    rerun and an --offline run send nothing."""
    run = args_for(judgebench_data, tmp_path)
    assert cli.main(["estimate", *run[1:run.index("--out")], "--cache", str(tmp_path / "cache"), "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["follow_ups"] == before["requests"] > 50 and "up to" in before["follow_ups_note"]
    assert cli.main(run) == 0
    firsts, follow_ups = kinds(api.calls("openai"))
    undecided = [c for c in firsts if "[[" not in slow_to_conclude(c.body, "openai").text]
    assert len(firsts) == before["requests"] and len(follow_ups) == len(undecided) > 5
    for call in follow_ups:  # the first request, its reply, then the follow-up text
        first = next(c for c in undecided if c.body["messages"] == call.body["messages"][:2])
        assert api.requests.index(first) < api.requests.index(call)
        assert call.body["messages"][2:] == [{"role": "assistant", "content": UNDECIDED},
                                             {"role": "user", "content": FOLLOW_UP}]
    assert summary(tmp_path)["usage"]["requests"] == len(firsts) + len(follow_ups)
    # the same verdicts as a judge that states them at once (hash_judge), on a cache of its own
    api.responder = hash_judge
    plain = args_for(judgebench_data, tmp_path, "plain")
    plain[plain.index("--cache") + 1] = str(tmp_path / "plain-cache")
    assert cli.main(plain) == 0
    assert summary(tmp_path)["scores"] == summary(tmp_path, "plain")["scores"]
    api.responder = slow_to_conclude
    sent = len(api.calls())
    capsys.readouterr()
    assert cli.main(["estimate", *run[1:run.index("--out")], "--cache", str(tmp_path / "cache"), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["requests"] == 0 and after["follow_ups"] == 0
    assert after["cached"] == after["total_requests"] == len(firsts) + len(follow_ups)
    assert cli.main(run) == 0 and cli.main([*run, "--offline"]) == 0 and len(api.calls()) == sent
    assert summary(tmp_path)["scores"] == summary(tmp_path, "plain")["scores"]


def test_a_missing_follow_up_is_an_offline_miss(api, judgebench_data, tmp_path, capsys):
    """Follow-ups that failed (retries exhausted) leave the run incomplete, their first replies
    cached; --offline then names the follow-ups missing and sends nothing; a live rerun sends
    only them."""
    api.responder = lambda body, wire: (Fault.http(500) if UNDECIDED in prompt_text(body, wire)
                                        else slow_to_conclude(body, wire))
    run = args_for(judgebench_data, tmp_path, "out", "--max-retries", "0")
    assert cli.main(run) == cli.EXIT_INCOMPLETE
    firsts, follow_ups = kinds(api.calls("openai"))
    assert follow_ups and summary(tmp_path)["complete"] is False
    capsys.readouterr()
    assert cli.main([*run, "--offline"]) == cli.EXIT_OFFLINE_MISS
    err = capsys.readouterr().err
    assert f"--offline: {len(follow_ups)} of {len(firsts) + len(follow_ups)} requests are not in the cache" in err
    assert len(api.calls()) == len(firsts) + len(follow_ups)
    api.responder = slow_to_conclude
    assert cli.main(run) == 0
    again = api.calls("openai")[len(firsts) + len(follow_ups):]
    assert [c.body for c in again] and all(len(c.body["messages"]) == 4 for c in again)
    assert sorted(json.dumps(c.body) for c in again) == sorted(json.dumps(c.body) for c in follow_ups)


def test_two_labels_are_no_verdict_and_no_label_twice_is_unparsed(api, judgebench_data, tmp_path):
    """A reply holding two different labels gets no verdict and no follow-up; a judge that states
    none even when asked to continue is asked exactly twice per presentation, and the run is
    suspect (its verdicts unread)."""
    api.responder = lambda body, wire: Reply("[[A>B]] at first, but on reflection [[B>A]]")
    assert cli.main(args_for(judgebench_data, tmp_path, "two", "--max-unparsed", "1", limit="1")) == 0
    firsts, follow_ups = kinds(api.calls("openai"))
    assert not follow_ups and summary(tmp_path, "two")["usage"]["unparsed"] == len(firsts) == 34
    assert summary(tmp_path, "two")["scores"]["overall"] == 0.0
    api.requests.clear()
    api.responder = lambda body, wire: Reply(UNDECIDED if UNDECIDED not in prompt_text(body, wire) else "Hmm.")
    other = args_for(judgebench_data, tmp_path, "none", limit="1")
    other[other.index("--cache") + 1] = str(tmp_path / "cache2")
    assert cli.main(other) == cli.EXIT_SUSPECT
    firsts, follow_ups = kinds(api.calls("openai"))
    assert len(firsts) == len(follow_ups) == len(api.calls("openai")) // 2 > 0


def test_a_batch_run_asks_the_follow_ups_in_a_second_batch(api, judgebench_data, tmp_path):
    api.batch_polls = 0
    run = args_for(judgebench_data, tmp_path, "out", "--batch", "--poll-interval", "0.05", limit="1")
    assert cli.main(run) == 0
    assert api.batches_created == 2 and not api.calls()  # every answer through a batch
    first, second = api.batches.values()
    assert all(len(body["messages"]) == 2 for body in first.bodies.values())
    assert all(len(body["messages"]) == 4 for body in second.bodies.values()) and second.bodies
    live = args_for(judgebench_data, tmp_path, "live", limit="1")
    live[live.index("--cache") + 1] = str(tmp_path / "cache2")
    assert cli.main(live) == 0
    assert summary(tmp_path)["scores"] == summary(tmp_path, "live")["scores"]
    assert len(api.calls()) == api.batch_items()


def test_precision_rounds_ask_their_follow_ups_and_replay_offline(api, judgebench_data, tmp_path):
    run = args_for(judgebench_data, tmp_path, "out", "--precision", "0.2", limit="3")
    assert cli.main(run) == 0
    found = summary(tmp_path)
    assert found["precision"]["rounds"] >= 1 and found["complete"] is True
    firsts, follow_ups = kinds(api.calls("openai"))
    assert follow_ups and len({json.dumps(c.body) for c in api.calls()}) == len(api.calls())
    sent = len(api.calls())
    assert cli.main([*run, "--offline"]) == 0 and len(api.calls()) == sent
    again = summary(tmp_path)
    assert again["scores"] == found["scores"] and again["precision"] == found["precision"]


def turns(cache) -> list[int]:
    """How many messages each cached request holds (4: a follow-up turn)."""
    try:
        with sqlite3.connect(f"file:{cache / 'rmb-judge.sqlite3'}?mode=ro", uri=True, timeout=1) as db:
            rows = db.execute("SELECT request FROM responses").fetchall()
    except sqlite3.Error:  # not made yet, or busy
        return []
    return [len(json.loads(zlib.decompress(r))["messages"]) for (r,) in rows]


def test_ctrl_c_with_follow_ups_in_flight_and_two_processes_pay_once(judgebench_data, tmp_path):
    """A run interrupted while follow-ups are in flight keeps them; its resumption, and two
    processes sharing its cache, send no request twice and end with one run's scores."""
    server = Server(tmp_path, "--judge", "slow", "--latency", "0.5")
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY}
    try:
        args = [*CLI, *args_for(judgebench_data, tmp_path, "out", "--concurrency", "16", limit="3"),
                "--base-url", server.url]
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # interrupted once some follow-ups are answered, while others are in flight
        assert wait_for(lambda: 4 in turns(tmp_path / "cache"), proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == cli.EXIT_INTERRUPTED, err
        assert summary(tmp_path)["complete"] is False
        assert len(turns(tmp_path / "cache")) == len(server.received())  # every answer sent is kept
        both = [subprocess.Popen([*args[:args.index("--out") + 1], str(tmp_path / f"p{i}"),
                                  *args[args.index("--out") + 2:]], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for i in range(2)]
        for proc in both:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        received = server.received()
    finally:
        server.stop()
    assert len(received) == len(set(received))  # nothing sent twice
    assert summary(tmp_path, "p0")["scores"] == summary(tmp_path, "p1")["scores"]
    assert summary(tmp_path, "p0")["complete"] and summary(tmp_path, "p1")["complete"]
