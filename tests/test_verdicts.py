"""Reading verdicts, ratings and refusals from judge text (rmb_judge.verdicts)."""

import json
import re
from pathlib import Path

import pytest

from rmb_judge import benchmarks
from rmb_judge.verdicts import (
    looks_like_refusal,
    parse_rating,
    parse_verdict,
    verdict_from_ratings,
    verdict_style_names,
)

DATA = Path(__file__).parent / "data"

RMB_INSTRUCTIONS = (
    'After providing your explanation, output your final verdict by strictly following this '
    'format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better.'
)


def test_style_names():
    """The built-in styles, then those the benchmarks register once every one is loaded."""
    benchmarks.every()
    names = verdict_style_names()
    assert names[:3] == ("rmb", "arena-hard", "json") and names[-1] == "pointwise"
    assert {"judgebench-arena-hard", "judgebench-vanilla"} <= set(names)


def test_unknown_style_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown verdict style 'mt-bench'.*rmb, arena-hard"):
        parse_verdict("[[A]]", "mt-bench")


def test_pointwise_style_points_to_ratings():
    with pytest.raises(ValueError, match="parse_rating.*verdict_from_ratings"):
        parse_verdict("Rating: [[7]]", "pointwise")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Assistant A is more accurate.\n\n[[A]]", "A"),
        ("Final verdict: [[B]]", "B"),
        ("**[[A]]**", "A"),
        ("__[[B]]__", "B"),
        ("`[[B]]`", "B"),
        ("[[ a ]]", "A"),
        ("[[Assistant B]]", "B"),
        ("My verdict is [[Response A]].", "A"),
        ("Both are equally good. [[C]]", "tie"),
        ("[[tie]]", "tie"),
        ("Both answers are fine; it's a tie.", "tie"),
        ("It is a tie.", "tie"),
        ("I would not say it's a tie.", None),
        ("I wouldn't call it a tie, but if forced, it's a tie.", None),
        # The echoed format instructions do not count; the verdict that follows does.
        (RMB_INSTRUCTIONS + "\n\nAssistant B follows the request.\n\n[[B]]", "B"),
        ('"[[A]]" if A is better, "[[B]]" if B is better, "[[C]]" for a tie. Verdict: [[B]]', "B"),
        # The final stated verdict counts.
        ("At first I leaned to [[A]].\nOn reflection B is complete.\nFinal verdict: [[B]]", "B"),
        ("[[B]]\n\nExplanation: B cites its sources; [[B]] is better.", "B"),
        # Conflicting final statements are no verdict.
        ("I cannot decide: [[A]] or [[B]]", None),
        ("[[A]]\n[[A]] [[B]]", None),
        # Prose without brackets, when it says who is better.
        ("Final Verdict: Assistant A is better", "A"),
        ("**Final verdict:** Assistant B is significantly better.", "B"),
        ("After weighing both, the winner is Assistant B.", "B"),
        ("Verdict: A", "A"),
        ("The better response is Assistant B's.", "B"),
        ("My final verdict is tie.", "tie"),
        # Never guess.
        ("Verdict: Assistant A is worse than B.", None),
        ("Assistant A is better in some ways and Assistant B in others.", None),
        ("The final decision is a hard one.", None),
        ("Final verdict: [[D]]", None),
        ("", None),
        (RMB_INSTRUCTIONS, None),
    ],
)
def test_rmb(text, expected):
    assert parse_verdict(text, "rmb") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("My final verdict is: [[A>>B]]", "A"),
        ("My final verdict is: Assistant A is slightly better: [[A>B]].", "A"),
        ("My final verdict is tie: [[A=B]]", "tie"),
        ("Assistant B is slightly better: [[B>A]]", "B"),
        ("**My final verdict is: [[B>>A]]**", "B"),
        ("[[A≫B]]", "A"),
        ("[[B ≫ A]]", "B"),
        ("[[ b>a ]]", "B"),
        ("[[A<B]]", "B"),
        ("[[B<<A]]", "A"),
        ("[[B=A]]", "tie"),
        # arena-hard-auto reads several different labels as no verdict; the final one counts here.
        ("Leaning [[A>B]] at first.\n\nMy final verdict is: [[A>>B]]", "A"),
        (
            "1. Assistant A is significantly better: [[A>>B]]\n"
            "2. Assistant A is slightly better: [[A>B]]\n"
            "3. Tie, relatively the same: [[A=B]]\n"
            "4. Assistant B is slightly better: [[B>A]]\n"
            "5. Assistant B is significantly better: [[B>>A]]\n\n"
            'Example output: "My final verdict is tie: [[A=B]]".\n\n'
            "Assistant B handles the edge cases.\n\nMy final verdict is: [[B>A]]",
            "B",
        ),
        ("My final verdict is: [[A>B]] or [[A=B]]", None),
        ("Final verdict: [[A>=B]]", None),
        ("Final verdict: [[A]]", None),  # an rmb label is not an arena-hard label ...
        ("My final verdict is: Assistant A is slightly better.", "A"),  # ... but prose still reads
        ("No clear winner here.", None),
    ],
)
def test_arena_hard(text, expected):
    assert parse_verdict(text, "arena-hard") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"winner": "A"}', "A"),
        ('```json\n{"reasoning": "B cites sources.", "winner": "B"}\n```', "B"),
        ('Here is my decision:\n{"Verdict": "tie"}\nThanks.', "tie"),
        ('{"better_response": "Assistant A"}', "A"),
        ('{"winner": "Response B"}', "B"),
        ('{"WINNER": "draw"}', "tie"),
        ('{"winner": "A>B"}', "A"),
        # Echoed schema first, the real object last.
        ('Answer as {"winner": "A"} or {"winner": "B"}.\n\n{"winner": "B"}', "B"),
        ('{"winner": "A or B or tie"}\n{"winner": "A"}', "A"),
        ('{"result": {"winner": "B"}}', "B"),
        # Broken JSON still names the side in a key-value pair.
        ("{'winner': 'A',}", "A"),
        ('{"winner": "B", "reason": "cut off mid-sent', "B"),
        # No JSON at all: the prose rules.
        ("Final verdict: Assistant B is better.", "B"),
        ('Respond with {"winner": "A" | "B" | "tie"}', None),
        ('{"winner": null}', None),
        ('{"score": 7}', None),
        ("not json", None),
    ],
)
def test_json(text, expected):
    assert parse_verdict(text, "json") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is correct.\n\nRating: [[7]]", 7.0),
        ("Rating: [[7.5]]", 7.5),
        ("[[8/10]]", 8.0),
        ("**Rating:** 7", 7.0),
        ("Score: 7", 7.0),
        ("Score: 6/10", 6.0),
        ("I would give it a rating of 9.", 9.0),
        ("Overall this deserves 7/10.", 7.0),
        ("7 out of 10", 7.0),
        ("Rating: [10]", 10.0),
        # Brackets are trusted over loose numbers elsewhere in the text.
        ("It covers 3/10 of the steps. Rating: [[4]]", 4.0),
        # The echoed example is not the rating; the final one counts.
        ('Use the format "[[rating]]", for example: "Rating: [[5]]".\n\nRating: [[8]]', 8.0),
        ("Rating: [[3]]\n\nOn reflection, Rating: [[4]]", 4.0),
        ("Rating: [[3]] or [[4]]", None),
        ("Score: 4/5", None),
        ("Rating: [[85]]", None),
        ("Score: 100", None),
        ("Good answer.", None),
    ],
)
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize(
    "a, b, expected",
    [(8, 6, "A"), (3.5, 7, "B"), (5, 5.0, "tie"), (None, 7, None), (7, None, None)],
)
def test_verdict_from_ratings(a, b, expected):
    assert verdict_from_ratings(a, b) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I’m sorry, but I can’t assist with this request.",
        "I cannot evaluate this content.",
        "I won't assist with comparing these responses.",
        "Sorry, I am unable to judge this conversation because it involves self-harm.",
        "As an AI language model, I must decline to rate this.",
        "**I'm not able to help with that.**",
    ],
)
def test_refusals(text):
    assert looks_like_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "Assistant B refuses to help, so [[A]]",
        "I'm sorry, but I can't help with that. Still, judged on helpfulness: [[B]]",
        'Assistant A says "I cannot help with that." Final verdict: Assistant B is better.',
        "I cannot determine which is better: both answers are identical.",
        "Assistant A is better.",
        "",
    ],
)
def test_not_refusals(text):
    assert not looks_like_refusal(text)


