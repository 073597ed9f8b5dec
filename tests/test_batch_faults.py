"""`--batch` under faults, for all three batch APIs (OpenAI Batches, Anthropic Message Batches,
Gemini batches) through their real SDKs: a creation whose answer is lost is found at the
provider, not paid for twice; output lines that cannot be read fail only their own
requests; a batch the provider no longer knows is forgotten with one line; `cache batches`
lists and forgets; status calls honour --timeout and a stop."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable

import pytest
from conftest import make_config
from fake_api import FAKE_KEY, FakeAPI, Fault

from rmb_judge import cli, records
from rmb_judge.cache import FILENAME
from rmb_judge.config import EngineConfig
from rmb_judge.errors import FatalProviderError
from rmb_judge.estimate import estimate
from rmb_judge.judges import make_provider, parse_spec
from rmb_judge.providers.base import CLOCK_SKEW, ChatRequest, Provider
from rmb_judge.session import run

WIRES = ["openai", "anthropic", "google"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash"}
SELECTION = dict(limit=1, scenarios=["*Chat*"], sets=("pairwise",))
FAST = EngineConfig(backoff_initial=0.05)


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, FAKE_KEY)
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def url_of(api: FakeAPI, wire: str) -> str:
    return {"openai": api.openai_url, "anthropic": api.anthropic_url, "google": api.url}[wire]


def config(api, wire, tmp_path, data, name="out", **kw):
    kw.setdefault("engine", FAST)
    return make_config(judge=f"{wire}:{MODELS[wire]}", data=data, out=tmp_path / name, cache=tmp_path / "cache",
                       base_urls=[url_of(api, wire)], selection=records.Selection(**SELECTION),
                       poll_interval=0.05, **kw)


def requests_needed(api, wire, tmp_path, data) -> int:
    """How many requests the selection needs, from `estimate` on a fresh cache."""
    return estimate(config(api, wire, tmp_path / "estimate", data))["requests"]


def signal_when(condition: Callable[[], bool], sig: int) -> threading.Thread:
    """Send this process `sig` once `condition()` holds (the run under test handles it)."""
    def watch() -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            if condition():
                os.kill(os.getpid(), sig)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def pending_batches(cache_dir) -> list[tuple[str, str, int]]:
    """(id, state, requests) of each batch the cache still waits for, read from the file."""
    with sqlite3.connect(cache_dir / FILENAME) as db:
        rows = db.execute("SELECT id, state, items FROM batches WHERE finished_at IS NULL").fetchall()
    return [(bid, state, len(json.loads(zlib.decompress(items)))) for bid, state, items in rows]


def status_calls(api: FakeAPI) -> int:
    """Status (or results) calls the server received for batches."""
    return sum(1 for c in api.requests if c.method == "GET" and "batches/" in c.path)


# ---------------------------------------------------------------- finding a batch at the provider


@pytest.fixture(params=WIRES)
async def provider(request: pytest.FixtureRequest, fake_api: FakeAPI) -> AsyncIterator[Provider]:
    judge = make_provider(parse_spec(f"{request.param}:{MODELS[request.param]}"), [url_of(fake_api, request.param)], 4)
    judge.batches_per_page = 2  # type: ignore[misc]  # so that three batches take two pages
    yield judge
    await judge.aclose()


def custom_ids(tag: str, n: int) -> list[str]:
    return [f"{tag}-{i}" for i in range(n)]


async def test_find_batch_reads_the_providers_list_page_by_page(provider: Provider, fake_api: FakeAPI) -> None:
    since = time.time()
    created = {}
    for tag, n in (("a", 2), ("b", 2), ("c", 3)):
        requests = [(cid, ChatRequest(provider.model, (("user", cid),), 10)) for cid in custom_ids(tag, n)]
        created[tag] = await provider.submit_batch(requests, f"rmb-judge-{tag}", 10)
    if provider.name == "anthropic":  # no tag: the size, the time, and not a batch known to be another's
        assert await provider.find_batch("-", custom_ids("c", 3), since, (), 10) == created["c"]
        assert await provider.find_batch("-", custom_ids("a", 2), since, [created["b"]], 10) == created["a"]
        assert await provider.find_batch("-", custom_ids("a", 4), since, (), 10) is None
        fake_api.batch_seconds = 0.0  # ended: a batch whose results name other requests is not ours
        assert await provider.find_batch("-", custom_ids("a", 2), since, (), 10) == created["a"]
        assert await provider.find_batch("-", custom_ids("z", 2), since, (), 10) is None
    else:
        assert await provider.find_batch("rmb-judge-a", custom_ids("a", 2), since, (), 10) == created["a"]
        assert await provider.find_batch("rmb-judge-z", custom_ids("z", 2), since, (), 10) is None
    if provider.name != "google":  # listed newest first: the search stops at batches older than `since`
        later = since + CLOCK_SKEW + 3600
        assert await provider.find_batch("rmb-judge-a", custom_ids("a", 2), later, (), 10) is None
    listed = [c for c in fake_api.requests if c.method == "GET" and c.path.rstrip("/").endswith("batches")]
    assert len(listed) >= 2  # the oldest batch is on the second page


# ---------------------------------------------------------------- a creation whose answer is lost


@pytest.mark.parametrize("fault", [Fault.http(500), Fault.reset()], ids=["500", "dropped"])
@pytest.mark.parametrize("wire", WIRES)
def test_a_batch_whose_creation_answer_is_lost_is_found_and_paid_once(wire, fault, data_root, tmp_path):
    """The provider creates the batch, then answers 500 (or drops the connection): the retry
    finds that batch instead of creating a second one, and it is counted."""
    with FakeAPI().run_in_thread() as api:
        needed = requests_needed(api, wire, tmp_path, data_root)
        api.fail_after_create(fault)
        result = run(config(api, wire, tmp_path, data_root, batch=True))
        assert api.batches_created == 1 and api.batch_items() == needed
        assert api.calls() == []
    usage = result.json["usage"]
    assert result.complete and usage["failed"] == 0 and usage["requests"] == needed
    assert usage["results"]["answers"] == needed
    assert pending_batches(tmp_path / "cache") == []


@pytest.mark.parametrize("wire", WIRES)
def test_a_creation_that_failed_before_the_batch_was_made_is_tried_again(wire, data_root, tmp_path):
    """A 500 that made no batch: the provider's list is searched, nothing found, and the
    creation tried again (the file uploaded once): one batch."""
    with FakeAPI().run_in_thread() as api:
        api.fail_before_create(Fault.http(500))
        result = run(config(api, wire, tmp_path, data_root, batch=True))
        listings = [c for c in api.requests if c.method == "GET" and c.path.rstrip("/").endswith("batches")]
        uploads = [c for c in api.requests if c.method == "POST" and c.path.endswith("/files")]
        assert api.batches_created == 1 and len(listings) == 1
        assert len(uploads) == (0 if wire == "anthropic" else 1)
    assert result.complete and result.json["usage"]["requests"] == api.batch_items()


@pytest.mark.parametrize("wire", WIRES)
def test_killed_while_the_creation_answer_is_on_its_way_the_rerun_pays_nothing_more(wire, data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        needed = requests_needed(api, wire, tmp_path, data_root)
        api.fail_after_create(Fault.hang(30))
        args = ["run", "--judge", f"{wire}:{MODELS[wire]}", "--data", str(data_root), "--limit", "1",
                "--scenarios", "*Chat*", "--sets", "pairwise", "--out", str(tmp_path / "o"), "--cache",
                str(tmp_path / "c"), "--batch", "--poll-interval", "0.05", "--no-progress", "--base-url", url_of(api, wire)]
        proc = subprocess.Popen([sys.executable, "-m", "rmb_judge.cli", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not api.batches_created and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.kill()  # the provider has the batch; its id never reached the process
        proc.wait()
        assert api.batches_created == 1
        assert cli.main(args) == 0  # the same command again
        assert api.batches_created == 1 and api.batch_items() == needed and api.calls() == []
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["complete"] and summary["usage"]["failed"] == 0
    assert summary["usage"]["requests"] == needed  # the batch found is counted, once


# ---------------------------------------------------------------- output that cannot be read


@pytest.mark.parametrize("wire", WIRES)
def test_bad_output_lines_fail_only_their_own_requests(wire, data_root, tmp_path):
    """A line without an answer, a line that is not JSON and a request answered twice
    differently fail those three requests; a line repeated identically and every other line
    are kept; the next run sends exactly the three again."""
    with FakeAPI().run_in_thread() as api:
        api.schedule(Fault.no_body(), Fault.not_json(), Fault.duplicate(), Fault.repeated())
        first = run(config(api, wire, tmp_path, data_root, batch=True))
        [batch] = api.batches.values()
        assert not first.complete and first.json["usage"]["requests"] == len(batch.bodies)
        assert any("could not be read" in w for w in first.json["warnings"])
        second = run(config(api, wire, tmp_path, data_root, batch=True))
        assert api.batches_created == 2 and api.calls() == []
        resent = list(api.batches.values())[1]
    assert set(resent.bodies) == set(list(batch.bodies)[:3])
    assert second.complete and second.json["usage"]["requests"] == 3
    assert second.json["usage"]["cache_hits"] == first.json["data"]["comparisons_judged"] - first.json["usage"]["failed"]


# ---------------------------------------------------------------- a batch the provider no longer knows


def interrupted_batch_run(api, wire, tmp_path, data_root):
    """A --batch run stopped by Ctrl-C while its batch runs: the batch stays pending in the cache."""
    api.batch_seconds = 3600
    signal_when(lambda: status_calls(api) > 0, signal.SIGINT)
    stopped = run(config(api, wire, tmp_path, data_root, name="first", batch=True))
    assert stopped.stopped_reason == "interrupted" and api.batches_created == 1
    [pending] = pending_batches(tmp_path / "cache")
    assert pending[0].removeprefix("batches/") in api.batches and pending[1] != "creating"
    return pending


@pytest.mark.parametrize(("wire", "batch"), [("openai", False), ("anthropic", True), ("google", False)])
def test_a_batch_the_provider_no_longer_knows_is_forgotten_with_one_line(wire, batch, data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        batch_id, _, requests = interrupted_batch_run(api, wire, tmp_path, data_root)
        api.batches.clear()  # the provider no longer knows it (404)
        api.batch_seconds = None
        capsys.readouterr()
        result = run(config(api, wire, tmp_path, data_root, batch=batch))
        sent = api.batch_items() if batch else len(api.calls())
    lines = [line for line in capsys.readouterr().err.splitlines() if batch_id in line]
    assert len(lines) == 1 and "is unknown to the provider" in lines[0] and "forgotten" in lines[0]
    assert f"{requests} requests" in lines[0] and "its requests are sent again" in lines[0]
    assert result.complete and sent == requests == result.json["usage"]["requests"]
    assert any(batch_id in w for w in result.json["warnings"])
    assert pending_batches(tmp_path / "cache") == []


def test_cache_batches_lists_and_forgets(data_root, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    with FakeAPI().run_in_thread() as api:
        batch_id, _, requests = interrupted_batch_run(api, "openai", tmp_path, data_root)
        capsys.readouterr()
        assert cli.main(["cache", "batches", "--cache", cache, "--json"]) == 0
        [listed] = json.loads(capsys.readouterr().out)
        assert listed["id"] == batch_id and listed["requests"] == requests
        assert (listed["provider"], listed["model"], listed["endpoint"]) == ("openai", "gpt-4o-mini", api.openai_url)
        assert listed["state"] == "in_progress" and 0 <= listed["age_seconds"] < 600
        assert cli.main(["cache", "batches", "--cache", cache]) == 0
        table = capsys.readouterr().out
        assert batch_id in table and "in_progress" in table
        assert cli.main(["cache", "batches", "--cache", cache, "--forget", "batch_nope"]) == cli.EXIT_USAGE
        assert "no pending batch batch_nope" in capsys.readouterr().err
        assert cli.main(["cache", "batches", "--cache", cache, "--forget", batch_id]) == 0
        said = capsys.readouterr().out
        assert said.startswith(f"forgot batch {batch_id} (openai:gpt-4o-mini at {api.openai_url}, "
                               f"{requests} requests")
        assert "sends its requests again" in said
        assert cli.main(["cache", "batches", "--cache", cache]) == 0
        assert "no pending batches" in capsys.readouterr().out
        api.batch_seconds = None
        again = run(config(api, "openai", tmp_path, data_root, batch=True))
        assert api.batches_created == 2 and again.complete  # sent again, as the line said


# ---------------------------------------------------------------- --timeout and stopping


@pytest.mark.timeout(90)
@pytest.mark.parametrize("wire", WIRES)
def test_a_status_call_trickling_bytes_gives_up_at_timeout_and_the_batch_stays(wire, data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        api.status_trickle = 0.5  # a status answer of some 600 bytes takes 5 minutes
        with pytest.raises(FatalProviderError, match="within 1 s"):
            run(config(api, wire, tmp_path, data_root, batch=True,
                       engine=EngineConfig(timeout=1, max_retries=0)))
        [(_, state, _)] = pending_batches(tmp_path / "cache")
        assert state != "creating"
        api.status_trickle = None
        again = run(config(api, wire, tmp_path, data_root, batch=True))
    assert again.complete and api.batches_created == 1


@pytest.mark.timeout(50)
@pytest.mark.parametrize("wire", WIRES)
def test_sigterm_stops_polling_at_once_and_the_batch_resumes(wire, data_root, tmp_path):
    """A status call is trickling (well within --timeout): SIGTERM abandons it instead of
    waiting out --grace (60 s), and the batch stays recorded for the rerun."""
    with FakeAPI().run_in_thread() as api:
        api.status_trickle = 0.2
        signal_when(lambda: status_calls(api) > 0, signal.SIGTERM)
        stopped = run(config(api, wire, tmp_path, data_root, batch=True, engine=EngineConfig(timeout=300)))
        assert stopped.stopped_reason == "interrupted" and not stopped.complete
        api.status_trickle = None
        again = run(config(api, wire, tmp_path, data_root, batch=True))
    assert again.complete and api.batches_created == 1
