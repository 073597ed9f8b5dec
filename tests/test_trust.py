"""Runs a user can trust: each way a run could print a wrong number with exit 0, or pay
twice for one answer, reproduced against the fake server or real files, with the behaviour
that replaced it. Processes are real where the situation needs them (signals, kill -9,
several processes on one cache); the rest runs the CLI in-process."""

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RMB
from fake_api import FAKE_KEY, FakeAPI, Fault, Reply, hash_judge, prompt_digest, prompt_text

from rmb_judge import cli
from rmb_judge.cache import FILENAME
from rmb_judge.providers.openai_provider import OpenAIProvider

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "rmb_judge.cli"]
MODEL = "gpt-4o-mini"  # priced by genai-prices
SMALL = ["--limit", "1", "--scenarios", "*Chat/Discussion", "--scenarios", "*Harmlessness/S1"]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def run_cli(tmp_path, data_root, *extra, url=None, out="out", select=SMALL, cache="cache"):
    """The CLI in-process; the fake server stands for OpenAI's API (--price published)."""
    args = ["run", "--judge", f"openai:{MODEL}", "--data", str(data_root), *select,
            "--out", str(tmp_path / out), "--cache", str(tmp_path / cache), "--no-progress",
            "--max-retries", "2", "--price", "published", *map(str, extra)]
    if url:
        args += ["--base-url", url]
    return cli.main(args)


def summary_of(tmp_path, out="out"):
    return json.loads((tmp_path / out / "summary.json").read_text())


# ---------------------------------------------------------------- unreadable verdicts


def test_unreadable_verdicts_make_a_suspect_run(data_root, tmp_path, capsys):
    """`--template json` against a judge that answers [[A]]: not a 0.000 leaderboard with
    exit 0, but a suspect run that says why and shows what the judge wrote."""
    with FakeAPI(lambda body, wire: Reply("Both are fine. [[A]]")).run_in_thread() as api:
        code = run_cli(tmp_path, data_root, "--template", "json", url=api.openai_url)
        err = capsys.readouterr().err
        summary = summary_of(tmp_path)
        assert code == cli.EXIT_SUSPECT and summary["suspect"] is True and summary["complete"] is True
        assert any("--max-unparsed" in w for w in summary["warnings"])
        assert "unreadable judge answer: Both are fine. [[A]]" in err
        # the same judge with a template it answers: a sound run
        assert run_cli(tmp_path, data_root, url=api.openai_url, out="rmb") == 0
        assert summary_of(tmp_path, "rmb")["suspect"] is False


def test_a_judge_answering_without_verdicts_is_stopped_early(data_root, tmp_path, capsys):
    """A server whose answers hold no verdict the template reads is stopped after its first
    answers, even at --concurrency 256 (fewer than 100 of 187 requests sent), exit 6, naming
    the verdict style and showing two answers; what was paid is cached, so going on with
    --max-unparsed 1 sends each remaining request once and none twice."""
    select = ("--scenarios", "*Chat*", "--limit", "20")
    with FakeAPI(lambda body, wire: Reply("Both answers are helpful and well written."), latency=0.2).run_in_thread() as api:
        code = run_cli(tmp_path, data_root, "--concurrency", "256", url=api.openai_url, select=select)
        err = capsys.readouterr().err
        sent = len(api.calls())
        summary = summary_of(tmp_path)
        assert code == cli.EXIT_SUSPECT and sent < 100
        assert summary["stopped_reason"] == "unreadable" and summary["suspect"] and not summary["complete"]
        assert "verdict style 'rmb' ([[A]] or [[B]])" in err
        assert err.count("unreadable judge answer: Both answers are helpful and well written.") == 2
        assert run_cli(tmp_path, data_root, "--concurrency", "256", "--max-unparsed", "1", url=api.openai_url,
                       select=select) == 0
        bodies = [prompt_digest(json.dumps(c.body["messages"])) for c in api.calls()]
        assert len(bodies) == len(set(bodies)) > 150  # (distinct requests: some serve two comparisons)
        assert summary_of(tmp_path)["complete"]


def test_answers_cut_off_before_their_verdict_point_at_max_tokens(data_root, tmp_path, capsys):
    """A judge that spends --max-tokens before it states a verdict (a reasoning model, or a
    verbose one) is stopped early too, but told to raise --max-tokens: its template is right."""
    cut = Reply("Let me think about both answers carefully. First, Assistant A", finish="length")
    with FakeAPI(lambda body, wire: cut).run_in_thread() as api:
        code = run_cli(tmp_path, data_root, "--max-tokens", "16", url=api.openai_url,
                       select=("--scenarios", "*Chat*", "--limit", "20"))
    err = capsys.readouterr().err
    assert code == cli.EXIT_SUSPECT and summary_of(tmp_path)["stopped_reason"] == "unreadable"
    assert "cut off at --max-tokens 16" in err and "raise --max-tokens" in err
    assert "check --template" not in err