# --- held-out real judgments --------------------------------------------------------------

_ARENA_HARD_REGEX = re.compile(r"\[\[([AB<>=]+)\]\]")
_ARENA_HARD_LABELS = {"A>>B": "A", "A>B": "A", "A=B": "tie", "B>A": "B", "B>>A": "B"}


def arena_hard_get_score(judgment: str) -> str | None:
    """arena-hard-auto's own reading: its regex, and exactly one distinct label or nothing."""
    labels = {m for m in _ARENA_HARD_REGEX.findall(judgment) if m != ""}
    return labels.pop() if len(labels) == 1 else None


def _records(name):
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def test_fixture_excerpts_keep_arena_hard_auto_reading():
    """The stored label (arena-hard-auto's reading of the full judgment) matches its excerpt."""
    stored = [r for r in _records("arena_hard_judgments.jsonl") if r.get("score") is not None]
    assert len(stored) >= 50
    assert all(arena_hard_get_score(r["text"]) == r["score"] for r in stored)


def test_held_out_agreement_with_arena_hard_auto():
    """Acceptance: agree with the benchmark's reading on >= 99% of its definite verdicts."""
    records = _records("arena_hard_judgments.jsonl")
    definite = [
        (r["id"], _ARENA_HARD_LABELS[label], parse_verdict(r["text"], "arena-hard"))
        for r in records
        if (label := arena_hard_get_score(r["text"])) in _ARENA_HARD_LABELS
    ]
    disagreements = [(uid, ref, ours) for uid, ref, ours in definite if ours != ref]
    agreement = 1 - len(disagreements) / len(definite)
    print(f"arena-hard held-out agreement: {agreement:.4f} on {len(definite)} judgments")
    assert len(definite) >= 80
    assert agreement >= 0.99, disagreements


