"""RewardBench 2 end to end, as a user runs it: `data fetch` from a local fake of the Hugging
Face hub (the endpoints huggingface_hub really calls, HF_ENDPOINT pointing at it), `run` of a
generative judge through the real openai SDK against the fake server (4-way rankings and Ties
ratings; the ratings template), a tiny `hf:` reward model and the mock judge, then report,
compare and view. The scores must be the official code's on the same replies and rewards
(tests/rewardbench2_official.py), recomputed here from what the fake server was sent and said."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from pathlib import Path

import huggingface_hub
import pytest
import rb2_fixture
import torch
from aiohttp import web
from fake_api import Fault, Reply, rewardbench2_judge
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

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get(f"/api/datasets/{REPO}/revision/{{revision}}", info)
        app.router.add_route("*", f"/datasets/{REPO}/resolve/{{revision}}/{{file:.+}}", resolve)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    host, port = runner.addresses[0][:2]
    monkeypatch.setenv("HF_ENDPOINT", f"http://{host}:{port}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield served, asked
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


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