def test_a_judge_with_a_few_unreadable_answers_is_not_stopped(data_root, tmp_path):
    """One answer in eight without a verdict (more than --max-unparsed allows, far from most)
    runs to the end: suspect, not stopped."""
    def sometimes(body, wire):
        return Reply("no verdict here") if int(prompt_digest(prompt_text(body, "openai")), 16) % 8 == 0 else hash_judge(body, wire)

    with FakeAPI(sometimes).run_in_thread() as api:
        code = run_cli(tmp_path, data_root, "--concurrency", "64", url=api.openai_url,
                       select=("--scenarios", "*Chat*", "--limit", "20"))
    summary = summary_of(tmp_path)
    assert code == cli.EXIT_SUSPECT and summary["complete"] and summary["stopped_reason"] is None
    assert 0 < summary["usage"]["unparsed"] < 0.3 * summary["data"]["comparisons_judged"]


def test_suspect_threshold_is_a_flag(data_root, tmp_path):
    with FakeAPI(lambda body, wire: Reply("no verdict here")).run_in_thread() as api:
        assert run_cli(tmp_path, data_root, "--max-unparsed", "1", url=api.openai_url) == 0


# ---------------------------------------------------------------- endpoints


def test_answers_of_one_endpoint_are_not_served_to_another(data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as a, FakeAPI().run_in_thread() as b, FakeAPI().run_in_thread() as c, \
            FakeAPI().run_in_thread() as d:
        assert run_cli(tmp_path, data_root, url=a.openai_url, out="a") == 0
        sent = len(a.calls())
        assert run_cli(tmp_path, data_root, url=b.openai_url, out="b") == 0
        assert len(b.calls()) == sent  # b's answers are b's own, not a's
        assert f"answers to {sent} of the {sent} requests to send, from other endpoints ({sent} from " \
               f"{a.openai_url})" in capsys.readouterr().err
        # two endpoints answered each request: the notice counts requests, not answers
        assert run_cli(tmp_path, data_root, url=d.openai_url, out="d") == 0
        err = capsys.readouterr().err
        listed = err.split(f"answers to {sent} of the {sent} requests to send, from other endpoints (")[1]
        assert sorted(listed.split(")")[0].split(", ")) == sorted(f"{sent} from {x.openai_url}" for x in (a, b))
        # declared equivalent (comma-separated, as --base-url): a's and b's answers serve a run against c
        equivalent = f"{a.openai_url},{b.openai_url}"
        assert run_cli(tmp_path, data_root, "--equivalent-endpoint", equivalent, url=c.openai_url, out="c") == 0
        assert c.calls() == []
        # a folder holding a's run is not "resumed" by a run against another endpoint
        assert run_cli(tmp_path, data_root, url=d.openai_url, out="a") == cli.EXIT_USAGE
        assert "holds a run with other settings (endpoints:" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["endpoints"] == [b.openai_url]
    assert summary_of(tmp_path, "b")["scores"] == summary_of(tmp_path, "a")["scores"]


def test_a_base_url_with_or_without_v1_is_one_endpoint(data_root, tmp_path, capsys):
    """The openai SDK adds nothing to a base URL: `http://h:p` and `http://h:p/v1` reach one
    OpenAI-compatible server (this one answers at both), whose answers are not sent again."""
    with FakeAPI().run_in_thread() as api:
        assert run_cli(tmp_path, data_root, url=api.url, out="bare") == 0
        sent = len(api.calls())
        assert sent and {c.path for c in api.calls()} == {"/chat/completions"}
        assert run_cli(tmp_path, data_root, url=api.openai_url, out="v1") == 0
        assert run_cli(tmp_path, data_root, url=f"{api.url}/", out="bare") == 0  # the same run, resumed
        assert len(api.calls()) == sent
    for out in ("bare", "v1"):
        assert json.loads((tmp_path / out / "manifest.json").read_text())["endpoints"] == [api.openai_url]
    # a folder an older rmb-judge wrote for the bare URL (recorded as given) is the same run's
    manifest = json.loads((tmp_path / "bare" / "manifest.json").read_text())
    manifest["settings"]["endpoints"] = [api.url]
    (tmp_path / "bare" / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert run_cli(tmp_path, data_root, "--offline", url=api.url, out="bare") == 0, capsys.readouterr().err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:{free_port}/v1", "refused"),
    ("http://rmb-judge-test.invalid/v1", "cannot resolve host rmb-judge-test.invalid"),
], ids=["refused", "unresolvable"])
def test_an_unreachable_endpoint_stops_at_once(url, reason, data_root, tmp_path, capsys):
    url = url.format(free_port=free_port())  # picked here, not at collection: workers collect alike
    code = run_cli(tmp_path, data_root, url=url)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_FATAL
    assert err[-1].startswith(f"rmb-judge: cannot reach {url}: ") and reason in err[-1]
    assert not (tmp_path / "out" / "summary.json").exists()  # nothing sent: no summary to mislead