def test_held_out_mt_bench_readings():
    """MT-Bench single ratings (`[[n]]`) and FastChat's pair reading (`"[[A]]" in judgment`)."""
    for record in _records("mt_bench_judgments.jsonl"):
        if record["style"] == "pointwise":
            assert parse_rating(record["text"]) == record["reading"], record["id"]
        else:
            assert parse_verdict(record["text"], record["style"]) == record["reading"], record["id"]


# --- long repetitive output -----------------------------------------------------------------
# Readings only: bin/bench-verdicts times these shapes (timings are never asserted here).

N = 10_000
PROSE = "Assistant A explains the steps clearly, while Assistant B skips one. Both are polite. "


@pytest.mark.parametrize(
    "text, style, expected",
    [
        ("[[A]] " * N, "rmb", "A"),
        ("[[A]] " * N + "\n[[B]]", "rmb", "B"),
        ("[[A]] " * N + "[[B]]", "rmb", None),  # the last line states two verdicts
        ("[[A]]\n" * N + "[[B]]", "rmb", "B"),
        ("[[A]]\n" * N + "[[A]] [[B]]", "rmb", None),
        ("**[[B]]** " * N, "rmb", "B"),
        ("[[" * 5 * N, "rmb", None),
        ("[[A" * N, "rmb", None),
        ("[[ " * N + "[[B]]", "rmb", "B"),
        ("[[A>B]] " * N, "arena-hard", "A"),
        ("[[A>B]] " * N + "\nMy final verdict is: [[B>>A]]", "arena-hard", "B"),
        ("[[A>B]]\n" * N + "[[A>B]] [[A=B]]", "arena-hard", None),
        ("[[A" + "=" * N, "arena-hard", None),
        ('{"winner": "A"} ' * N, "json", "A"),
        ('{"winner": "A"} ' * N + '{"winner": "B"}', "json", "B"),
        ('{"winner": "A"}\n' * N + "Final verdict: Assistant B is better.", "json", "A"),
        ("{" * 10 * N, "json", None),
        ("{" * 10 * N + '{"winner": "B"}' + "}" * 10 * N, "json", "B"),
        ('{"winner": "A" x ' * N, "json", None),  # neither an object nor a clean pair
        ('{"winner": "A", ' * N, "json", "A"),  # never closed: the pair is read
        ('{"a": 1 x ' * N + '{"winner": "B"}' + "}" * N, "json", "B"),
        ('{"a": "{' * N + '"winner": "B"}', "json", "B"),
        ('{":{" : ' * N, "json", None),
        ('"' * N + '{"winner": "B"}', "json", "B"),
    ],
)
def test_long_repetitive_output(text, style, expected):
    assert parse_verdict(text, style) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Rating: [[7]] " * N, 7.0),
        ("Rating: [[7]] " * N + "\nRating: [[3]]", 3.0),
        ("Rating: [[7]] " * N + "Rating: [[3]]", None),
        ("7/10 " * N, 7.0),
        ("Score: 4/5 " * N + "\nScore: 6", 6.0),
        ("[[" * N + "7", None),
        ("Rating:" + " " * 10 * N + "7", 7.0),
        ("Rating" + " " * 10 * N + "x", None),
        ("Rating: 7" + " " * 10 * N + "/5", None),
    ],
)
def test_long_repetitive_ratings(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # The rules look back over the whole sentence, however long.
        ("For example, " + "[[A]] " * N, None),
        ("For example, [[A]]. " * N + "[[B]]", "B"),
        ("I wouldn't say " + "it's a tie " * N, None),
        ("it's a tie " * N, "tie"),
        ("Final verdict:" + " " * 10 * N + "Assistant B is better.", "B"),
        ("Verdict" + " " * 10 * N + "x", None),
        ("My final verdict is" + " " * 10 * N + "tie", "tie"),
        (PROSE * N, None),
        (PROSE * N + "\nFinal verdict: Assistant B is better.", "B"),
        ("a" + "_" * 10 * N + "b [[A]]", "A"),
        ("verdict " * N, None),
    ],
)
def test_long_sentences_and_blanks(text, expected):
    assert parse_verdict(text, "rmb") == expected


