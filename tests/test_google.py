"""`google:MODEL` through the real google-genai SDK against FakeAPI's Gemini wire format:
answers, safety blocks, every error class, keys and URLs, the Batch API, and whole runs
(live and batch) whose scores equal an independent computation from the raw data files."""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from conftest import make_config
from fake_api import FAKE_KEY, FakeAPI, Fault, Reply, fake_api, hash_judge, prompt_text  # noqa: F401
from google.genai import errors
from test_scoring import independent_scores

from rmb_judge import records
from rmb_judge.config import EngineConfig
from rmb_judge.errors import FatalProviderError, UsageError
from rmb_judge.judges import parse_spec
from rmb_judge.providers.base import ChatRequest, ChatResponse
from rmb_judge.providers.google_provider import GoogleProvider, gemini_request, to_response
from rmb_judge.providers.mock import approx_tokens, extract_pair, hash_preference
from rmb_judge.retry import BrokenAnswer, ErrorKind, describe
from rmb_judge.session import run

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gemini-2.5-flash"  # a model genai-prices knows
SYSTEM = "Judge fairly."
PAIR = ("[User Question]\nName a colour.\n\n[The Start of Assistant A's Answer]\nRed.\n[The End of Assistant A's "
        "Answer]\n\n[The Start of Assistant B's Answer]\nBlue, a primary colour.\n[The End of Assistant B's Answer]")
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Google variables from the machine running the tests."""
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def judge(fake_api: FakeAPI) -> AsyncIterator[GoogleProvider]:
    provider = GoogleProvider(MODEL, base_url=fake_api.url, api_key=FAKE_KEY)
    yield provider
    await provider.aclose()


def ask(**kw) -> ChatRequest:
    return ChatRequest(MODEL, (("system", SYSTEM), ("user", PAIR)), **kw)


# ---------------------------------------------------------------- answers


async def test_answer_usage_body_and_key(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    request = ask(max_tokens=77, temperature=0.5, json_mode=True)
    response = await judge.complete(request, timeout=10)

    assert response.text == f"[[{hash_preference('Red.', 'Blue, a primary colour.')}]]"
    assert response.input_tokens == approx_tokens(f"{SYSTEM}\n\n{PAIR}")
    assert response.output_tokens == approx_tokens(response.text)
    assert (response.finish_reason, response.refusal, response.model) == ("stop", False, MODEL)
    assert response.endpoint == fake_api.url
    [call] = fake_api.calls("google")
    assert call.path == f"/v1beta/models/{MODEL}:generateContent"  # pinned: the SDK's default is v1
    assert call.body == gemini_request(request)  # what a batch line holds too
    assert call.body["systemInstruction"] == {"parts": [{"text": SYSTEM}], "role": "user"}
    assert call.body["generationConfig"] == {"maxOutputTokens": 77, "temperature": 0.5,
                                             "responseMimeType": "application/json"}
    assert call.headers["x-goog-api-key"] == FAKE_KEY
    assert call.headers["x-server-timeout"] == "10"


async def test_default_temperature_and_model_turns(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    turns = (("user", "hi"), ("assistant", "hello"), ("user", PAIR))
    await judge.complete(ChatRequest(MODEL, turns, max_tokens=5, temperature=None), timeout=10)
    [call] = fake_api.calls()
    assert [c["role"] for c in call.body["contents"]] == ["user", "model", "user"]
    assert call.body["generationConfig"] == {"maxOutputTokens": 5}
    assert "systemInstruction" not in call.body


async def test_thinking_is_left_out_and_billed_as_output(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    thoughts = "A is shorter, but [[A]] would be wrong."
    fake_api.schedule(Reply("[[B]]", thinking=thoughts))
    response = await judge.complete(ask(), timeout=10)
    assert response.text == "[[B]]"
    assert response.output_tokens == approx_tokens("[[B]]") + approx_tokens(thoughts) == fake_api.billed[-1][1]


async def test_safety_blocks_are_refusals(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    fake_api.schedule(Reply("no", refusal=True), Reply("[[A]]", finish="content_filter"),
                      Reply(None, finish="content_filter"))
    prompt, partial, nothing = [await judge.complete(ask(), timeout=10) for _ in range(3)]
    for response in (prompt, partial, nothing):
        assert (response.refusal, response.finish_reason) == (True, "content_filter")
    assert prompt.text == "(blocked by Google's filters: promptFeedback.blockReason SAFETY)"
    assert partial.text == "[[A]]"  # what came before the block is kept, as for OpenAI's content_filter
    assert nothing.text == "(blocked by Google's filters: finishReason SAFETY)"
    assert prompt.input_tokens == approx_tokens(f"{SYSTEM}\n\n{PAIR}")
    for reason in ("PROHIBITED_CONTENT", "RECITATION", "SPII", "BLOCKLIST"):
        blocked = to_response({"candidates": [{"content": {"role": "model"}, "finishReason": reason}]})
        assert blocked.refusal and reason in blocked.text
    # no text for a reason of the model's own: its answer (read as unparsed), not retried and paid again
    for reason in ("OTHER", "MALFORMED_FUNCTION_CALL"):
        ended = to_response({"candidates": [{"content": {"role": "model"}, "finishReason": reason}]})
        assert not ended.refusal and ended.text == f"(no text: finishReason {reason})"
    with pytest.raises(BrokenAnswer):  # an empty STOP is broken: asked again
        to_response({"candidates": [{"content": {"role": "model"}, "finishReason": "STOP"}]})


async def test_finish_reasons_of_the_model_s_own(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    """An answer of thought parts only that ended STOP is the model's answer (read as
    unparsed), not a broken one to pay for again; CONTINUATION is cut off (truncated, what
    came is kept); ESCALATION is a refusal; PUP_LIMITED_DISABLED (the account is limited
    for Prohibited Use Policy violations) stops the run."""
    fake_api.schedule(Reply(None, thinking="Both answers name a colour."),
                      Reply("Assistant B", finish_word="CONTINUATION"),
                      Reply(None, finish_word="CONTINUATION", thinking="hmm"),
                      Reply(None, finish_word="ESCALATION"),
                      Reply(None, finish_word="PUP_LIMITED_DISABLED"))
    thoughts, cut, spent, escalated = [await judge.complete(ask(), timeout=10) for _ in range(4)]
    assert (thoughts.text, thoughts.finish_reason, thoughts.refusal) == (
        "(no text: only thoughts, finishReason STOP)", "stop", False)
    assert thoughts.output_tokens == fake_api.billed[0][1] >= approx_tokens("Both answers name a colour.")  # billed
    assert (cut.text, cut.truncated, cut.refusal) == ("Assistant B", True, False)
    assert (spent.text, spent.truncated) == ("", True)
    assert (escalated.refusal, escalated.finish_reason) == (True, "content_filter")
    assert escalated.text == "(blocked by Google's filters: finishReason ESCALATION)"
    with pytest.raises(FatalProviderError, match="PUP_LIMITED_DISABLED") as caught:
        await judge.complete(ask(), timeout=10)
    assert judge.classify(caught.value) is ErrorKind.FATAL and "\n" not in str(caught.value)
    assert len(fake_api.calls()) == 5


def test_a_judge_that_only_thinks_is_paid_once_per_prompt(data_root, tmp_path, monkeypatch) -> None:
    """Every prompt answered with thought parts only and finishReason STOP: each is sent
    once (not retried, paid up to 9 times), the run is suspect (nothing could be read), and
    a rerun sends nothing."""
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    with FakeAPI(lambda body, wire: Reply(None, thinking="Let me compare the two answers.")).run_in_thread() as api:
        first = run(config(api.url, tmp_path, "t", data=data_root, engine=EngineConfig(backoff_initial=0.01)))
        prompts = {prompt_text(call.body, "google") for call in api.calls()}
        sent = len(api.calls())
        again = run(config(api.url, tmp_path, "t", data=data_root))
        assert len(api.calls()) == sent
    assert sent == len(prompts) == first.json["usage"]["requests"] > 0
    assert first.json["usage"]["failed"] == 0 and first.json["usage"]["unparsed"] == first.json["data"][
        "comparisons_judged"]
    assert first.suspect and again.json["usage"]["requests"] == 0


async def test_truncation(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    """Cut off by maxOutputTokens, with some text or none (thinking took it all): truncated,
    not broken, so not retried."""
    fake_api.schedule(Reply("Assistant A is", finish="length"), Reply(None, finish="length", thinking="hmm"))
    cut, spent = [await judge.complete(ask(), timeout=10) for _ in range(2)]
    assert (cut.text, cut.truncated, cut.refusal) == ("Assistant A is", True, False)
    assert (spent.text, spent.truncated) == ("", True)


async def test_malformed_and_empty_bodies(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    fake_api.schedule(Fault.invalid_json(), Fault.garbage(), Fault.empty())
    for _ in range(2):
        with pytest.raises(BrokenAnswer, match="not JSON") as caught:
            await judge.complete(ask(), timeout=10)
        assert judge.classify(caught.value) is ErrorKind.TRANSIENT
    with pytest.raises(BrokenAnswer, match="empty answer") as caught:
        await judge.complete(ask(), timeout=10)
    assert judge.classify(caught.value) is ErrorKind.TRANSIENT and caught.value.response.input_tokens > 0
    for other in ({"error": "upstream"}, [], {}, {"candidates": []}, {"candidates": [{"content": {"parts": "x"}}]},
                  {"candidates": [{"content": {"parts": [{"text": ["x"]}]}}]}):
        with pytest.raises(BrokenAnswer, match="not a Gemini response"):
            to_response(other)


def test_logprobs_of_another_shape_leave_the_answer_readable() -> None:
    """A `logprobsResult` whose log probabilities are not numbers (null, a string) is not the
    API's: the answer is read without logprobs, as one with none."""
    for bad in (None, "-0.1", [0.1]):
        result = {"chosenCandidates": [{"token": "[[A]]", "logProbability": bad}],
                  "topCandidates": [{"candidates": [{"token": "[[A]]", "logProbability": -0.1}]}]}
        answer = to_response({"candidates": [{"content": {"parts": [{"text": "[[A]]"}]}, "finishReason": "STOP",
                                              "logprobsResult": result}]})
        assert (answer.text, answer.logprobs) == ("[[A]]", None)