async def test_the_engine_sorts_a_refused_connection_out_of_the_retries(tmp_path):
    """When the probe cannot speak for the SDK (a proxy), the engine's own sorting stops it."""
    from rmb_judge.cache import Cache
    from rmb_judge.config import EngineConfig
    from rmb_judge.engine import Engine, Job
    from rmb_judge.errors import FatalProviderError
    from rmb_judge.providers.base import ChatRequest
    from rmb_judge.providers.openai_provider import OpenAIProvider

    provider = OpenAIProvider("m", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=FAKE_KEY)
    engine = Engine(provider, Cache(tmp_path), EngineConfig(backoff_initial=5, concurrency=4))
    jobs = [Job(f"k{i}", 0, ChatRequest("m", (("user", f"q{i}"),))) for i in range(8)]
    with pytest.raises(FatalProviderError, match="cannot reach http://127.0.0.1:.*connection refused"):
        await engine.run(jobs)
    await provider.aclose()
    assert engine.stats.retries == 0 and engine.stats.requests == 0


def test_a_missing_key_is_found_before_the_data_loads(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeAPI().run_in_thread() as api:
        code = run_cli(tmp_path, data_root, url=api.openai_url)
        assert api.calls() == []
    err = capsys.readouterr().err
    assert code == cli.EXIT_FATAL and "OPENAI_API_KEY" in err
    assert "scenario files found" not in err  # stopped before reading the data
    assert not (tmp_path / "out" / "summary.json").exists()


# ---------------------------------------------------------------- no answer paid twice


class Server:
    """tests/fake_api.py as its own process, logging the prompt of every call it answers."""

    def __init__(self, tmp_path, *args):
        self.log = tmp_path / "server.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fake_api.py"), "--port", "0", "--log", str(self.log), *args],
            stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip() + "/v1"

    def received(self):
        return self.log.read_text().split() if self.log.exists() else []

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


# About as many requests as --limit 2 over all 95 scenario files (297, both sets and sections),
# from 8 files: a run long enough to interrupt, without parsing 90 MB of JSON at each start
RUN_TO_INTERRUPT = ("--limit", "24", "--scenarios", "*Chat*", "--scenarios", "*Harmlessness/S1")


def cli_args(data_root, out, cache, url, *extra, select=RUN_TO_INTERRUPT):
    return [*CLI, "run", "--judge", f"openai:{MODEL}", "--data", str(data_root), *select, "--out", str(out),
            "--cache", str(cache), "--no-progress", "--base-url", url, "--price", "published", *map(str, extra)]


def env():
    return {**os.environ, "OPENAI_API_KEY": FAKE_KEY}


def cached_prompts(cache):
    """The prompt_digest of every cached request (as the server logs the calls)."""
    with sqlite3.connect(cache / FILENAME, timeout=10) as db:
        rows = db.execute("SELECT request FROM responses").fetchall()
    import zlib
    return {prompt_digest("\n\n".join(c for _, c in json.loads(zlib.decompress(r))["messages"])) for (r,) in rows}


