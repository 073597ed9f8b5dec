"""Cost control: estimates that match what a run sends, budgets that stop and resume,
batch runs that survive a crash, and the cache commands."""

import json
import subprocess
import sys
import time

import pytest
from conftest import make_config
from fake_api import FAKE_KEY, FakeAPI, Reply

from rmb_judge import cli, records
from rmb_judge.config import EngineConfig
from rmb_judge.estimate import estimate
from rmb_judge.judges import parse_spec
from rmb_judge.providers.openai_provider import OpenAIProvider
from rmb_judge.session import run

MODEL = "gpt-4o-mini"  # a model genai-prices knows
SELECTION = dict(limit=2, scenarios=["*Chat*", "*Harmlessness/S3"])


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


def config(api, tmp_path, name="out", **kw):
    """The fake server stands for OpenAI's API: priced as published (--price published)."""
    return make_config(judge=parse_spec(f"openai:{MODEL}"), data=kw.pop("data"), out=tmp_path / name,
                     cache=tmp_path / "cache", base_urls=[api.openai_url], price="published",
                     selection=records.Selection(**SELECTION), **kw)


def test_estimate_predicts_requests_and_cost_matches_prices(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        before = estimate(config(api, tmp_path, data=data_root))
        result = run(config(api, tmp_path, data=data_root))
        after = estimate(config(api, tmp_path, data=data_root))
        sent = len(api.calls())
    usage = result.json["usage"]
    assert before["requests"] == usage["requests"] == sent and before["cached"] == 0
    assert before["token_method"] == "tiktoken:o200k_base"
    assert before["cost_usd"] > 0
    assert usage["cost_usd"] == pytest.approx(
        OpenAIProvider.price(MODEL, usage["input_tokens"], usage["output_tokens"]), rel=1e-9)
    assert after["requests"] == 0 and after["cached"] == before["requests"] and after["cost_usd"] == 0
    # the batch estimate is half price
    with FakeAPI().run_in_thread() as api:
        batch = estimate(config(api, tmp_path / "b", data=data_root, batch=True))
        assert batch["cost_usd"] == pytest.approx(before["cost_usd"] / 2, rel=1e-6)


def test_estimate_json_keys(data_root, tmp_path, capsys):
    code = cli.main(["estimate", "--judge", f"openai:{MODEL}", "--data", str(data_root), "--limit", "1",
                     "--cache", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and {"requests", "cached", "input_tokens", "output_tokens", "cost_usd"} <= out.keys()
    cli.main(["estimate", "--judge", "openai:my-finetune-x", "--data", str(data_root), "--limit", "1",
              "--cache", str(tmp_path), "--json"])
    assert json.loads(capsys.readouterr().out)["cost_usd"] is None  # unknown price: never invented


def test_budget_stops_early_and_a_rerun_finishes(data_root, tmp_path):
    with FakeAPI().run_in_thread() as api:
        full = run(config(api, tmp_path / "full", data=data_root))
        full_cost = estimate(config(api, tmp_path / "fresh", data=data_root))["cost_usd"]
        budget = full_cost / 3
        api.requests.clear()
        partial = run(config(api, tmp_path, data=data_root, engine=EngineConfig(max_cost=budget, concurrency=4)))
        assert partial.stopped_reason == "budget" and partial.json["complete"] is False
        assert 0 < partial.json["usage"]["requests"] < full.json["usage"]["requests"]
        assert partial.json["usage"]["cost_usd"] <= budget
        done = run(config(api, tmp_path, data=data_root, engine=EngineConfig(max_cost=full_cost * 2)))
        bodies = [json.dumps(c.body, sort_keys=True) for c in api.calls()]
    assert done.complete and done.json["scores"] == full.json["scores"]
    assert len(bodies) == len(set(bodies)) == full.json["usage"]["requests"]  # nothing sent twice


def test_budget_exit_status(data_root, tmp_path, capsys):
    with FakeAPI().run_in_thread() as api:
        code = cli.main(["run", "--judge", f"openai:{MODEL}", "--data", str(data_root), "--limit", "2",
                         "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--max-cost", "0.00001",
                         "--base-url", api.openai_url, "--price", "published", "--no-progress"])
    assert code == cli.EXIT_BUDGET
    assert "--max-cost" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["complete"] is False


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_batch_run_then_normal_rerun_sends_nothing(wire, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    with FakeAPI(batch_polls=2).run_in_thread() as api:
        url = api.openai_url if wire == "openai" else api.anthropic_url
        base = dict(judge=parse_spec(f"{wire}:{MODEL}"), data=data_root, out=tmp_path / "out",
                    cache=tmp_path / "cache", base_urls=[url], selection=records.Selection(**SELECTION),
                    poll_interval=0.05)
        live = run(make_config(**{**base, "cache": tmp_path / "live", "out": tmp_path / "live_out"}))
        api.requests.clear()
        batched = run(make_config(**{**base, "batch": True}))
        assert api.batches_created == 1 and api.calls() == []
        again = run(make_config(**base))
        assert api.calls() == []
    assert batched.complete and batched.json["scores"] == live.json["scores"]
    assert again.json["usage"]["requests"] == 0 and again.json["scores"] == live.json["scores"]


def test_batch_partial_failures_are_retried_next_run(data_root, tmp_path):
    from fake_api import Fault
    with FakeAPI().run_in_thread() as api:
        api.schedule(Fault.http(500), Fault.expired())
        first = run(config(api, tmp_path, data=data_root, batch=True, poll_interval=0.05))
        assert first.json["usage"]["failed"] >= 2  # comparisons sharing a failed request
        second = run(config(api, tmp_path, data=data_root, batch=True, poll_interval=0.05))
        assert api.batches_created == 2
        assert sorted(len(b.bodies) for b in api.batches.values()) == [2, first.json["usage"]["requests"]]
    assert second.complete and second.json["usage"]["failed"] == 0


def recorded_batches(cache_dir):
    """Batches the cache knows the provider created (not creations still under way)."""
    import sqlite3
    try:
        with sqlite3.connect(cache_dir / "rmb-judge.sqlite3", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM batches WHERE state != 'creating'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_killed_while_polling_resumes_the_same_batch(data_root, tmp_path):
    with FakeAPI(batch_seconds=4).run_in_thread() as api:
        args = [sys.executable, "-m", "rmb_judge.cli", "run", "--judge", f"openai:{MODEL}", "--data", str(data_root),
                "--limit", "2", "--scenarios", "*Chat*", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                "--batch", "--poll-interval", "0.2", "--no-progress", "--base-url", api.openai_url]
        env = {**__import__("os").environ, "OPENAI_API_KEY": FAKE_KEY}
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not recorded_batches(tmp_path / "c") and time.time() < deadline:  # polling now
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert api.batches_created == 1
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert api.batches_created == 1  # resumed, not resubmitted
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["complete"] and summary["usage"]["failed"] == 0


def test_cache_commands(data_root, tmp_path, capsys):
    run(make_config(judge=parse_spec("mock"), data=data_root, out=tmp_path / "o", cache=tmp_path / "c",
                  selection=records.Selection(limit=1, scenarios=["*Chat*"])))
    assert cli.main(["cache", "stats", "--cache", str(tmp_path / "c"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    rows = stats["responses"][0]["rows"]
    assert stats["responses"][0]["model"] == "mock" and rows > 0 and stats["runs"][0]["hit_rate"] == 0.0
    assert cli.main(["cache", "export", "--cache", str(tmp_path / "c"), "--output", str(tmp_path / "x.jsonl")]) == 0
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert len(lines) == rows and json.loads(lines[0])["request"]["model"] == "mock"
    assert cli.main(["cache", "prune", "--cache", str(tmp_path / "c")]) == 2  # needs a filter
    assert cli.main(["cache", "prune", "--cache", str(tmp_path / "c"), "--model", "mock"]) == 0
    assert f"removed {rows} rows" in capsys.readouterr().out


# ---------------------------------------------------------------- cached input tokens

O3 = "o3"  # $2 per million input tokens, $0.50 per million cached input tokens, $8 per million output tokens
CACHED_REPLY = dict(input_tokens=3000, output_tokens=1500, cached_tokens=2048)
O3_TRUE = (3000 - 2048) * 2 / 1e6 + 2048 * 0.5 / 1e6 + 1500 * 8 / 1e6  # $0.014928 (the full input price: $0.018)


def cached_input_judge(body, wire):
    """The default judge's verdict, with 2,048 of 3,000 input tokens read from the prompt cache."""
    from fake_api import hash_judge
    return Reply(hash_judge(body, wire).text, **CACHED_REPLY)


def test_cached_input_tokens_are_billed_at_their_price_live_cached_and_later(data_root, tmp_path):
    """Every answer costs $0.014928, not $0.018: in the run that paid, in a fully cached rerun,
    and when answers first kept without a price are priced by a later run (their cached-token
    counts are in the cache)."""
    def o3(name, cache, **kw):
        return make_config(judge=parse_spec(f"openai:{O3}"), data=data_root, out=tmp_path / name, cache=tmp_path / cache,
                           base_urls=[api.openai_url], selection=records.Selection(**SELECTION), **kw)

    with FakeAPI(cached_input_judge).run_in_thread() as api:
        paid = run(o3("paid", "c1", price="published")).json["usage"]
        n = len(api.calls())
        cached = run(o3("cached", "c1")).json["usage"]
        unpriced_run = run(o3("unpriced", "c2"))  # off the official API, no --price: unknown
        unpriced = unpriced_run.json["usage"]
        priced_later = run(o3("later", "c2", price="published")).json["usage"]
        assert len(api.calls()) == 2 * n
    assert paid["requests"] == n > 0 and paid["cost_usd"] == pytest.approx(n * O3_TRUE, rel=1e-9)
    assert (paid["input_tokens"], paid["cache_read_tokens"], paid["output_tokens"]) == (3000 * n, 2048 * n, 1500 * n)
    assert cached["results"]["cache_read_tokens"] == 2048 * n
    assert paid["results"]["cost_usd"] == pytest.approx(n * O3_TRUE, rel=1e-9)
    assert cached["requests"] == 0 and cached["results"]["cost_usd"] == pytest.approx(n * O3_TRUE, rel=1e-9)
    assert unpriced["cost_usd"] is None and unpriced["results"]["cost_usd"] is None
    assert any(api.openai_url in w and "--price" in w for w in unpriced_run.json["warnings"])
    assert priced_later["requests"] == 0 and priced_later["results"]["cost_usd"] == pytest.approx(n * O3_TRUE, rel=1e-9)


async def test_the_budget_counts_the_true_price_of_cached_input(tmp_path):
    """--max-cost $0.10, one request at a time, each reserving at most $0.018 (3,000 input
    and --max-tokens 1,500 at full price) and costing $0.014928: 6 requests fit
    (5 x 0.014928 + 0.018 <= 0.10 < 6 x 0.014928 + 0.018); at the full input price, 5."""
    from rmb_judge.cache import Cache
    from rmb_judge.costs import Estimator
    from rmb_judge.engine import Engine, Job
    from rmb_judge.providers.base import ChatRequest

    request = ChatRequest(O3, (("user", "Which answer is better? " * 40),), max_tokens=1500)
    async with FakeAPI(lambda body, wire: Reply("[[A]]", **CACHED_REPLY)) as api:
        provider = OpenAIProvider(O3, base_url=api.openai_url, api_key=FAKE_KEY)
        engine = Engine(provider, Cache(tmp_path), EngineConfig(max_cost=0.10, concurrency=1),
                        pricing=Estimator(OpenAIProvider, O3, "rmb", 1500, price="published"))
        await engine.run([Job(f"k{i}", 0, request) for i in range(20)])
        await provider.aclose()
        assert len(api.calls()) == engine.stats.requests == 6
    assert engine.stats.stopped_reason == "budget"
    assert engine.stats.cost_usd == pytest.approx(6 * O3_TRUE, rel=1e-9) and engine.stats.cost_usd <= 0.10


# ---------------------------------------------------------------- prices follow the endpoint

LOCAL_MODEL = "gpt-oss-120b"  # genai-prices has OpenAI's price for it; a local vLLM bills nothing like it


def estimate_json(capsys, data_root, tmp_path, *flags):
    assert cli.main(["estimate", "--judge", f"openai:{LOCAL_MODEL}", "--data", str(data_root), "--limit", "1",
                     "--scenarios", "*Chat*", "--cache", str(tmp_path), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_off_the_official_api_the_price_is_unknown_unless_given(data_root, tmp_path, capsys):
    """The same model name, priced on OpenAI's own API only; elsewhere unknown, or what
    --price says (USD per million input and output tokens); the estimate says which."""
    official = estimate_json(capsys, data_root, tmp_path)
    local = estimate_json(capsys, data_root, tmp_path, "--base-url", "http://127.0.0.1:8000/v1")
    given = estimate_json(capsys, data_root, tmp_path, "--base-url", "http://127.0.0.1:8000/v1", "--price", "0.1,0.5")
    published = estimate_json(capsys, data_root, tmp_path, "--base-url", "http://127.0.0.1:8000/v1",
                              "--price", "published")
    assert official["input_tokens"] == local["input_tokens"] == given["input_tokens"] > 0
    tokens = (official["input_tokens"], official["output_tokens"])
    assert official["cost_usd"] == pytest.approx(OpenAIProvider.price(LOCAL_MODEL, *tokens), rel=1e-12)
    assert "genai-prices" in official["price_source"]
    assert local["cost_usd"] is None and local["full_cost_usd"] is None
    assert "unknown" in local["price_source"] and "http://127.0.0.1:8000/v1" in local["price_source"]
    assert "--price" in local["price_source"]
    assert given["cost_usd"] == pytest.approx((tokens[0] * 0.1 + tokens[1] * 0.5) / 1e6, rel=1e-12)
    assert "--price" in given["price_source"] and "0.1" in given["price_source"]
    assert published["cost_usd"] == official["cost_usd"]


def test_a_run_off_the_official_api_reports_no_price_unless_given(data_root, tmp_path, capsys):
    """No --price: cost null and said so; --max-cost refused in one line before anything is
    sent; --price IN,OUT: each answer at that price; the price is no part of the request, so
    a rerun with another price sends nothing."""
    def cli_run(out, *flags):
        return cli.main(["run", "--judge", f"openai:{LOCAL_MODEL}", "--data", str(data_root), "--limit", "1",
                         "--scenarios", "*Chat*", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / out),
                         "--base-url", api.openai_url, "--no-progress", *flags])

    with FakeAPI().run_in_thread() as api:
        assert cli_run("budget", "--max-cost", "1") == cli.EXIT_USAGE
        refused = capsys.readouterr().err.strip().splitlines()
        assert api.calls() == []
        assert cli_run("given", "--price", "0.1,0.5") == 0
        billed = list(api.billed)
        assert cli_run("unknown") == 0
        assert len(api.calls()) == len(billed)  # the same requests: answered from the cache
    assert len(refused) == 1 and "--max-cost" in refused[0] and "--price" in refused[0]
    given = json.loads((tmp_path / "given" / "summary.json").read_text())["usage"]
    assert given["cost_usd"] == pytest.approx(sum(i * 0.1 + o * 0.5 for i, o in billed) / 1e6, rel=1e-9)
    assert "--price" in given["cost_method"]
    unknown = json.loads((tmp_path / "unknown" / "summary.json").read_text())
    assert unknown["usage"]["cost_usd"] == 0  # sent nothing
    assert unknown["usage"]["results"]["cost_usd"] == pytest.approx(given["cost_usd"])  # as paid
    assert "unknown" in unknown["usage"]["cost_method"]
