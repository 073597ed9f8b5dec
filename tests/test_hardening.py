"""Defects a hostile review of the trust work reproduced (each reproduced here against the
fake server), and the behaviour that replaced them: no payment twice across processes,
batches and pauses, no hang, no quiet exit 0 on a judge that says nothing."""

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import make_config
from fake_api import FAKE_KEY, FakeAPI, Fault, Reply
from test_trust import RUN_TO_INTERRUPT, Server, cli_args, env, run_cli, summary_of, wait_for

from rmb_judge import cache as cache_module
from rmb_judge import cli
from rmb_judge import engine as engine_module
from rmb_judge.cache import FILENAME, Cache
from rmb_judge.config import EngineConfig
from rmb_judge.engine import Engine, Job
from rmb_judge.providers.base import ChatRequest
from rmb_judge.providers.openai_provider import OpenAIProvider
from rmb_judge.session import run


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


PAIRWISE = ("--limit", "1", "--sets", "pairwise")
# as many pairwise requests (48) as PAIRWISE over all 46 pairwise files, from 4 files: quick to load
PAIRWISE_FEW_FILES = ("--limit", "12", "--sets", "pairwise", "--scenarios", "*Chat*", "--scenarios", "*Harmlessness/S1")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("share", ["--rejected-share", "--failing-share"])
def test_requests_failing_for_good_do_not_hold_two_processes_forever(share, data_root, tmp_path):
    """A request that fails for good gives up its claim: the other process sends it (and
    fails) instead of waiting for an answer that never comes."""
    server = Server(tmp_path, "--latency", "0.2", share, "0.3")
    try:
        procs = [subprocess.Popen(cli_args(data_root, tmp_path / f"out{i}", tmp_path / "cache", server.url,
                                           "--concurrency", "4", "--max-retries", "0", select=PAIRWISE_FEW_FILES),
                                  env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
        codes = [p.wait(150) for p in procs]
    finally:
        server.stop()
    assert all(code in (0, cli.EXIT_INCOMPLETE, cli.EXIT_SUSPECT) for code in codes)
    for i in range(2):
        summary = summary_of(tmp_path, f"out{i}")
        assert summary["data"]["comparisons_judged"] == summary["data"]["comparisons_expected"]
    with sqlite3.connect(tmp_path / "cache" / FILENAME) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


async def test_a_process_paused_past_its_claims_checks_them_again(tmp_path, monkeypatch):
    """Jobs claimed, then a pause longer than a claim lives (Ctrl-Z, a suspended laptop):
    another process answers them meanwhile, and the paused one sends none of them after."""
    monkeypatch.setattr(cache_module, "CLAIM_SECONDS", 0.5)
    monkeypatch.setattr(engine_module, "CLAIM_SECONDS", 0.5)
    async with FakeAPI() as api:
        jobs = [Job(f"k{i}", 0, ChatRequest("m", (("user", f"question {i}"),), 10)) for i in range(6)]
        paused = Engine(OpenAIProvider("m", base_url=api.openai_url, api_key=FAKE_KEY), Cache(tmp_path),
                        EngineConfig(concurrency=2))
        paused._queue.extend(jobs)
        await paused._take(jobs)  # claimed, then the process stops
        await asyncio.sleep(0.8)  # the claims lapse
        other = OpenAIProvider("m", base_url=api.openai_url, api_key=FAKE_KEY)
        await Engine(other, Cache(tmp_path), EngineConfig(concurrency=2)).run(jobs)
        sent = len(api.calls())
        await paused.send([])  # nothing new to queue: its ready jobs resume
        paused._queue.clear()
        async with asyncio.TaskGroup() as group:
            group.create_task(paused._worker())
        await paused.provider.aclose()
        await other.aclose()
        paused.close()
    assert sent == 6 and len(api.calls()) == 6


def test_a_live_run_collects_a_pending_batch_instead_of_paying_again(data_root, tmp_path, capsys):
    """... and does not announce (or, on a terminal, ask to confirm) the cost of sending them."""
    with FakeAPI(batch_seconds=3).run_in_thread() as api:
        args = ["--limit", "1", "--scenarios", "*Chat*", "--sets", "pairwise"]
        batch = subprocess.Popen(
            [sys.executable, "-m", "rmb_judge.cli", "run", "--judge", "openai:gpt-4o-mini", "--data", str(data_root),
             *args, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "cache"), "--no-progress",
             "--batch", "--poll-interval", "0.2", "--base-url", api.openai_url],
            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: api.batches_created == 1, batch)
        batch.send_signal(signal.SIGINT)  # the batch stays pending at the provider
        batch.wait(60)
        assert run_cli(tmp_path, data_root, "--poll-interval", "0.2", url=api.openai_url, select=args, out="live") == 0
        items = sum(len(b.bodies) for b in api.batches.values())
        assert api.calls() == [] and api.batches_created == 1  # the live run sent nothing
    assert summary_of(tmp_path, "live")["data"]["comparisons_judged"] == items
    err = capsys.readouterr().err
    assert f"{items} answers are in 1 batches submitted before" in err and "requests to send" not in err


def test_answers_collected_from_a_pending_batch_cost_the_batch_price(data_root, tmp_path):
    """A live run (or one with --max-cost) that collects an interrupted --batch run's batch
    counts what those answers cost: the batch price, as the --batch run would have (it was
    the full price, twice what was billed, in the summary and against --max-cost)."""
    args = ["--limit", "1", "--scenarios", "*Chat*", "--sets", "pairwise"]
    with FakeAPI(batch_seconds=3).run_in_thread() as api:
        batch = subprocess.Popen(
            [sys.executable, "-m", "rmb_judge.cli", "run", "--judge", "openai:gpt-4o-mini", "--data", str(data_root),
             *args, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "cache"), "--no-progress",
             "--batch", "--poll-interval", "0.2", "--base-url", api.openai_url],
            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: api.batches_created == 1, batch)
        batch.send_signal(signal.SIGINT)  # the batch stays pending at the provider
        batch.wait(60)
        assert run_cli(tmp_path, data_root, "--poll-interval", "0.2", url=api.openai_url, select=args, out="live") == 0
        assert api.calls() == []
        # the same answers, through a --batch run that ends, and live
        assert run_cli(tmp_path, data_root, "--batch", "--poll-interval", "0.2", url=api.openai_url, select=args,
                       out="whole", cache="other") == 0
        assert run_cli(tmp_path, data_root, url=api.openai_url, select=args, out="paid", cache="live") == 0
    collected, whole, live = (summary_of(tmp_path, n)["usage"]["results"]["cost_usd"] for n in ("live", "whole", "paid"))
    assert collected == pytest.approx(whole) and whole == pytest.approx(live / 2)


