"""The command line end to end, as a user runs it: separate processes for the judge
server and for rmb-judge, killed and interrupted mid-run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_api import FAKE_KEY
from test_scoring import independent_scores

from rmb_judge.cli import main

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "rmb_judge.cli"]


class Server:
    """tests/fake_api.py as its own process: a judge server this run has never seen."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_api.py"), "--port", "0", *args],
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def env(self, wire):
        env = dict(os.environ)
        env.update({"OPENAI_BASE_URL": f"{self.url}/v1", "ANTHROPIC_BASE_URL": self.url,
                    "OPENAI_API_KEY": FAKE_KEY, "ANTHROPIC_API_KEY": FAKE_KEY})
        return env

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def cli(*args, env, check=True):
    done = subprocess.run([*CLI, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_unseen_server_scores_equal_independent_computation(wire, server, data_root, tmp_path):
    limit = 2
    args = ["run", "--judge", f"{wire}:some-judge", "--data", data_root, "--limit", limit,
            "--out", tmp_path / "out", "--cache", tmp_path / "cache", "--no-progress"]
    cli(*args, env=server.env(wire))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected, per_scenario = independent_scores(data_root, limit)
    assert summary["complete"] and summary["judge"] == f"{wire}:some-judge"
    assert summary["scores"] == pytest.approx(expected, abs=1e-12)
    assert {s["category_path"]: s["accuracy"] for s in summary["scenarios"]} == pytest.approx(per_scenario, abs=1e-12)
    first_requests = summary["usage"]["requests"]
    assert first_requests > 0
    # the same run again, with the server gone: everything comes from the cache
    server.stop()
    cli(*args, env=server.env(wire))
    again = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert again["usage"]["requests"] == 0 and again["scores"] == summary["scores"]
    assert again["usage"]["cache_hits"] == summary["data"]["comparisons_judged"]
    # the key sent to the server is nowhere in the cache or the run folder
    for path in [*(tmp_path / "cache").iterdir(), *(tmp_path / "out").iterdir()]:
        assert FAKE_KEY.encode() not in path.read_bytes(), path
        assert FAKE_KEY[3:15].encode() not in path.read_bytes(), path


def test_offline_on_empty_cache_fails_clearly(server, data_root, tmp_path):
    done = cli("run", "--judge", "openai:j", "--data", data_root, "--limit", 1, "--scenarios", "*Chat*", "--offline",
               "--out", tmp_path / "out", "--cache", tmp_path / "cache", env=server.env("openai"), check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("rmb-judge: --offline:")


def test_bad_key_is_fatal_at_once(data_root, tmp_path):
    s = Server("--api-key", "sk-the-right-one")
    try:
        done = cli("run", "--judge", "openai:j", "--data", data_root, "--limit", 5, "--scenarios", "*Chat*",
                   "--out", tmp_path / "out", "--cache", tmp_path / "cache", env=s.env("openai"), check=False)
    finally:
        s.stop()
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert "HTTP 401" in last and FAKE_KEY not in done.stderr + done.stdout


@pytest.mark.parametrize("bad, message", [
    (["--sets", "pairs"], "--sets"), (["--limit", "0"], "--limit"),
    (["--judge", "gpt4"], "--judge 'gpt4'"), (["--template", "nope"], "--template"),
    (["--samples", "3", "--temperature", "0"], "--samples"), (["--batch"], "--batch: mock has no batch API"),
    (["--devices", "cuda:0"], "--devices: not used by a generative judge"),
    # OpenAI reasoning models take no temperature: it would be recorded and keyed, never sent
    (["--judge", "openai:o3", "--temperature", "0.5"], "--temperature: openai:o3 is a reasoning model"),
    (["--judge", "openai:gpt-5-mini", "--samples", "3", "--temperature", "1"], "--temperature: openai:gpt-5-mini"),
    (["--scenarios", "Chat"], "--scenarios 'Chat' matches no scenario"),
    (["--scenarios", "chat"], "a glob matches the whole category_path"),
    (["--scenarios", "chat"], "'*Chat*' matches 6"),
    (["--scenarios", "*Dicsussion*"], "close: '*Discussion*'"),
    (["--sets", "pairwise", "--scenarios", "BoN_set/*"], "of the chosen sets and sections"),
    (["--sample", "3"], "for 3 votes per comparison, --samples 3")])
def test_bad_flags_are_one_line(bad, message, data_root, tmp_path, capsys):
    """In-process: a usage error needs no process of its own to be checked."""
    from rmb_judge.cli import EXIT_USAGE, main

    args = ["run", "--judge", "mock", "--data", data_root, "--out", tmp_path / "o", "--cache", tmp_path / "c"]
    i = args.index(bad[0]) if bad[0] in args else None
    if i is not None:
        args[i + 1] = bad[1]
        bad = bad[2:]
    try:
        code = main([str(a) for a in (*args, *bad)])
    except SystemExit as exc:  # argparse's own checks exit
        code = exc.code
    assert code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rmb-judge") and message in err[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()  # refused before anything is made


def wait_for_rows(cache, minimum, proc, timeout=60):
    import sqlite3
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (cache / "rmb-judge.sqlite3").exists():
            try:
                with sqlite3.connect(cache / "rmb-judge.sqlite3", timeout=5) as db:
                    if db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] >= minimum:
                        return
            except sqlite3.OperationalError:
                pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("run made no progress")


def cached_keys(cache):
    import sqlite3
    with sqlite3.connect(cache / "rmb-judge.sqlite3") as db:
        return {row[0] for row in db.execute("SELECT key FROM responses")}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_without_paying_twice(sig, data_root, tmp_path, monkeypatch):
    """Kill (or Ctrl-C) a run mid-way; the rerun requests only what was not cached, and
    its scores equal those of an uninterrupted run."""

    s = Server("--latency", "0.05")
    try:
        # ~300 requests (as --limit 2 over all scenarios) from 8 scenario files, quick to load;
        # ~80 answers/s: seconds between the kill and the end
        args = ["run", "--judge", "anthropic:j", "--data", data_root, "--limit", 24, "--scenarios", "*Chat*",
                "--scenarios", "*Harmlessness/S1", "--no-progress", "--concurrency", 4]
        env = s.env("anthropic")
        # the uninterrupted run to compare with, in-process: killing it is not the point
        for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"):
            monkeypatch.setenv(name, env[name])
        assert main([*map(str, args), "--concurrency", "16", "--out", str(tmp_path / "ref"),
                     "--cache", str(tmp_path / "refcache")]) == 0
        reference = json.loads((tmp_path / "ref" / "summary.json").read_text())
        total = reference["usage"]["requests"]

        proc = subprocess.Popen([*CLI, *map(str, args), "--out", tmp_path / "out", "--cache", tmp_path / "cache"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_rows(tmp_path / "cache", total // 4, proc)
        proc.send_signal(sig)
        proc.wait(30)
        before = cached_keys(tmp_path / "cache")
        assert 0 < len(before) < total
        if sig == signal.SIGINT:
            assert proc.returncode == 130
            partial = json.loads((tmp_path / "out" / "summary.json").read_text())
            assert partial["complete"] is False and partial["stopped_reason"] == "interrupted"
        else:
            assert proc.returncode == -signal.SIGKILL

        cli(*args, "--concurrency", 16, "--out", tmp_path / "out", "--cache", tmp_path / "cache", env=env)
        final = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert final["complete"] and final["scores"] == reference["scores"]
        assert final["usage"]["requests"] == total - len(before)
        assert cached_keys(tmp_path / "cache") == cached_keys(tmp_path / "refcache")
    finally:
        s.stop()