def test_long_refusals():
    assert looks_like_refusal("I'm sorry, but I can't help with that. " * N)
    assert not looks_like_refusal("I cannot evaluate this content. " * N + "[[A]]")
    assert not looks_like_refusal("I cannot evaluate this content. " * N + '{"winner": "B"}')
    assert not looks_like_refusal("[[A]] " * N)


def test_echo_word_running_into_the_mention():
    """A word cut short by the mention still counts as said before it in its sentence."""
    assert parse_rating("for example7/10") is None
    assert parse_rating("for example 7/10") is None
    assert parse_rating("for examples 7/10. Overall 8/10") == 8.0


# --- JSON objects: json's own grammar, at any depth -------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "1", "-0.5e+3", "1E5", "01", "1.", ".5", "-", "- 1", "true", "tru", "null", "NaN",
        "Infinity", "-Infinity", "-NaN", '"\\u00e9\\n\\""', '"\\x"', '"\\u12"', '"a\tb"',
        '"\\ud800"', "[]", "[1, 2]", "[1,]", "[,1]", "{}", '{"a": {}}', '{"a" 1}', '{"a": 1,}',
        "{1: 2}", '[{"b": [null]}]', "[" * 50 + "]" * 50, "[" * 50 + "]" * 49,
    ],
)  # fmt: skip
def test_json_objects_follow_json_grammar(value):
    # "\u0042" names B only once decoded, so only a whole JSON object can read it.
    text = '{"winner": "\\u0042", "x": ' + value + "}"
    try:
        json.loads(text)
    except ValueError:
        expected = None
    else:
        expected = "B"
    assert parse_verdict(text, "json") == expected
    assert parse_verdict('Noise { "{ \\" " ' + text + " } ]", "json") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # Nested deeper than json itself can (RecursionError): still read.
        ('{"winner": "\\u0041", "x": ' + "[" * 5000 + "]" * 5000 + "}", "A"),
        ('{"a": ' * 5000 + '{"winner": "\\u0041"}' + "}" * 5000, None),  # not top-level
        ('{"a": ' * 5000 + '{"winner": "\\u0041"}', "A"),  # the outer ones never close
        # A "{" inside what began as a string: read on its own once the outer one fails.
        ('{"a": "{"winner": "\\u0042"} x', "B"),
        ('{"a": "{\\"winner\\": \\"\\u0042\\"}", "winner": "\\u0041"}', "A"),
        ('{"a": {"winner": "\\u0042"} x', "B"),
        ('{"a": {"winner": "\\u0042"}}', None),
        ('{"winner": "\\u0042", "winner": "\\u0041"}', "A"),  # a repeated key: the last value
    ],
)
def test_json_object_nesting(text, expected):
    assert parse_verdict(text, "json") == expected