async def test_a_batch_created_during_a_cancel_is_found_not_paid_again(tmp_path):
    """The second Ctrl-C lands while the provider is creating a batch (it has it; our answer
    is on its way): the creation was recorded before it was asked for, so the next run finds
    the batch at the provider instead of creating (and paying for) another."""
    from rmb_judge.batch import BatchRunner

    async with FakeAPI() as api:
        api.fail_after_create(Fault.hang(5))
        provider = OpenAIProvider("gpt-4o-mini", base_url=api.openai_url, api_key=FAKE_KEY)
        cache = Cache(tmp_path)
        jobs = [Job(f"k{i}", 0, ChatRequest("gpt-4o-mini", (("user", f"q{i}"),), 10)) for i in range(3)]
        engine = Engine(provider, cache, EngineConfig())
        task = asyncio.ensure_future(BatchRunner(engine, 0.05).run(jobs))
        while not api.batches_created:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [intent] = cache.pending_batches("openai", "gpt-4o-mini", provider.endpoints[0])
        assert intent.creating and len(intent.items) == 3
        again = Engine(provider, cache, EngineConfig())
        await BatchRunner(again, 0.05).run(jobs)
        await provider.aclose()
    assert api.batches_created == 1 and api.batch_items() == 3
    assert all(again.outcomes[j.key, 0].response for j in jobs) and again.stats.requests == 3
    assert cache.pending_batches() == []


@pytest.mark.parametrize("flags", [("--max-tokens", "16"), ("--max-tokens", "256")])
def test_max_cost_holds_when_the_provider_counts_three_times_our_tokens(flags, data_root, tmp_path):
    from test_trust import one_request_at_most, price_of
    cap = 0.004
    with FakeAPI(latency=0.05, usage_scale=3).run_in_thread() as api:
        code = run_cli(tmp_path, data_root, "--max-cost", cap, "--concurrency", "16", *flags,
                       url=api.openai_url, select=["--limit", "2"])
        billed = price_of(api.billed)
    assert code == cli.EXIT_BUDGET
    assert billed <= cap + 3 * one_request_at_most(data_root, int(flags[1]))  # one request, counted as billed


