"""The engine through the real SDKs against the fake API: retries, rate limits, fatal
errors, timeouts, and the cache that makes every answer paid for once."""

import json

import pytest
from conftest import make_config
from fake_api import FAKE_KEY, FakeAPI, Fault, first_pick

from rmb_judge import records
from rmb_judge.cache import Cache
from rmb_judge.config import EngineConfig
from rmb_judge.engine import Engine, Job
from rmb_judge.errors import CacheMiss, FatalProviderError
from rmb_judge.judges import parse_spec
from rmb_judge.providers.base import ChatRequest
from rmb_judge.providers.openai_provider import OpenAIProvider
from rmb_judge.session import run

WIRES = ["openai", "anthropic", "google"]


def config_for(api, wire, data_root, tmp_path, **kw):
    selection = kw.pop("selection", records.Selection(limit=2, sets=["pairwise", "bon"], scenarios=["*Chat*", "*S1"]))
    url = {"openai": api.openai_url, "anthropic": api.anthropic_url}.get(wire, api.url)
    kw.setdefault("base_urls", [url])
    return make_config(judge=parse_spec(f"{wire}:judge-model"), data=data_root, out=tmp_path / "out",
                       cache=tmp_path / "cache", selection=selection, **kw)


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)


@pytest.mark.parametrize("wire", WIRES)
def test_faults_do_not_change_scores(wire, data_root, tmp_path, keys):
    """30% of requests answered 429/500/503: same scores, no failures, retries reported."""
    # ~70 requests: faults of all three kinds, whatever the seeded draws (they hash the bodies)
    selection = records.Selection(limit=5, sets=["pairwise", "bon"], scenarios=["*Chat*", "*S1"])
    with FakeAPI().run_in_thread() as clean:
        baseline = run(config_for(clean, wire, data_root, tmp_path / "a", selection=selection))
    with FakeAPI(fault_rate=0.3, seed=7).run_in_thread() as faulty:
        result = run(config_for(faulty, wire, data_root, tmp_path / "b", selection=selection,
                                engine=EngineConfig(concurrency=16, max_retries=10, backoff_initial=0.05)))
        calls = len(faulty.calls())
    usage = result.json["usage"]
    assert result.complete and result.json["scores"] == baseline.json["scores"]
    assert usage["failed"] == 0 and usage["retries"] > 0
    assert usage["requests"] == calls == baseline.json["usage"]["requests"] + usage["retries"]
    assert usage["rate_limited"] > 0


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_fatal_answer_stops_the_run_at_once(status, data_root, tmp_path, keys):
    with FakeAPI().run_in_thread() as api:
        api.schedule(*[Fault.http(status)] * 1000)
        with pytest.raises(FatalProviderError) as err:
            run(config_for(api, "openai", data_root, tmp_path, engine=EngineConfig(concurrency=4)))
        sent = len(api.calls())
    message = str(err.value)
    assert f"HTTP {status}" in message and "\n" not in message and FAKE_KEY not in message
    assert sent <= 4  # no retries: at most the requests already in flight
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] is False and summary["stopped_reason"] == "fatal"


def test_offline_empty_cache_sends_nothing(data_root, tmp_path, keys):
    with FakeAPI().run_in_thread() as api:
        with pytest.raises(CacheMiss, match="--offline: .* not in the cache"):
            run(config_for(api, "openai", data_root, tmp_path, engine=EngineConfig(offline=True)))
        assert api.calls() == []


def test_offline_answers_from_cache_without_a_key(data_root, tmp_path, keys, monkeypatch):
    with FakeAPI().run_in_thread() as api:
        first = run(config_for(api, "anthropic", data_root, tmp_path))
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        again = run(config_for(api, "anthropic", data_root, tmp_path, engine=EngineConfig(offline=True)))
        assert len(api.calls()) == first.json["usage"]["requests"]
    assert again.json["scores"] == first.json["scores"] and again.json["usage"]["requests"] == 0