def wait_for(condition, proc, timeout=60):
    """Until `condition()`; False if the process ended first."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            return False
        assert time.time() < deadline, "no progress"
        time.sleep(0.02)
    return True


def test_ctrl_c_keeps_the_answers_in_flight(data_root, tmp_path):
    """The first Ctrl-C starts nothing new and waits for the 16 requests in flight: their
    answers are cached, the resumed run pays for none of them again."""
    server = Server(tmp_path, "--latency", "1.0")
    try:
        args = cli_args(data_root, tmp_path / "out", tmp_path / "cache", server.url, "--concurrency", "16")
        proc = subprocess.Popen(args, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(server.received()) >= 16, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == cli.EXIT_INTERRUPTED, err
        assert "waiting up to 60 s for the 16 requests in flight" in err
        first = server.received()
        assert len(first) == 16 and cached_prompts(tmp_path / "cache") == set(first)
        partial = summary_of(tmp_path)
        assert partial["complete"] is False and partial["stopped_reason"] == "interrupted"
        done = subprocess.run([*args, "--concurrency", "64"], env=env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        every = server.received()
        assert len(every) == len(set(every))  # nothing sent twice
    finally:
        server.stop()


@pytest.mark.parametrize("processes", [3])
def test_processes_sharing_a_cache_pay_once(processes, data_root, tmp_path):
    server = Server(tmp_path, "--latency", "0.2")
    try:
        procs = [subprocess.Popen(cli_args(data_root, tmp_path / f"out{i}", tmp_path / "cache", server.url,
                                           "--concurrency", "8"),
                                  env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(processes)]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        received = server.received()
        summaries = [summary_of(tmp_path, f"out{i}") for i in range(processes)]
    finally:
        server.stop()
    assert len(received) == len(set(received))  # every request paid once
    assert sum(s["usage"]["requests"] for s in summaries) == len(received)
    assert len({json.dumps(s["scores"]) for s in summaries}) == 1


def test_kill_at_random_moments_then_resume(data_root, tmp_path):
    """kill -9 five times at random moments, then a run to the end: no run requests an
    answer that was in the cache when it started, and the scores equal an uninterrupted run's."""
    server = Server(tmp_path, "--latency", "0.05")
    rng = random.Random(8)
    cache = tmp_path / "cache"
    try:
        # the uninterrupted run to compare with, in-process: killing it is not the point
        reference = cli_args(data_root, tmp_path / "ref", tmp_path / "refcache", server.url, "--concurrency", "16")
        assert cli.main(reference[len(CLI):]) == 0
        args = cli_args(data_root, tmp_path / "out", cache, server.url, "--concurrency", "4")
        kills = 0
        for _ in range(5):
            held = cached_prompts(cache) if (cache / FILENAME).exists() else set()
            mark = len(server.received())
            proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_for(lambda mark=mark: len(server.received()) > mark, proc):
                time.sleep(rng.uniform(0.0, 1.0))
                proc.kill()
                kills += 1
            proc.wait()
            assert not held & set(server.received()[mark:])
        held, mark = cached_prompts(cache), len(server.received())
        done = subprocess.run([*args, "--concurrency", "16"], env=env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert not held & set(server.received()[mark:])
        assert kills >= 3 and 0 < len(held) < len(cached_prompts(tmp_path / "refcache"))
    finally:
        server.stop()
    assert summary_of(tmp_path)["scores"] == summary_of(tmp_path, "ref")["scores"]


# ---------------------------------------------------------------- budgets that hold


def price_of(billed):
    return sum(OpenAIProvider.price(MODEL, i, o) for i, o in billed)


def one_request_at_most(data_root, max_tokens):
    """The most one request of the selection can cost: its input plus --max-tokens of output."""
    from rmb_judge import records, templates
    from rmb_judge.judgments import Presentation
    from rmb_judge.rendering import RequestSettings, requests_for
    chosen = RMB.load(data_root, records.Selection(limit=2))
    template = templates.load("rmb")
    settings = RequestSettings("openai", MODEL, max_tokens, 0.0)
    longest = max(
        (requests_for(p, template, settings)[0][1] for p in (Presentation(j, o) for r in chosen.records
                                                             for j in RMB.judgments(r, "pairwise")
                                                             for o in RMB.orders_for(j, "random", 0))),
        key=lambda r: sum(len(c) for _, c in r.messages),
    )
    return OpenAIProvider.price(MODEL, OpenAIProvider.count_tokens(MODEL, longest.messages).n, max_tokens)


@pytest.mark.parametrize("server", [
    dict(usage=False),  # the server omits usage: tokens counted locally
    dict(usage_scale=2.28),  # the provider counts 2.28x the tokens the client estimates
    dict(usage_scale=1.16),
])
def test_max_cost_holds_whatever_the_server_reports(server, data_root, tmp_path):
    cap = 0.004
    with FakeAPI(latency=0.02, **server).run_in_thread() as api:
        code = run_cli(tmp_path, data_root, "--max-cost", cap, "--concurrency", "16", "--max-tokens", "300",
                       url=api.openai_url, select=["--limit", "2"])
        billed = price_of(api.billed)
    summary = summary_of(tmp_path)
    assert code == cli.EXIT_BUDGET and summary["stopped_reason"] == "budget"
    assert billed <= cap + one_request_at_most(data_root, 300)
    assert 0.5 * cap < billed  # it did spend, up to about the cap
    if not server.get("usage", True):
        assert summary["usage"]["usage_counted_locally"] > 0
        assert summary["usage"]["cost_usd"] == pytest.approx(billed, rel=0.35)  # counted locally, close
        assert any("counted locally" in w for w in summary["warnings"])


def test_max_cost_counts_requests_that_timed_out_or_were_cut_off(data_root, tmp_path):
    """A request that timed out or whose connection dropped may still be billed: its
    reservation is counted as spent, so the cap holds."""
    cap = 0.002
    with FakeAPI(latency=0.02).run_in_thread() as api:
        api.schedule(*[Fault.reset(), Fault.hang(5)] * 40)
        code = run_cli(tmp_path, data_root, "--max-cost", cap, "--concurrency", "8", "--timeout", "1",
                       "--max-tokens", "300", url=api.openai_url, select=["--limit", "2"])
        billed = price_of(api.billed)
    summary = summary_of(tmp_path)
    assert code == cli.EXIT_BUDGET
    assert summary["usage"]["unconfirmed_cost_usd"] > 0
    assert billed <= cap + one_request_at_most(data_root, 300)
    assert summary["usage"]["cost_usd"] + summary["usage"]["unconfirmed_cost_usd"] >= billed * 0.9


# ---------------------------------------------------------------- long waits


@pytest.mark.timeout(60)
@pytest.mark.parametrize("asked", ["3600", "1e9", "inf"])
def test_a_long_retry_after_stops_the_run_cleanly(asked, data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        api.schedule(None, None, *[Fault.http(429, retry_after_raw=asked)] * 50)
        code = run_cli(tmp_path, data_root, "--concurrency", "1", url=api.openai_url)
    err = capsys.readouterr().err
    summary = summary_of(tmp_path)
    assert code == cli.EXIT_INCOMPLETE and summary["stopped_reason"] == "wait" and summary["complete"] is False
    assert f"the provider asked to wait {float(asked):g} s, longer than --max-wait 300 s; rerun" in err
    assert summary["data"]["comparisons_judged"] >= 2  # what was answered is scored and kept


def test_a_short_retry_after_is_waited_out_and_shown(data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        api.schedule(Fault.http(429, retry_after=2))
        code = run_cli(tmp_path, data_root, "--progress-interval", "0.5", url=api.openai_url)
    assert code == 0
    assert "waiting 2 s for the provider's rate limit" in capsys.readouterr().err


# ---------------------------------------------------------------- broken caches and disks


def test_a_corrupt_cache_is_one_line_before_anything_is_sent(data_root, tmp_path, capsys):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / FILENAME).write_bytes(b"garbage" * 1000)
    with FakeAPI().run_in_thread() as api:
        code = run_cli(tmp_path, data_root, url=api.openai_url)
        assert api.calls() == []
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "damaged or not a SQLite database" in err[-1] and "Traceback" not in "\n".join(err)
    assert (tmp_path / "cache" / FILENAME).read_bytes() == b"garbage" * 1000


def test_a_cache_from_a_newer_version_sends_nothing(data_root, tmp_path):
    from rmb_judge.cache import Cache
    cache = Cache(tmp_path / "cache")
    cache.db.execute("INSERT INTO _migrations VALUES ('m999_newer', 0)")
    cache.close()
    with FakeAPI().run_in_thread() as api:
        assert run_cli(tmp_path, data_root, url=api.openai_url) == 2
        assert api.calls() == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs): a full disk and, remounted, a read-only one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_a_read_only_cache_serves_offline_estimate_and_report(small_disk, data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        args = ["run", "--judge", f"openai:{MODEL}", "--data", str(data_root), *SMALL, "--no-progress",
                "--cache", str(small_disk), "--base-url", api.openai_url]
        assert cli.main([*args, "--out", str(tmp_path / "first")]) == 0
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        assert cli.main([*args, "--out", str(tmp_path / "again"), "--offline"]) == 0
        estimate = ["estimate", "--judge", f"openai:{MODEL}", "--data", str(data_root), *SMALL,
                    "--cache", str(small_disk), "--base-url", api.openai_url, "--json"]
        capsys.readouterr()
        assert cli.main(estimate) == 0
        assert json.loads(capsys.readouterr().out)["requests"] == 0
        assert cli.main(["report", str(tmp_path / "again")]) == 0
        assert cli.main(["cache", "stats", "--cache", str(small_disk)]) == 0
        # a run that would have to store new answers says so before sending any
        assert cli.main([*args, "--out", str(tmp_path / "more"), "--limit", "2"]) == 2
        assert "read-only" in capsys.readouterr().err
    assert summary_of(tmp_path, "again")["scores"] == summary_of(tmp_path, "first")["scores"]


def test_a_full_disk_stops_the_run_and_keeps_the_cache(small_disk, data_root, tmp_path, capsys):
    """The cache fills its 1 MiB disk mid-run: one line, a partial summary, and every answer
    stored before is still there for the next run."""
    with FakeAPI(lambda body, wire: Reply("[[A]] " + "x" * 3000)).run_in_thread() as api:
        code = cli.main(["run", "--judge", f"openai:{MODEL}", "--data", str(data_root), "--limit", "3",
                         "--no-progress", "--cache", str(small_disk), "--out", str(tmp_path / "out"),
                         "--base-url", api.openai_url, "--concurrency", "4"])
        err = capsys.readouterr().err
        summary = summary_of(tmp_path)
        assert code == cli.EXIT_INCOMPLETE and summary["stopped_reason"] == "cache"
        assert "cannot write to the cache" in err and "Traceback" not in err
        with sqlite3.connect(small_disk / FILENAME) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        assert 0 < rows < len(api.calls())
        assert summary["data"]["comparisons_judged"] >= rows  # what arrived is scored


# ---------------------------------------------------------------- honest accounting


def test_a_cached_rerun_reports_what_the_results_cost(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        assert run_cli(tmp_path, data_root, url=api.openai_url, out="paid") == 0
        assert run_cli(tmp_path, data_root, url=api.openai_url, out="cached") == 0
    paid, cached = summary_of(tmp_path, "paid")["usage"], summary_of(tmp_path, "cached")["usage"]
    assert paid["cost_usd"] > 0 and paid["results"]["cost_usd"] == pytest.approx(paid["cost_usd"])
    assert cached["cost_usd"] == 0 and cached["requests"] == 0
    assert cached["results"] == paid["results"]


def test_a_resumed_run_reports_the_whole_cost(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        short = ["--max-tokens", "50"]
        assert run_cli(tmp_path, data_root, *short, url=api.openai_url, out="whole", cache="c1") == 0
        whole = summary_of(tmp_path, "whole")["usage"]
        cap = whole["cost_usd"] / 2
        assert run_cli(tmp_path, data_root, *short, "--max-cost", cap, url=api.openai_url, out="x") == cli.EXIT_BUDGET
        assert run_cli(tmp_path, data_root, *short, url=api.openai_url, out="x") == 0
    resumed = summary_of(tmp_path, "x")["usage"]
    assert 0 < resumed["cost_usd"] < whole["cost_usd"]  # this invocation paid the rest only
    assert resumed["results"]["cost_usd"] == pytest.approx(whole["cost_usd"])


# ---------------------------------------------------------------- the fault campaign


def test_a_secret_in_the_base_url_goes_nowhere(data_root, tmp_path, capsys):
    """--base-url with a key in its query string or user:password@: refused in one line that
    shows neither; from the environment, the endpoint recorded has neither."""
    with FakeAPI().run_in_thread() as api:
        assert run_cli(tmp_path, data_root, url=api.openai_url + "?key=sk-query-secret-123") == 2
        assert run_cli(tmp_path, data_root, url=api.openai_url.replace("//", "//user:pa55word@")) == 2
        os.environ["OPENAI_BASE_URL"] = api.openai_url + "/?key=sk-query-secret-123"
        try:
            assert run_cli(tmp_path, data_root, "--offline") == cli.EXIT_OFFLINE_MISS
        finally:
            del os.environ["OPENAI_BASE_URL"]
        assert run_cli(tmp_path, data_root, url=api.openai_url) == 0
    written = b"".join(p.read_bytes() for p in [*(tmp_path / "out").iterdir(), *(tmp_path / "cache").iterdir()])
    printed = capsys.readouterr()
    for secret in ("query-secret", "pa55word"):
        assert secret.encode() not in written and secret not in printed.out + printed.err
    assert "must hold no credentials or query string" in printed.err
    assert f"for {api.openai_url}; nothing was sent" in printed.err  # the endpoint, stripped
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["endpoints"] == [api.openai_url]


@pytest.mark.parametrize("wire, model", [("openai", MODEL), ("anthropic", "claude-haiku-4-5"),
                                         ("google", "gemini-2.5-flash")])
def test_a_key_echoed_in_an_answer_is_kept_nowhere(wire, model, data_root, tmp_path, capsys, monkeypatch):
    """A server that echoes the API key inside its 200 answers (a key not shaped like one):
    the key reaches neither the cache, nor samples.jsonl, nor the unreadable answers printed;
    nor does one an older version stored in the cache, when a rerun serves it."""
    key = "team-secret-for-the-judge-4242"
    echoed = f"No verdict. Your key is {key}, right?"

    def run_to(out):
        return cli.main(["run", "--judge", f"{wire}:{model}", "--data", str(data_root), *SMALL, "--no-progress",
                         "--out", str(tmp_path / out), "--cache", str(tmp_path / "cache")])

    with FakeAPI(lambda body, wire: Reply(echoed), required_key=key).run_in_thread() as api:
        for name, value in api.env().items():
            monkeypatch.setenv(name, value)
        assert run_to("out") == cli.EXIT_SUSPECT  # every answer unreadable, a few printed
        assert len(api.calls(wire)) > 0
        for path in [*(tmp_path / "cache").iterdir(), *(tmp_path / "out").iterdir()]:
            assert key.encode() not in path.read_bytes(), path
        with sqlite3.connect(tmp_path / "cache" / FILENAME) as db:  # as an older version stored them
            db.execute("UPDATE responses SET text = ?", (echoed,))
        assert run_to("again") == cli.EXIT_SUSPECT
    printed = capsys.readouterr()
    assert "No verdict. Your key is [redacted], right?" in (tmp_path / "out" / "samples.jsonl").read_text()
    assert "unreadable judge answer: No verdict. Your key is [redacted], right?" in printed.err
    for path in (tmp_path / "again").iterdir():
        assert key.encode() not in path.read_bytes(), path
    assert key not in printed.out + printed.err


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_empty_answers_are_retried_not_cached(wire, data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        api.schedule(Fault.empty(), Reply(None), Fault.empty())
        url = api.openai_url if wire == "openai" else api.anthropic_url
        code = cli.main(["run", "--judge", f"{wire}:judge", "--data", str(data_root), *SMALL, "--no-progress",
                         "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--base-url", url,
                         "--concurrency", "1"])
        summary = summary_of(tmp_path)
        assert code == 0, capsys.readouterr().err
        assert summary["usage"]["unparsed"] == 0 and summary["usage"]["retries"] == 3
    with sqlite3.connect(tmp_path / "cache" / FILENAME) as db:
        assert db.execute("SELECT COUNT(*) FROM responses WHERE text = ''").fetchone()[0] == 0


def test_failed_comparisons_make_a_run_incomplete(data_root, tmp_path, capsys):
    """One request failing for good out of one is not a complete run scoring 0.0."""
    with FakeAPI().run_in_thread() as api:
        api.schedule(*[Fault.http(500)] * 3)
        one = ["--limit", "1", "--scenarios", "*Chat/Discussion", "--sets", "pairwise"]
        code = run_cli(tmp_path, data_root, "--max-retries", "2", url=api.openai_url, select=one)
        summary = summary_of(tmp_path)
        assert code == cli.EXIT_INCOMPLETE and summary["complete"] is False
        assert "rerun the same command to retry them" in capsys.readouterr().err
        assert run_cli(tmp_path, data_root, url=api.openai_url, select=one) == 0
        assert len(api.calls()) == 4 and summary_of(tmp_path)["complete"] is True


@pytest.mark.parametrize("flag, value", [("--max-cost", "nan"), ("--max-cost", "0"), ("--max-cost", "-1"),
                                         ("--rpm", "nan"), ("--timeout", "nan"), ("--timeout", "inf"),
                                         ("--max-retries", "-1"), ("--temperature", "nan"),
                                         ("--max-unparsed", "1.5"), ("--max-wait", "0")])
def test_non_finite_and_negative_values_are_refused(flag, value, data_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(tmp_path, data_root, flag, value)
    assert exit_.value.code == 2 and flag in capsys.readouterr().err


def test_out_is_checked_before_anything_is_paid(data_root, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    with FakeAPI().run_in_thread() as api:
        assert run_cli(tmp_path, data_root, url=api.openai_url, out="afile") == 2
        assert api.calls() == []
        assert "is a file" in capsys.readouterr().err
        # a folder holding another judge's run is not overwritten without --replace
        assert run_cli(tmp_path, data_root, url=api.openai_url, out="run") == 0
        other = ["run", "--judge", "mock", "--data", str(data_root), *SMALL, "--out", str(tmp_path / "run"),
                 "--cache", str(tmp_path / "cache"), "--no-progress"]
        assert cli.main(other) == 2 and "--replace" in capsys.readouterr().err
        assert cli.main([*other, "--replace"]) == 0


def test_two_runs_cannot_write_one_out_folder(data_root, tmp_path):
    server = Server(tmp_path, "--latency", "0.5")
    try:
        args = cli_args(data_root, tmp_path / "out", tmp_path / "cache", server.url, "--concurrency", "2")
        first = subprocess.Popen(args, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: len(server.received()) > 0, first)
        second = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    finally:
        server.stop()
    assert second.returncode == 2 and "another rmb-judge run (pid" in second.stderr
    assert summary_of(tmp_path)["stopped_reason"] == "interrupted"  # the first run's own summary


def test_a_data_folder_with_no_scenario_files_points_at_data_fetch(tmp_path, capsys):
    (tmp_path / "empty" / "Pairwise_set").mkdir(parents=True)
    code = cli.main(["run", "--judge", "mock", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "c")])
    assert code == 2 and "data fetch" in capsys.readouterr().err


# ---------------------------------------------------------------- the cost, before spending


def in_terminal(args, answer: str | None, timeout: float = 90.0) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal, as typed at one;
    `answer` is typed once a question ends in "[y/N] ". Returns the exit status and all it showed."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "rmb_judge.cli", *map(str, args)],
                   {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "COLUMNS": "200"})
    shown, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child ended and closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
                if answer is not None and shown.rstrip().endswith(b"[y/N]"):
                    os.write(fd, answer.encode() + b"\n")
                    answer = None
            elif os.waitpid(pid, os.WNOHANG)[0]:
                break
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"still running after {timeout} s: {shown.decode(errors='replace')[-2000:]}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace").replace("\r\n", "\n")


CONFIRM_SELECT = ("--scenarios", "*Chat*", "--limit", "3")


def test_the_cost_is_shown_before_the_first_request(data_root, tmp_path, capsys):
    """One line with the estimate for what will be sent, before anything is: the same number
    as `rmb-judge estimate`; a script (no terminal) is never asked, whatever the cost."""
    assert cli.main(["estimate", "--judge", f"openai:{MODEL}", "--data", str(data_root), *CONFIRM_SELECT,
                     "--cache", str(tmp_path / "cache"), "--json"]) == 0
    estimated = json.loads(capsys.readouterr().out)
    with FakeAPI().run_in_thread() as api:
        assert run_cli(tmp_path, data_root, "--confirm-above", "0.0001", url=api.openai_url, select=CONFIRM_SELECT) == 0
        err = capsys.readouterr().err
        assert len(api.calls()) == estimated["requests"]
    line = next(line for line in err.splitlines() if "to send:" in line)
    assert line == (f"rmb-judge: {estimated['requests']} requests to send: estimated ${estimated['cost_usd']:.4f} "
                    f"({estimated['input_tokens']:,} input tokens, {estimated['output_tokens']:,} output tokens "
                    f"assumed: {estimated['output_tokens_per_request']} per request)")
    assert err.index(line) < err.index("[rmb-judge] ")  # before the first progress line
    assert run_cli(tmp_path, data_root, url=api.openai_url, select=CONFIRM_SELECT) == 0  # all cached: nothing to say
    assert "to send:" not in capsys.readouterr().err


def test_a_terminal_is_asked_before_spending_above_the_threshold(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        args = ["run", "--judge", f"openai:{MODEL}", "--base-url", api.openai_url, "--data", data_root,
                *CONFIRM_SELECT, "--out", tmp_path / "out", "--cache", tmp_path / "cache", "--no-progress",
                "--price", "published"]
        code, shown = in_terminal([*args, "--confirm-above", "0.0001"], "n")
        assert code == cli.EXIT_INTERRUPTED and not api.calls() and not (tmp_path / "out").exists()
        assert "above --confirm-above $0.0001: send them? [y/N]" in shown and "nothing was sent" in shown
        code, shown = in_terminal(args, None)  # under the default threshold ($10): not asked
        assert code == 0 and "[y/N]" not in shown and api.calls()
        sent = len(api.calls())
        code, shown = in_terminal([*args, "--limit", "4", "--confirm-above", "0.0001", "--out", tmp_path / "more"], "y")
        assert code == 0 and len(api.calls()) > sent
        sent = len(api.calls())
        code, shown = in_terminal([*args, "--limit", "5", "--confirm-above", "0.0001", "--yes", "--out",
                                   tmp_path / "yes"], None)
        assert code == 0 and "[y/N]" not in shown and len(api.calls()) > sent