def test_claims_of_another_pid_namespace_wait_for_their_expiry(tmp_path):
    """A container sharing the host's name has pids of its own: its claims are not taken for
    dead because no process here has that pid."""
    cache = Cache(tmp_path)
    host = cache.owner.split("|")[0]
    cache.db.execute("INSERT INTO claims VALUES ('k', 0, ?, ?)", (f"{host}|pid:[1]/999999/x", time.time() + 60))
    assert cache.claim([("k", 0)], ["e"]).held == [("k", 0)]


def test_requests_dropped_in_flight_are_counted_as_possibly_billed(data_root, tmp_path):
    server = Server(tmp_path, "--latency", "5")
    try:
        args = cli_args(data_root, tmp_path / "out", tmp_path / "cache", server.url, "--concurrency", "4", "--grace", "0.5")
        proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: len(server.received()) >= 4, proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        server.stop()
    usage = summary_of(tmp_path)["usage"]
    assert usage["requests"] == 4 and usage["unconfirmed_cost_usd"] > 0
    assert any("dropped in flight" in w for w in summary_of(tmp_path)["warnings"])


def test_a_judge_that_refuses_everything_is_suspect(data_root, tmp_path):
    with FakeAPI(lambda body, wire: Reply("I'm sorry, but I can't help with that.")).run_in_thread() as api:
        assert run_cli(tmp_path, data_root, url=api.openai_url, select=("--limit", "1", "--scenarios", "*Code*")) \
            == cli.EXIT_SUSPECT
    summary = summary_of(tmp_path)
    assert summary["usage"]["refused"] == summary["data"]["comparisons_judged"] and summary["suspect"]
    assert any("none of its" in w for w in summary["warnings"])


def test_a_failed_sample_fails_its_comparison(data_root, tmp_path):
    """--samples 3 with one sample failing for good: not a vote over two, but an incomplete
    run whose rerun asks again."""
    with FakeAPI().run_in_thread() as api:
        calls = {"n": 0}
        responder = api.responder

        def every_third_fails(body, wire):
            calls["n"] += 1
            return Fault.http(500) if calls["n"] % 3 == 0 else responder(body, wire)

        api.responder = every_third_fails
        code = run_cli(tmp_path, data_root, "--samples", "3", "--temperature", "0.7", "--max-retries", "0",
                       url=api.openai_url, select=PAIRWISE + ("--scenarios", "*Code*"))
        summary = summary_of(tmp_path)
        assert code == cli.EXIT_INCOMPLETE and not summary["complete"] and summary["usage"]["failed"] > 0
        api.responder = responder
        assert run_cli(tmp_path, data_root, "--samples", "3", "--temperature", "0.7",
                       url=api.openai_url, select=PAIRWISE + ("--scenarios", "*Code*")) == 0