def test_missing_key_is_one_clear_line(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeAPI().run_in_thread() as api:
        with pytest.raises(FatalProviderError, match="OPENAI_API_KEY"):
            run(config_for(api, "openai", data_root, tmp_path))
        assert api.calls() == []


async def test_hang_times_out_and_is_retried(tmp_path):
    async with FakeAPI() as api:
        api.schedule(Fault.hang(8), Fault.invalid_json(), Fault.garbage(), Fault.http(529))
        provider = OpenAIProvider("m", base_url=api.openai_url, api_key=FAKE_KEY)
        engine = Engine(provider, Cache(tmp_path), EngineConfig(timeout=2, max_retries=5, backoff_initial=0.05))
        out = await engine.run([Job("k", 0, ChatRequest("m", (("user", "hello"),), 10))])
        await provider.aclose()
    assert out["k", 0].response is not None and out["k", 0].error is None
    assert engine.stats.retries == 4 and engine.stats.requests == 5


async def test_failed_requests_are_not_cached(tmp_path):
    async with FakeAPI() as api:
        api.schedule(*[Fault.http(500)] * 3)
        provider = OpenAIProvider("m", base_url=api.openai_url, api_key=FAKE_KEY)
        cache = Cache(tmp_path)
        job = Job("k", 0, ChatRequest("m", (("user", "hello"),), 10))
        engine = Engine(provider, cache, EngineConfig(max_retries=1, backoff_initial=0.05))
        engine_out = await engine.run([job])
        assert engine_out["k", 0].error.startswith("HTTP 500") and cache.get_responses([("k", 0)], None) == {}
        again = await Engine(provider, cache, EngineConfig(max_retries=1, backoff_initial=0.05)).run([job])
        await provider.aclose()
    assert again["k", 0].response is not None and cache.get_responses([("k", 0)], provider.endpoints)


async def test_rate_limits_shrink_concurrency(tmp_path):
    async with FakeAPI(capacity_rpm=1200, latency=0.1) as api:
        provider = OpenAIProvider("m", base_url=api.openai_url, api_key=FAKE_KEY)
        engine = Engine(provider, Cache(tmp_path), EngineConfig(concurrency=64, max_retries=20))
        jobs = [Job(f"k{i}", 0, ChatRequest("m", (("user", f"q{i}"),), 10)) for i in range(120)]
        out = await engine.run(jobs)
        await provider.aclose()
    assert all(o.response for o in out.values())
    assert engine.stats.rate_limited > 0 and engine.concurrency.decreases > 0
    assert engine.concurrency.limit < 64


def test_first_pick_judge_position_bias(data_root, tmp_path, keys):
    """A judge that always picks the first-shown answer: accuracy 1.0 with the preferred
    answer first, first-pick rate 1.0, and --order both turns every win into a tie."""
    sel = records.Selection(limit=3, scenarios=["*Chat/Discussion", "*Harmlessness/S2"])
    with FakeAPI(first_pick).run_in_thread() as api:
        fixed = run(config_for(api, "openai", data_root, tmp_path / "f", order="fixed", selection=sel))
        both = run(config_for(api, "openai", data_root, tmp_path / "b", order="both", selection=sel))
        rand = run(config_for(api, "openai", data_root, tmp_path / "r", order="random", selection=sel))
    assert set(v for v in fixed.json["scores"].values()) == {1.0}
    assert fixed.json["position"]["first_pick_rate"] == 1.0
    s = both.json["scores"]
    assert s["pairwise_helpfulness"] == s["pairwise_harmlessness"] == 0.5
    assert s["bon_helpfulness"] == s["bon_harmlessness"] == 0.0  # a tie is not a Best-of-N win
    assert both.json["position"]["consistency"] == 0.0
    # random order: a pairwise record is won exactly when the preferred answer was shown first
    lines = [json.loads(l) for l in (tmp_path / "r" / "out" / "samples.jsonl").read_text().splitlines()]
    pair = [l for l in lines if l["loser_index"] is None]
    assert rand.json["position"]["first_pick_rate"] == 1.0
    assert all(l["correct"] == (1.0 if l["order"] == "AB" else 0.0) for l in lines)
    expected = sum(l["order"] == "AB" for l in pair) / len(pair)
    got = rand.json["sections"]
    assert (got["pairwise_helpfulness"]["wins"] + got["pairwise_harmlessness"]["wins"]) / len(pair) == expected


def test_several_base_urls_share_the_requests(data_root, tmp_path, keys):
    """vLLM replicas: one judge, several servers, requests spread over all of them."""
    with FakeAPI().run_in_thread() as one, FakeAPI().run_in_thread() as two:
        result = run(config_for(one, "openai", data_root, tmp_path, base_urls=[one.openai_url, two.openai_url]))
        counts = len(one.calls()), len(two.calls())
    assert result.complete and min(counts) > 0
    assert sum(counts) == result.json["usage"]["requests"]
    assert abs(counts[0] - counts[1]) <= 1


@pytest.mark.parametrize("wire", WIRES)
def test_a_request_the_provider_rejects_fails_alone(wire, data_root, tmp_path, keys):
    """A prompt too long for the context window, or caught by a content filter, is that one
    comparison's problem: the run goes on; a filtered prompt counts as a refusal."""
    long = Fault.http(400, message="This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.")
    filtered = Fault.http(400, message="The response was filtered due to the prompt triggering the content management policy.")
    with FakeAPI().run_in_thread() as api:
        api.schedule(long, filtered)
        result = run(config_for(api, wire, data_root, tmp_path, engine=EngineConfig(concurrency=1)))
        sent = len(api.calls())
    usage = result.json["usage"]
    assert result.complete and usage["failed"] >= 1 and usage["refused"] >= 1
    assert sent == usage["requests"]  # neither was retried
    lines = [json.loads(l) for l in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert any("maximum context length" in (l["error"] or "") for l in lines)


async def test_odd_429s_are_still_rate_limits(tmp_path):
    """A proxy's plain-text 429 and an unreadable retry-after are waited out, not fatal."""
    async with FakeAPI() as api:
        api.schedule(Fault.http(429, retry_after_raw="soon"), Fault.http(429, retry_after_raw="Wed, 21 Oct 2015 07:28:00 GMT"))
        provider = OpenAIProvider("m", base_url=api.openai_url, api_key=FAKE_KEY)
        engine = Engine(provider, Cache(tmp_path), EngineConfig(backoff_initial=0.05))
        out = await engine.run([Job("k", 0, ChatRequest("m", (("user", "hello"),), 10))])
        await provider.aclose()
    assert out["k", 0].response is not None and engine.stats.rate_limited == 2


def test_text_bodied_429_is_a_rate_limit():
    import httpx2
    import openai

    from rmb_judge import retry
    classify = OpenAIProvider("m").classify
    response = httpx2.Response(429, text="<html>slow down</html>", request=httpx2.Request("POST", "http://x"))
    exc = openai.RateLimitError("slow down", response=response, body="<html>slow down</html>")
    assert classify(exc) is retry.ErrorKind.RATE_LIMIT
    quota = openai.RateLimitError("quota", response=response, body={"code": "insufficient_quota"})
    assert classify(quota) is retry.ErrorKind.FATAL


def test_setup_mistakes_fail_fast(data_root, tmp_path, keys):
    """Every request rejected (say, --max-tokens past a small model's context): not a run
    that 'completes' with every score 0, but a stop after the first few failures."""
    too_long = Fault.http(400, message="This model's maximum context length is 4096 tokens.")
    with FakeAPI().run_in_thread() as api:
        api.schedule(*[too_long] * 1000)
        with pytest.raises(FatalProviderError, match="the first 10 requests all failed"):
            run(config_for(api, "openai", data_root, tmp_path, engine=EngineConfig(concurrency=2)))
        assert len(api.calls()) <= 12


def test_content_filter_refusals_are_kept(data_root, tmp_path, keys):
    """A prompt the provider's filter refuses is its answer: cached, so a rerun sends nothing."""
    filtered = Fault.http(400, message="The prompt triggered the content management policy.")
    with FakeAPI().run_in_thread() as api:
        api.schedule(filtered)
        first = run(config_for(api, "openai", data_root, tmp_path, engine=EngineConfig(concurrency=1)))
        sent = len(api.calls())
        again = run(config_for(api, "openai", data_root, tmp_path))
        assert len(api.calls()) == sent
    assert first.json["usage"]["refused"] >= 1 and again.json["usage"]["refused"] == first.json["usage"]["refused"]
    assert again.json["usage"]["requests"] == 0


async def test_rpm_never_puts_more_than_r_requests_in_any_minute(monkeypatch):
    """--rpm R with a fake clock and a sender that stalls now and then (a pause, a slow
    cache): no 60 s window holds more than R requests, nor any window of 60.5 s (what a
    server a little late would count), while the long-run rate stays at R less the margin;
    and a long wait before the first request (reading the cache) is no opening burst."""
    import bisect
    import random

    from rmb_judge import limiter

    clock = {"now": 0.0}
    monkeypatch.setattr(limiter.time, "monotonic", lambda: clock["now"])

    async def fake_sleep(seconds):
        clock["now"] += max(0.0, seconds)

    monkeypatch.setattr(limiter.asyncio, "sleep", fake_sleep)
    async def send(n, stalls):
        rng, rate, sent = random.Random(3), limiter.RequestRate(600), []
        clock["now"] = 30.0  # the cache took half a minute to read
        for _ in range(n):
            if rng.random() < stalls:
                clock["now"] += rng.uniform(0.5, 5.0)  # a stall
            await rate.acquire()
            sent.append(clock["now"])
        return sent

    sent = await send(6000, stalls=0.002)
    assert sent[1] - sent[0] == pytest.approx(0.1)  # paced from the first request
    for window in (60.0, 60.0 + limiter.WINDOW_MARGIN):
        assert max(bisect.bisect_left(sent, t + window) - i for i, t in enumerate(sent)) <= 600
    steady = await send(3000, stalls=0.0)
    assert (len(steady) - 1) / (steady[-1] - steady[0]) * 60 >= 600 * 60 / (60 + limiter.WINDOW_MARGIN) - 1e-6


async def test_token_buckets_pace_requests_and_tokens(monkeypatch):
    """--rpm/--tpm: with a fake clock, 1 unit at the start, then the per-minute rate; a
    token estimate that was too high is refunded, one too low is debt waited out."""
    from rmb_judge import limiter

    clock = {"now": 0.0}
    monkeypatch.setattr(limiter.time, "monotonic", lambda: clock["now"])

    async def fake_sleep(seconds):
        clock["now"] += seconds

    monkeypatch.setattr(limiter.asyncio, "sleep", fake_sleep)
    rpm = limiter.TokenBucket(600)  # 10 per second
    for _ in range(21):
        await rpm.acquire(1)
    assert clock["now"] == pytest.approx(2.0)  # the first at 0, then one every 0.1 s

    clock["now"] = 0.0
    tpm = limiter.TokenBucket(6000)  # 100 tokens per second, capacity 100
    tpm.level = 100.0
    await tpm.acquire(300)  # more than the capacity: admitted once full, leaving debt
    assert clock["now"] == 0.0 and tpm.level == -200.0
    tpm.refund(250)  # the request used only 50 tokens
    await tpm.acquire(100)
    assert clock["now"] == pytest.approx(0.5)  # 50 tokens short at 100/s
