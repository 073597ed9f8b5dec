"""--verdict-probs: token logprobs asked for through the real openai and google-genai SDKs
against the fake server, the verdict token found in the judge's output (after reasoning too),
P(A), P(B), P(tie) averaged over votes and orders, kept with the cached answers, and refused
in one line where no logprobs come."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from conftest import RMB, make_config
from fake_api import FAKE_KEY, FakeAPI, Reply, fake_api, prompt_digest, prompt_text  # noqa: F401

from rmb_judge import cli, migrations, records, verdict_probs
from rmb_judge.cache import FILENAME, Cache, request_key
from rmb_judge.providers.base import ChatRequest
from rmb_judge.providers.google_provider import GoogleProvider, gemini_request
from rmb_judge.providers.mock import extract_pair, stable_hash
from rmb_judge.providers.openai_provider import OpenAIProvider
from rmb_judge.session import run
from rmb_judge.verdicts import parse_verdict

SELECTION = dict(scenarios=["*Chat/Discussion*", "BoN_set/Harmlessness/S3*"], limit=2)


# ---------------------------------------------------------------- reading the verdict token


def token(text: str, logprob: float = -0.001, **alternatives: float) -> verdict_probs.Token:
    return verdict_probs.Token(text, logprob, tuple(alternatives.items()))


def test_the_final_verdict_token_after_reasoning_gives_the_probabilities():
    """Alternatives reading the same verdict add up (" A" and "a"), others are no verdict,
    a verdict left out of the top alternatives counts 0; prose "A"s and an echoed "[[B]]"
    earlier in the text are not the verdict token."""
    text = "Assistant A is a bit better than [[B]] claims.\n\n[[A]]"
    tokens = [token("Assistant"), token(" A", -0.01, **{" A": -0.01, " B": -5.0}), token(" is"), token(" a"),
              token(" bit"), token(" better"), token(" than"), token(" [["), token("B"), token("]]"),
              token(" claims"), token("."), token("\n\n"), token("[["),
              token("A", math.log(0.5), A=math.log(0.5), a=math.log(0.1), B=math.log(0.3), alt=math.log(0.05)),
              token("]]")]
    kept = verdict_probs.keep(text, tokens)
    assert [(k["start"], k["end"], k["token"]) for k in kept] == [(9, 11, "A"), (14, 16, "A"), (35, 36, "B"),
                                                                  (50, 51, "A")]
    probs = verdict_probs.read(text, kept, "rmb", parse_verdict(text, "rmb"))
    assert probs == pytest.approx((0.6 / 0.9, 0.3 / 0.9, 0.0))
    assert verdict_probs.read(text, kept, "rmb", "B") is not None  # [[B]] has its own token
    assert verdict_probs.read("Final verdict: Assistant A", kept, "rmb", "A") is None  # prose: no token
    assert verdict_probs.read(text, None, "rmb", "A") is None and verdict_probs.read(text, kept, "rmb", None) is None


def test_the_stream_is_placed_in_the_text_by_its_bytes():
    """Thinking before the answer and an end-of-turn token after it (vLLM lists both) and a
    character split over two byte tokens (OpenAI's `bytes`) leave the offsets right; a
    stream that does not hold the text keeps nothing."""
    text = "Ça va. [[B]]"
    tokens = [token("<think>"), token("hmm [[A]]"), token("</think>"),
              verdict_probs.Token("bytes:\\xc3", -0.001, (), b"\xc3"),
              verdict_probs.Token("bytes:\\x87", -0.001, (), b"\x87"),
              token("a"), token(" va"), token("."), token(" [["), token("B", math.log(0.8), B=math.log(0.8), C=-3.0),
              token("]]"), token("<|im_end|>")]
    kept = verdict_probs.keep(text, tokens)
    assert [(k["start"], k["end"], k["token"]) for k in kept] == [(1, 2, "A"), (9, 10, "B")]
    assert kept[1]["B"] == pytest.approx(math.log(0.8)) and kept[1]["tie"] == -3.0 and "A" not in kept[1]
    assert verdict_probs.read(text, kept, "rmb", "B") == pytest.approx((0, 0.8 / (0.8 + math.exp(-3)),
                                                                        math.exp(-3) / (0.8 + math.exp(-3))))
    assert verdict_probs.keep("something else", tokens) == []
    # vLLM names a split character by replacement characters, bytes and all: the text after it is placed
    vllm = [token(t.text, t.logprob, **dict(t.top)) if t.raw is None else verdict_probs.Token("\ufffd", -0.001, (),
                                                                                             "\ufffd".encode())
            for t in tokens]
    assert verdict_probs.keep(text, vllm) == kept
    after = "[[B]] Ça"  # a verdict before the last non-ASCII character cannot be placed so
    assert verdict_probs.keep(after, [token("[["), token("B", -0.1, B=-0.1), token("]]"), token(" \ufffd"),
                                      token("\ufffd")]) == []


def test_a_json_verdict_value_is_its_token():
    text = '{"reason": "both fine", "winner": "Assistant B"}'
    pieces = ['{"', "reason", '":', ' "', "both", " fine", '",', ' "', "winner", '":', ' "', "Assistant", " B", '"}']
    tokens = [token(p) for p in pieces]
    tokens[12] = token(" B", math.log(0.7), **{" B": math.log(0.7), " A": math.log(0.2), " tie": math.log(0.1)})
    kept = verdict_probs.keep(text, tokens)
    assert verdict_probs.read(text, kept, "json", "B") == pytest.approx((0.2, 0.7, 0.1))


def test_probabilities_relative_to_the_label_and_over_orders():
    assert verdict_probs.preferred((0.7, 0.2, 0.1), "BA") == (0.2, 0.7, 0.1)
    # AB: the preferred answer wins 0.7 (+ half the tie); BA: it is B, 0.5 (+ half of 0.2)
    assert verdict_probs.right([((0.7, 0.2, 0.1), "AB"), ((0.3, 0.5, 0.2), "BA")]) == pytest.approx(
        (0.75 + 0.6) / 2)
    assert verdict_probs.right([((0.7, 0.2, 0.1), "AB"), (None, "BA")]) is None


# ---------------------------------------------------------------- the wires, through the SDKs


async def test_openai_asks_for_logprobs_and_reads_them(fake_api: FakeAPI):
    """The body carries logprobs and top_logprobs (a batch line is the same body); vLLM's
    way of listing the reasoning's tokens before the answer's is placed right."""
    judge = OpenAIProvider("gpt-4o-mini", base_url=fake_api.openai_url, api_key=FAKE_KEY)
    fake_api.schedule(Reply("[[B]]", thinking="A or B? [[A]] no", probs={"B": 0.6, "A": 0.3, "C": 0.1}))
    request = ChatRequest("gpt-4o-mini", (("user", "hi"),), top_logprobs=5)
    try:
        response = await judge.complete(request, timeout=10)
    finally:
        await judge.aclose()
    [call] = fake_api.calls("openai")
    assert (call.body["logprobs"], call.body["top_logprobs"]) == (True, 5)
    assert verdict_probs.read(response.text, response.logprobs, "rmb", "B") == pytest.approx((0.3, 0.6, 0.1))
    assert request_key("openai", request, "t") != request_key("openai", ChatRequest("gpt-4o-mini", (("user", "hi"),)),
                                                              "t")


async def test_google_asks_for_response_logprobs_and_reads_them(fake_api: FakeAPI):
    judge = GoogleProvider("gemini-2.0-flash", base_url=fake_api.url, api_key=FAKE_KEY)
    fake_api.schedule(Reply("I prefer [[A]]", probs={"A": 0.55, "B": 0.45}))
    request = ChatRequest("gemini-2.0-flash", (("user", "hi"),), top_logprobs=5)
    try:
        response = await judge.complete(request, timeout=10)
    finally:
        await judge.aclose()
    [call] = fake_api.calls("google")
    assert call.body == gemini_request(request)  # the SDK sent exactly the body a batch line holds
    assert (call.body["generationConfig"]["responseLogprobs"], call.body["generationConfig"]["logprobs"]) == (True, 5)
    assert verdict_probs.read(response.text, response.logprobs, "rmb", "A") == pytest.approx((0.55, 0.45, 0.0))


# ---------------------------------------------------------------- whole runs


def sure(answer_a: str, answer_b: str, nth: int) -> tuple[float, float, float]:
    """The fake judge's P(A), P(B), P(C) for a pair of shown answers, at its nth answer to one
    prompt (votes differ)."""
    share = (stable_hash(f"{answer_a.strip()}|{answer_b.strip()}") % 1000) / 1000
    a = min(0.97, 0.05 + 0.9 * share + 0.01 * nth)
    return a, 0.98 - a, 0.02


def probability_judge():
    """A judge that reasons, then states the verdict it gives the most probability."""
    seen: Counter[str] = Counter()

    def respond(body, wire):
        prompt = prompt_text(body, wire)
        nth = seen[prompt_digest(prompt)]
        seen[prompt_digest(prompt)] += 1
        pair = extract_pair(prompt)
        if pair is None:
            return Reply("[[A]]")
        a, b, c = sure(*pair, nth)
        verdict = "A" if a >= b else "B"
        return Reply(f"Assistant A is a fine answer, and so is B.\n\n[[{verdict}]]", probs={"A": a, "B": b, "C": c})

    return respond


def expected(data_root: Path, samples: int) -> dict[tuple[str, str, int | None, str], tuple[float, float, float]]:
    """Each presentation's P(A), P(B), P(tie), from the records and the fake judge's rule alone."""
    dataset = RMB.load(data_root, records.Selection(**SELECTION))
    found = {}
    for comparison in (j for r in dataset.records for j in RMB.judgments(r, "pairwise")):
        key = (comparison.record.subset, comparison.record.uid, comparison.position)
        for order, shown in (("AB", (comparison.preferred, comparison.other)),
                             ("BA", (comparison.other, comparison.preferred))):
            votes = [sure(shown[0].text, shown[1].text, nth) for nth in range(samples)]
            found[(*key, order)] = tuple(sum(v[i] for v in votes) / samples for i in range(3))
    return found


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_a_run_reads_the_probabilities_of_both_orders_and_every_vote_and_a_rerun_reads_them_cached(
        data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    config = dict(judge="openai:gpt-4o-mini", data=data_root, cache=tmp_path / "cache", order="both", samples=3,
                  temperature=1.0, verdict_probs=True, selection=records.Selection(**SELECTION))
    with FakeAPI(probability_judge()).run_in_thread() as api:
        first = run(make_config(out=tmp_path / "out", base_urls=[api.openai_url], **config))
        sent = len(api.calls())
        again = run(make_config(out=tmp_path / "again", base_urls=[api.openai_url], **config))
        assert len(api.calls()) == sent  # the rerun sent nothing
    assert again.json["usage"]["requests"] == 0
    want = expected(data_root, 3)
    got = lines(tmp_path / "out")
    assert len(got) == len(want) and sent == 3 * len({prompt_digest(prompt_text(c.body, "openai"))
                                                       for c in api.calls()})
    for line in got:
        probs = want[(line["category_path"], line["uid"], line["loser_index"], line["order"])]
        assert [line["probs"][k] for k in ("A", "B", "tie")] == pytest.approx(probs)
    assert lines(tmp_path / "again") == [{**line, "cached": True} for line in got]  # the cache kept the logprobs
    calibration = first.json["calibration"]
    assert calibration == again.json["calibration"]
    # Brier, recomputed from the judge's rule: q = P(preferred) + P(tie) / 2, over both orders
    q = []
    for (path, uid, loser, order), (a, _, c) in want.items():
        if order == "AB":
            flipped = want[(path, uid, loser, "BA")]
            q.append(((a + c / 2) + (flipped[1] + flipped[2] / 2)) / 2)
    assert calibration["comparisons"] == len(q) and calibration["without"] == 0
    assert calibration["brier"]["value"] == pytest.approx(sum((1 - x) ** 2 for x in q) / len(q))
    pairs = [(x, 1 - y) for x in q for y in q]  # every right answer against every wrong one
    assert calibration["auroc"]["value"] == pytest.approx(
        sum(1.0 if s > t else 0.5 if s == t else 0.0 for s, t in pairs) / len(pairs))
    for key in ("brier", "ece", "auroc"):
        low, high = calibration[key]["interval"]
        assert low <= calibration[key]["value"] <= high


def test_a_google_run_with_probabilities(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    with FakeAPI(probability_judge()).run_in_thread() as api:
        result = run(make_config(judge="google:gemini-2.0-flash", data=data_root, cache=tmp_path / "c",
                                 out=tmp_path / "out", base_urls=[api.url], verdict_probs=True, order="fixed",
                                 selection=records.Selection(**SELECTION)))
    want = expected(data_root, 1)
    for line in lines(tmp_path / "out"):
        probs = want[(line["category_path"], line["uid"], line["loser_index"], line["order"])]
        assert [line["probs"][k] for k in ("A", "B", "tie")] == pytest.approx(probs)
    assert result.json["calibration"]["comparisons"] == len(want) // 2


@pytest.mark.parametrize("judge", ["openai:gpt-4o-mini", "google:gemini-2.0-flash"])
def test_a_batch_run_has_them_too(judge, data_root, tmp_path, monkeypatch):
    """A batch line is the live request's body, and its answer is read the same way."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    with FakeAPI(probability_judge()).run_in_thread() as api:
        url = api.openai_url if judge.startswith("openai") else api.url
        run(make_config(judge=judge, data=data_root, cache=tmp_path / "c", out=tmp_path / "out", base_urls=[url],
                        verdict_probs=True, batch=True, poll_interval=0.2, order="fixed",
                        selection=records.Selection(**SELECTION)))
        assert api.batches_created == 1
    want = expected(data_root, 1)
    for line in lines(tmp_path / "out"):
        probs = want[(line["category_path"], line["uid"], line["loser_index"], line["order"])]
        assert [line["probs"][k] for k in ("A", "B", "tie")] == pytest.approx(probs)


def test_answers_with_logprobs_are_keyed_apart(data_root, tmp_path, monkeypatch):
    """An answer cached without logprobs holds no probabilities: a --verdict-probs run asks
    again (and its answers, stored with their logprobs, never replace the others)."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    config = dict(judge="openai:gpt-4o-mini", data=data_root, cache=tmp_path / "cache",
                  selection=records.Selection(**SELECTION))
    with FakeAPI(probability_judge()).run_in_thread() as api:
        run(make_config(out=tmp_path / "plain", base_urls=[api.openai_url], **config))
        plain = len(api.calls())
        run(make_config(out=tmp_path / "probs", base_urls=[api.openai_url], verdict_probs=True, **config))
        assert len(api.calls()) == 2 * plain
        run(make_config(out=tmp_path / "plain2", base_urls=[api.openai_url], **config))
        assert len(api.calls()) == 2 * plain
    assert all(line["probs"] is None for line in lines(tmp_path / "plain2"))
    rows = sqlite3.connect(tmp_path / "cache" / FILENAME).execute(
        "SELECT logprobs IS NULL, COUNT(*) FROM responses GROUP BY 1").fetchall()
    assert sorted(rows) == [(0, plain), (1, plain)]


@pytest.mark.parametrize(("argv", "said"), [
    (["--judge", "anthropic:claude-x"], "--verdict-probs: the anthropic API returns no token logprobs"),
    (["--judge", "openai:o3"], "--verdict-probs: openai:o3 is a reasoning model, whose answers come without"),
    (["--judge", "mock"], "--verdict-probs: the mock API returns no token logprobs"),
    (["--judge", "openai:gpt-4o", "--template", "arena-hard"], "--verdict-probs: template arena-hard states"),
    (["--judge", "openai:gpt-4o", "--template", "pointwise"], "--verdict-probs: template pointwise states"),
    (["--judge", "hf:some/model"], "--verdict-probs: not used by a local reward model"),
])
def test_refused_in_one_line_where_no_logprobs_come(argv, said, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    code = cli.main(["run", *argv, "--verdict-probs", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
                     "--data", str(tmp_path / "nodata")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and said in err[0]
    assert not (tmp_path / "c").exists()  # refused before the cache or the data is touched


def test_a_cache_from_before_logprobs_is_upgraded(tmp_path):
    path = tmp_path / FILENAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for fn in migrations.MIGRATIONS[:-1]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    db.execute("INSERT INTO responses (key, sample, endpoint, provider, model, text, created_at)"
               " VALUES ('k', 0, 'local', 'mock', 'm', '[[A]]', 0)")
    db.commit()
    db.close()
    cache = Cache(tmp_path)
    try:
        assert cache.get_responses([("k", 0)], None)["k", 0].logprobs is None
        assert [r["logprobs"] for r in cache.export() if r["kind"] == "response"] == [None]
    finally:
        cache.close()


def test_estimate_assumes_the_verdict_template_s_few_output_tokens(data_root, tmp_path, capsys):
    said = {}
    for template in ("verdict", "rmb"):
        assert cli.main(["estimate", "--judge", "mock", "--template", template, "--data", str(data_root),
                         "--limit", "1", "--scenarios", "*Code*", "--cache", str(tmp_path / "c"), "--json"]) == 0
        said[template] = json.loads(capsys.readouterr().out)["output_tokens_per_request"]
    assert said == {"verdict": 5, "rmb": 250}


@pytest.mark.parametrize("value", ["0", "2.5", '"five"', "true"])
def test_a_template_s_output_tokens_must_be_a_count(value, tmp_path):
    from rmb_judge import templates
    from rmb_judge.errors import UsageError

    path = tmp_path / "mine.toml"
    path.write_text(templates.PROMPTS_DIR.joinpath("verdict.toml").read_text().replace(
        "output_tokens = 5", f"output_tokens = {value}"))
    with pytest.raises(UsageError, match=f"{path}: output_tokens must be a whole number of tokens"):
        templates.load(str(path))


def test_an_answer_echoing_the_key_keeps_its_probabilities(data_root, tmp_path, monkeypatch):
    """The key a server echoes is replaced in the stored answer ("[redacted]" is shorter than
    the key): the verdict token's place in the text moves with it, so the probabilities are
    still read, and as the judge gave them."""
    key = "team-secret-for-the-judge-4242-and-then-some"
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def respond(body, wire):
        pair = extract_pair(prompt_text(body, wire))
        if pair is None:
            return Reply("[[A]]")
        a, b, c = sure(*pair, 0)
        return Reply(f"Your key is {key}. Assistant A is fine.\n\n[[{'A' if a >= b else 'B'}]]",
                     probs={"A": a, "B": b, "C": c})

    with FakeAPI(respond, required_key=key).run_in_thread() as api:
        run(make_config(judge="openai:gpt-4o-mini", data=data_root, cache=tmp_path / "c", out=tmp_path / "out",
                        base_urls=[api.openai_url], verdict_probs=True, order="fixed",
                        selection=records.Selection(**SELECTION)))
    want = expected(data_root, 1)
    got = lines(tmp_path / "out")
    assert got and all("[redacted]" in line["raw"] and key not in line["raw"] for line in got)
    for line in got:
        probs = want[(line["category_path"], line["uid"], line["loser_index"], line["order"])]
        assert line["probs"] is not None, line["raw"]
        assert [line["probs"][k] for k in ("A", "B", "tie")] == pytest.approx(probs)