def test_unreadable_samples_make_a_run_suspect(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        calls = {"n": 0}
        responder = api.responder

        def mostly_unreadable(body, wire):
            calls["n"] += 1
            return responder(body, wire) if calls["n"] % 3 == 0 else Reply("hmm")

        api.responder = mostly_unreadable
        code = run_cli(tmp_path, data_root, "--samples", "3", "--temperature", "0.7",
                       url=api.openai_url, select=PAIRWISE + ("--scenarios", "*Code*"))
    summary = summary_of(tmp_path)
    assert code == cli.EXIT_SUSPECT and summary["usage"]["unread_votes"] > 0
    assert summary["agreement"]["unanimous_rate"] == 0.0


def test_a_judge_that_always_picks_the_first_answer_is_named(data_root, tmp_path):
    from fake_api import first_pick
    with FakeAPI(first_pick).run_in_thread() as api:
        assert run_cli(tmp_path, data_root, "--order", "fixed", url=api.openai_url,
                       select=("--limit", "3", "--scenarios", "*Chat*")) == 0
    warnings = summary_of(tmp_path)["warnings"]
    assert any("shown first in 100%" in w and "--order fixed" in w for w in warnings)


def test_answers_from_before_endpoints_are_flagged(data_root, tmp_path):
    """Rows of a cache written before endpoints were recorded serve the official endpoint,
    and the run says they are assumed to come from there."""
    from test_cache import v4_cache

    from rmb_judge.records import Selection
    selection = Selection(limit=1, scenarios=["*Code*"])
    run(make_config(judge="mock", data=data_root, out=tmp_path / "first", cache=tmp_path / "c", selection=selection))
    with sqlite3.connect(tmp_path / "c" / FILENAME) as db:  # as if written by the old version
        db.execute("UPDATE responses SET endpoint_assumed = 1")
    again = run(make_config(judge="mock", data=data_root, out=tmp_path / "again", cache=tmp_path / "c",
                            selection=selection))
    assert any("cached before rmb-judge recorded endpoints" in w for w in again.json["warnings"])
    (tmp_path / "old").mkdir()
    v4_cache(tmp_path / "old")  # the migration marks what it attributes
    assert Cache(tmp_path / "old").db.execute("SELECT MIN(endpoint_assumed) FROM responses").fetchone() == (1,)


@pytest.mark.timeout(120)
def test_ctrl_c_under_rate_limits_ends_the_process(data_root, tmp_path):
    server = Server(tmp_path, "--retry-after", "0.5")
    try:
        proc = subprocess.Popen(cli_args(data_root, tmp_path / "out", tmp_path / "cache", server.url,
                                         "--concurrency", "8"),
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: len(server.received()) >= 20, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == cli.EXIT_INTERRUPTED
    finally:
        server.stop()


def test_retry_after_zero_is_not_a_flood(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        api.schedule(*[Fault.http(429, retry_after_raw="0")] * 6)
        assert run_cli(tmp_path, data_root, "--concurrency", "1", url=api.openai_url,
                       select=("--limit", "1", "--scenarios", "*Code*", "--sets", "pairwise")) == 0
        usage = summary_of(tmp_path)["usage"]
        assert usage["rate_limited"] == 6 and len(api.calls()) == usage["requests"] == usage["results"]["answers"] + 6


@pytest.mark.timeout(120)
def test_a_locked_cache_does_not_freeze_ctrl_c(data_root, tmp_path):
    server = Server(tmp_path, "--latency", "0.2")
    try:
        args = cli_args(data_root, tmp_path / "out", tmp_path / "cache", server.url, "--concurrency", "2", "--grace", "5")
        proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: len(server.received()) >= 4, proc)
        holder = sqlite3.connect(tmp_path / "cache" / FILENAME, timeout=30)
        holder.execute("BEGIN IMMEDIATE")  # another process writing for a long time
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = proc.wait(90)
        waited = time.monotonic() - started
        holder.rollback()
    finally:
        server.stop()
    assert code in (cli.EXIT_INTERRUPTED, cli.EXIT_INCOMPLETE) and waited < 30  # --grace 5, not the lock's 60 s
    kept = (tmp_path / "cache" / (FILENAME + ".unsaved.jsonl"))
    assert kept.exists()  # the answers the locked cache could not take


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:abc/v1", "no valid port"), ("http://[::1/v1", "not a URL"),
    ("HTTP://127.0.0.1:1/v1?x=1", "no credentials or query string"), ("ftp://host/v1", "http:// or https://"),
])
def test_a_malformed_base_url_is_one_line(url, message, data_root, tmp_path, capsys, monkeypatch):
    assert run_cli(tmp_path, data_root, url=url) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    assert run_cli(tmp_path, data_root) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rmb-judge: OPENAI_BASE_URL") and message in err[-1]


def test_a_full_disk_keeps_unsaved_answers_for_the_next_run(data_root, tmp_path):
    """The cache's disk fills mid-run: answers the cache (and its side file) could not take go
    to the run folder, and the next run adds them to the cache instead of paying again."""
    import shutil
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        # Long answers: the write that finds the disk full is then almost surely an answer's
        # (a claim's few bytes can fill it too: nothing is lost then, but nothing is left to keep)
        with FakeAPI(lambda body, wire: Reply("[[A]] " + "x" * 30_000)).run_in_thread() as api:
            args = ["run", "--judge", "openai:gpt-4o-mini", "--data", str(data_root), *RUN_TO_INTERRUPT,
                    "--no-progress", "--out", str(tmp_path / "out"), "--base-url", api.openai_url, "--concurrency", "4"]
            assert cli.main([*args, "--cache", str(mount)]) == cli.EXIT_INCOMPLETE
            first = api.calls()
            with sqlite3.connect(mount / FILENAME) as db:
                stored = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            unsaved = [p for p in (tmp_path / "out" / "unsaved-answers.jsonl", mount / (FILENAME + ".unsaved.jsonl"))
                       if p.exists()]
            assert stored + sum(len(p.read_text().splitlines()) for p in unsaved) == len(first) > stored
            shutil.copytree(mount, tmp_path / "bigger")  # the user frees space (here: moves the cache)
            assert cli.main([*args, "--cache", str(tmp_path / "bigger")]) == 0
            again = api.calls()[len(first):]
        sent_twice = {json.dumps(c.body, sort_keys=True) for c in first} & {json.dumps(c.body, sort_keys=True) for c in again}
        assert not sent_twice
    finally:
        subprocess.run(["umount", "-l", str(mount)])