# ---------------------------------------------------------------- errors, sorted, sent once


@pytest.mark.parametrize(("fault", "error", "kind"), [
    (Fault.http(429), errors.ClientError, ErrorKind.RATE_LIMIT),
    (Fault.http(429, quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"), errors.ClientError,
     ErrorKind.FATAL),
    (Fault.http(500), errors.ServerError, ErrorKind.TRANSIENT),
    (Fault.http(503), errors.ServerError, ErrorKind.TRANSIENT),
    (Fault.http(504), errors.ServerError, ErrorKind.TRANSIENT),
    (Fault.http(400), errors.ClientError, ErrorKind.FATAL),
    (Fault.http(400, message="The input token count (1200000) exceeds the maximum number of tokens allowed "
                             "(1048576)."), errors.ClientError, ErrorKind.REJECTED),
    (Fault.http(403), errors.ClientError, ErrorKind.FATAL),
    (Fault.http(404), errors.ClientError, ErrorKind.FATAL),
])
async def test_http_errors_are_sorted_and_not_retried_by_the_sdk(
    judge: GoogleProvider, fake_api: FakeAPI, fault: Fault, error: type, kind: ErrorKind
) -> None:
    fake_api.schedule(fault)
    with pytest.raises(error) as caught:
        await judge.complete(ask(), timeout=10)
    assert judge.classify(caught.value) is kind
    assert describe(caught.value).startswith(f"HTTP {fault.status}: ")
    assert len(fake_api.calls()) == 1  # the engine retries, never the SDK


async def test_retry_after_from_retry_info_or_a_header(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    fake_api.schedule(Fault.http(429, retry_after=37), Fault.http(503, retry_after_raw="4"), Fault.http(503))
    waits = []
    for _ in range(3):
        with pytest.raises(errors.APIError) as caught:
            await judge.complete(ask(), timeout=10)
        waits.append(judge.retry_after(caught.value))
    assert waits == [37.0, 4.0, None]


async def test_transport_failures_are_not_retried_by_the_sdk(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    """A hang times out, a dropped connection and a refused one fail at once: without
    HttpRetryOptions(attempts=1) the SDK's aiohttp transport retries the last two after 1-10 s."""
    fake_api.schedule(Fault.hang(30), Fault.reset())
    started = time.monotonic()
    with pytest.raises(TimeoutError) as hang:
        await judge.complete(ask(), timeout=0.3)
    with pytest.raises(aiohttp.ClientError) as reset:
        await judge.complete(ask(), timeout=10)
    assert time.monotonic() - started < 5 and len(fake_api.calls()) == 2
    assert judge.classify(hang.value) is judge.classify(reset.value) is ErrorKind.TRANSIENT
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}"
    nobody = GoogleProvider(MODEL, base_url=closed, api_key=FAKE_KEY)
    started = time.monotonic()
    with pytest.raises(aiohttp.ClientConnectorError) as refused:
        await nobody.complete(ask(), timeout=10)
    await nobody.aclose()
    assert time.monotonic() - started < 1 and nobody.classify(refused.value) is ErrorKind.CONNECT


async def test_wrong_key_is_fatal_and_never_repeated(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    fake_api.required_key = "AIza-the-right-one-000000"
    with pytest.raises(errors.ClientError) as caught:
        await judge.complete(ask(), timeout=10)
    assert judge.classify(caught.value) is ErrorKind.FATAL
    assert "API key not valid" in describe(caught.value) and FAKE_KEY not in describe(caught.value)


# ---------------------------------------------------------------- keys and URLs from the environment


async def test_missing_key_fails_on_first_use_naming_both_variables(fake_api: FakeAPI) -> None:
    provider = GoogleProvider(MODEL, base_url=fake_api.url)  # constructing needs no key (--offline)
    with pytest.raises(FatalProviderError, match="GOOGLE_API_KEY or GEMINI_API_KEY") as caught:
        await provider.complete(ask(), timeout=10)
    assert "\n" not in str(caught.value) and fake_api.requests == []
    await provider.aclose()


@pytest.mark.parametrize("variables", [["GEMINI_API_KEY"], ["GOOGLE_API_KEY"], ["GOOGLE_API_KEY", "GEMINI_API_KEY"]])
async def test_key_base_url_and_api_from_the_environment(
    fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch, variables: list[str]
) -> None:
    """GOOGLE_API_KEY wins over GEMINI_API_KEY, as in Google's SDK; GOOGLE_GEMINI_BASE_URL is
    the endpoint; GOOGLE_GENAI_USE_VERTEXAI does not move the judge to Vertex AI."""
    for name in variables:
        monkeypatch.setenv(name, f"{name}-value-0123")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_api.url)
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    provider = GoogleProvider(MODEL)
    response = await provider.complete(ask(), timeout=10)
    await provider.aclose()
    assert response.text in ("[[A]]", "[[B]]") and provider.endpoints == (fake_api.url,)
    [call] = fake_api.calls("google")
    assert call.headers["x-goog-api-key"] == f"{variables[0]}-value-0123"


@pytest.mark.parametrize("suffix", ["/v1beta", "/v1", "/v1beta/openai/", "/V1BETA"])
def test_a_base_url_with_the_api_version_is_one_line(suffix: str) -> None:
    """Google's REST base (or the one `openai:` uses for Gemini) would 404 on every request."""
    provider = GoogleProvider(MODEL, base_url=f"https://generativelanguage.googleapis.com{suffix}", api_key=FAKE_KEY)
    with pytest.raises(UsageError, match="give the server's root, without the API version"):
        provider.prepare()
    GoogleProvider(MODEL, base_url="https://proxy.example/v1beta-gateway", api_key=FAKE_KEY).prepare()


# ---------------------------------------------------------------- the Batch API


def items(n: int) -> list[tuple[str, ChatRequest]]:
    return [(f"item-{i}", ChatRequest(MODEL, (("system", "Judge."), ("user", f"question {i}")), max_tokens=50))
            for i in range(n)]


async def test_batch_submit_poll_results_with_partial_failure(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    fake_api.schedule(None, Fault.http(400), Reply("no", refusal=True), Reply("[[B]]", finish="length"))
    batch = items(4)
    batch_id = await judge.submit_batch(batch, "rmb-judge-test", 10)

    source = fake_api.batches[batch_id.removeprefix("batches/")].input_file_id
    sent = [json.loads(line) for line in fake_api.files[source].splitlines()]
    assert sent == [{"key": cid, "request": gemini_request(request)} for cid, request in batch]
    assert fake_api.batches_created == 1 and fake_api.calls() == []  # nothing through the live endpoint

    running = await judge.poll_batch(batch_id, 10)
    assert (running.state, running.done, running.provider_state) == ("in_progress", False, "running")
    ended = await judge.poll_batch(batch_id, 10)
    assert (ended.state, ended.done, ended.provider_state) == ("ended", True, "succeeded")

    found = await judge.batch_results(batch_id, 10)
    assert set(found) == {"item-0", "item-1", "item-2", "item-3"}
    first, refused, truncated = found["item-0"], found["item-2"], found["item-3"]
    assert isinstance(first, ChatResponse) and first.text in ("[[A]]", "[[B]]") and first.input_tokens > 0
    assert found["item-1"] == "400: Request contains an invalid argument."
    assert isinstance(refused, ChatResponse) and refused.refusal
    assert isinstance(truncated, ChatResponse) and (truncated.text, truncated.truncated) == ("[[B]]", True)


async def test_expired_batch_ends_without_results(judge: GoogleProvider, fake_api: FakeAPI) -> None:
    fake_api.schedule(Fault.expired())
    batch_id = await judge.submit_batch(items(2), "rmb-judge-test", 10)
    await judge.poll_batch(batch_id, 10)
    ended = await judge.poll_batch(batch_id, 10)
    assert (ended.state, ended.provider_state) == ("ended", "expired")
    assert await judge.batch_results(batch_id, 10) == {}


def test_prices_come_from_genai_prices() -> None:
    """gemini-2.5-flash: $0.30 in / $2.50 out per million tokens; the Batch API half."""
    assert GoogleProvider.price(MODEL, 1_000_000, 0) == pytest.approx(0.30)
    assert GoogleProvider.price(MODEL, 0, 1_000_000) == pytest.approx(2.50)
    assert GoogleProvider.price(f"models/{MODEL}", 1_000_000, 1_000_000, batch=True) == pytest.approx(1.40)
    assert GoogleProvider.price("gemini-my-tuned-model", 1000, 100) is None  # unknown: never guessed


# ---------------------------------------------------------------- whole runs


def google_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    return {**env, "GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": FAKE_KEY}


def test_cli_run_scores_equal_independent_computation_then_cached(data_root, tmp_path) -> None:
    """A fake server process this run has never seen; the rerun, with the server gone, sends
    nothing; the key is nowhere in the cache or the run folder."""
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_api.py"), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    limit = 2
    args = [sys.executable, "-m", "rmb_judge.cli", "run", "--judge", f"google:{MODEL}", "--data", str(data_root),
            "--limit", str(limit), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-progress",
            "--price", "published"]  # (the fake server stands for Google's API)
    try:
        done = subprocess.run(args, env=google_env(url), capture_output=True, text=True, timeout=300)
    finally:
        server.terminate()
        server.wait(10)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected, per_scenario = independent_scores(data_root, limit)
    assert summary["complete"] and summary["judge"] == f"google:{MODEL}"
    assert summary["scores"] == pytest.approx(expected, abs=1e-12)
    assert {s["category_path"]: s["accuracy"] for s in summary["scenarios"]} == pytest.approx(per_scenario, abs=1e-12)
    usage = summary["usage"]
    assert usage["requests"] > 0 and usage["cost_usd"] == pytest.approx(
        GoogleProvider.price(MODEL, usage["input_tokens"], usage["output_tokens"]), rel=1e-9)
    again = subprocess.run(args, env=google_env(url), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rerun = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert rerun["usage"]["requests"] == 0 and rerun["scores"] == summary["scores"]
    assert rerun["usage"]["cache_hits"] == summary["data"]["comparisons_judged"]
    for path in [*(tmp_path / "cache").iterdir(), *(tmp_path / "out").iterdir()]:
        assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY not in done.stdout + done.stderr + again.stdout + again.stderr


SELECTION = dict(limit=2, scenarios=["*Chat*", "*Harmlessness/S3"])


def config(url, tmp_path, name, **kw):
    """The fake server stands for Google's API: priced as published (--price published)."""
    return make_config(judge=parse_spec(f"google:{MODEL}"), data=kw.pop("data"), out=tmp_path / f"{name}_out",
                       cache=tmp_path / f"{name}_cache", base_urls=[url], selection=records.Selection(**SELECTION),
                       price="published", **kw)


def test_batch_run_equals_live_run_and_a_rerun_sends_nothing(data_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    with FakeAPI(batch_polls=2).run_in_thread() as api:
        live = run(config(api.url, tmp_path, "live", data=data_root))
        api.requests.clear()
        batched = run(config(api.url, tmp_path, "batch", data=data_root, batch=True, poll_interval=0.05))
        assert api.batches_created == 1 and api.calls() == []
        again = run(config(api.url, tmp_path, "batch", data=data_root))
        assert api.calls() == []
    assert live.complete and batched.complete
    assert batched.json["scores"] == live.json["scores"] and again.json["scores"] == live.json["scores"]
    assert again.json["usage"]["requests"] == 0
    usage = batched.json["usage"]
    assert usage["cost_usd"] == pytest.approx(
        GoogleProvider.price(MODEL, usage["input_tokens"], usage["output_tokens"], batch=True), rel=1e-9)
    assert usage["cost_usd"] == pytest.approx(live.json["usage"]["cost_usd"] / 2, rel=1e-9)


def test_a_batch_killed_while_polling_is_resumed_not_resubmitted(data_root, tmp_path) -> None:
    with FakeAPI(batch_seconds=4).run_in_thread() as api:
        args = [sys.executable, "-m", "rmb_judge.cli", "run", "--judge", f"google:{MODEL}", "--data", str(data_root),
                "--limit", "2", "--scenarios", "*Chat*", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                "--batch", "--poll-interval", "0.2", "--no-progress", "--base-url", api.url]
        proc = subprocess.Popen(args, env=google_env(api.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not api.batches_created and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # recorded in the cache the moment it was created
        proc.kill()
        proc.wait()
        assert api.batches_created == 1
        done = subprocess.run(args, env=google_env(api.url), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert api.batches_created == 1 and api.calls() == []  # resumed, not resubmitted nor sent live
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["complete"] and summary["usage"]["failed"] == 0


def test_blocked_prompts_are_counted_as_refusals_and_cached(data_root, tmp_path, monkeypatch) -> None:
    """The server blocks every prompt showing the best answer of a file's first record:
    exactly the comparisons showing one of those answers (counted from the raw files) are
    refusals, not failures or unparsed answers, and a rerun does not ask again."""
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    pairs, blocked = [], set()
    for path in sorted(data_root.rglob("*.json")):
        rel = path.relative_to(data_root).as_posix().removesuffix(".json")
        if any(fnmatch.fnmatch(rel, pattern) for pattern in SELECTION["scenarios"]):
            for i, item in enumerate(json.loads(path.read_text())[:SELECTION["limit"]]):
                if rel.startswith("Pairwise_set"):
                    best, others = item["chosen"]["answer"], [item["reject"]["answer"]]
                else:
                    best, others = item["bon_best"]["answer"], [loser["answer"] for loser in item["loser_list"]]
                pairs += [{best.strip(), other.strip()} for other in others]
                if i == 0:
                    blocked.add(best.strip())
    expected = sum(bool(pair & blocked) for pair in pairs)

    def respond(body, wire):
        shown = extract_pair(prompt_text(body, wire))
        if shown and {answer.strip() for answer in shown} & blocked:
            return Reply("I can't judge this.", refusal=True)
        return hash_judge(body, wire)

    with FakeAPI(respond).run_in_thread() as api:
        first_run = run(config(api.url, tmp_path, "r", data=data_root))
        sent = len(api.calls())
        again = run(config(api.url, tmp_path, "r", data=data_root))
        assert len(api.calls()) == sent  # refusals are answers: cached, not asked again
    usage = first_run.json["usage"]
    assert 0 < expected < len(pairs) == first_run.json["data"]["comparisons_judged"]
    assert usage["refused"] == expected and usage["failed"] == usage["unparsed"] == 0
    assert again.json["usage"]["refused"] == expected and again.json["usage"]["requests"] == 0


@pytest.mark.parametrize(("fault", "said"), [
    (Fault.http(403), "HTTP 403: The caller does not have permission"),
    (Fault.http(429, quota_id="GenerateRequestsPerDayPerProjectPerModel"), "HTTP 429: You exceeded your current quota"),
    (Reply(None, finish_word="PUP_LIMITED_DISABLED"), "finishReason PUP_LIMITED_DISABLED"),
])
def test_fatal_answers_stop_the_run_at_once(data_root, tmp_path, monkeypatch, fault, said) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    with FakeAPI().run_in_thread() as api:
        api.schedule(*[fault] * 1000)
        with pytest.raises(FatalProviderError) as stopped:
            run(config(api.url, tmp_path, "fatal", data=data_root, engine=EngineConfig(concurrency=4)))
        sent = len(api.calls())
    assert said in str(stopped.value) and "\n" not in str(stopped.value) and FAKE_KEY not in str(stopped.value)
    assert sent <= 4  # no retries: at most the requests already in flight


def test_google_import_is_lazy() -> None:
    """Resolving a google: spec (as --help, estimate and --offline do) imports no SDK."""
    code = ("import sys; from rmb_judge.judges import parse_spec; spec = parse_spec('google:gemini-2.5-flash');"
            "spec.provider_class.price('gemini-2.5-flash', 1, 1); print('google.genai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_module_has_no_event_loop_leak() -> None:
    """aclose closes the SDK's aiohttp session: no 'Unclosed client session' at exit."""
    code = ("import asyncio, sys; sys.path.insert(0, 'tests');"
            "from fake_api import FakeAPI, FAKE_KEY;"
            "from rmb_judge.providers.google_provider import GoogleProvider;"
            "from rmb_judge.providers.base import ChatRequest\n"
            "async def main():\n"
            "    async with FakeAPI() as api:\n"
            "        p = GoogleProvider('m', base_url=api.url, api_key=FAKE_KEY)\n"
            "        await p.complete(ChatRequest('m', (('user', 'hi'),)), timeout=10)\n"
            "        await p.aclose()\n"
            "asyncio.run(main())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "Unclosed" not in done.stderr, done.stderr
