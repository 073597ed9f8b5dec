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
from fake_api import FAKE_KEY, FakeAPI, Fault, Reply, prompt_digest

from rmb_judge import cli, pricing
from rmb_judge.cache import FILENAME

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


def run_cli(tmp_path, data_root, *extra, url=None, out="out", select=SMALL):
    args = ["run", "--judge", f"openai:{MODEL}", "--data", str(data_root), *select,
            "--out", str(tmp_path / out), "--cache", str(tmp_path / "cache"), "--no-progress",
            "--max-retries", "2", *map(str, extra)]
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


def test_suspect_threshold_is_a_flag(data_root, tmp_path):
    with FakeAPI(lambda body, wire: Reply("no verdict here")).run_in_thread() as api:
        assert run_cli(tmp_path, data_root, "--max-unparsed", "1", url=api.openai_url) == 0


# ---------------------------------------------------------------- endpoints


def test_answers_of_one_endpoint_are_not_served_to_another(data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as a, FakeAPI().run_in_thread() as b, FakeAPI().run_in_thread() as c:
        assert run_cli(tmp_path, data_root, url=a.openai_url, out="a") == 0
        sent = len(a.calls())
        assert run_cli(tmp_path, data_root, url=b.openai_url, out="b") == 0
        assert len(b.calls()) == sent  # b's answers are b's own, not a's
        assert f"from other endpoints ({sent} from {a.openai_url})" in capsys.readouterr().err
        # declared equivalent: a's answers serve a run against c
        assert run_cli(tmp_path, data_root, "--equivalent-endpoint", a.openai_url, url=c.openai_url, out="c") == 0
        assert c.calls() == []
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["endpoints"] == [b.openai_url]
    assert summary_of(tmp_path, "b")["scores"] == summary_of(tmp_path, "a")["scores"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("url, reason", [
    (f"http://127.0.0.1:{free_port()}/v1", "refused"),
    ("http://rmb-judge-test.invalid/v1", "cannot resolve host rmb-judge-test.invalid"),
])
def test_an_unreachable_endpoint_stops_at_once(url, reason, data_root, tmp_path, capsys):
    code = run_cli(tmp_path, data_root, url=url + "?key=sk-secret-in-query")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_FATAL
    assert err[-1].startswith(f"rmb-judge: cannot reach {url}: ") and reason in err[-1]
    assert "secret" not in "\n".join(err)
    assert not (tmp_path / "out" / "summary.json").exists()  # nothing sent: no summary to mislead


async def test_the_engine_sorts_a_refused_connection_out_of_the_retries(tmp_path):
    """When the probe cannot speak for the SDK (a proxy), the engine's own sorting stops it."""
    from rmb_judge.cache import Cache
    from rmb_judge.engine import Engine, EngineConfig, Job
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


def cli_args(data_root, out, cache, url, *extra, select=("--limit", "2")):
    return [*CLI, "run", "--judge", f"openai:{MODEL}", "--data", str(data_root), *select,
            "--out", str(out), "--cache", str(cache), "--no-progress", "--base-url", url, *map(str, extra)]


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
        done = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=300)
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
        reference = cli_args(data_root, tmp_path / "ref", tmp_path / "refcache", server.url, "--concurrency", "4")
        assert subprocess.run(reference, env=env(), capture_output=True, timeout=300).returncode == 0
        args = cli_args(data_root, tmp_path / "out", cache, server.url, "--concurrency", "4")
        kills = 0
        for _ in range(5):
            held = cached_prompts(cache) if (cache / FILENAME).exists() else set()
            mark = len(server.received())
            proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_for(lambda: len(server.received()) > mark, proc):
                time.sleep(rng.uniform(0.0, 1.0))
                proc.kill()
                kills += 1
            proc.wait()
            assert not held & set(server.received()[mark:])
        held, mark = cached_prompts(cache), len(server.received())
        done = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert not held & set(server.received()[mark:])
        assert kills >= 3 and 0 < len(held) < len(cached_prompts(tmp_path / "refcache"))
    finally:
        server.stop()
    assert summary_of(tmp_path)["scores"] == summary_of(tmp_path, "ref")["scores"]
