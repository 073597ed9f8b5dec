"""RewardBench 2's rules against the official code (tests/rewardbench2_official.py, verbatim) on
spec16's vectors and on random scores of fixture rows; its templates byte for byte; its data
checks and selection (Ties by prompt id)."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import warnings
from pathlib import Path

import pytest
import rb2_fixture
from rewardbench2_official import (
    Dataset,
    parse_rating,
    process_judgement,
    process_shuffled,
    process_single_model,
    ratings_result,
    reroll_result,
    shuffle,
)

from rmb_judge import benchmarks, cli, templates
from rmb_judge.benchmarks.rewardbench2 import (
    SWAPS,
    best_of_n,
    four_way_verdict,
    prompt_stats,
    rating_verdict,
    ties_score,
)
from rmb_judge.errors import DataError
from rmb_judge.judgments import Presentation, Ranking
from rmb_judge.providers.mock import simulated_reply
from rmb_judge.records import Selection

RB2 = benchmarks.get("rewardbench2")
VECTORS = Path("/work/notes/scratch/rb2/ties_vectors.json")
# spec16 3.4: the official Ties scores of its four vectors (rows: id, num_correct, scores)
TIES_VECTORS = {
    "T1_perfect": ({"ref:0": (1, [5.0, 1.0, 0.0]), "tied:0": (3, [5.0, 4.9, 4.8, 1.0, 0.0]), "ref:1": (1, [2.0, 0.0]),
                    "tied:1": (2, [2.0, 2.0, 0.0])}, 1.01),
    "T2_mixed": ({"ref:0": (1, [5.0, 1.0, 0.0]), "tied:0": (3, [5.0, 3.0, 4.0, 1.0]), "ref:1": (1, [0.0, 1.0]),
                  "tied:1": (2, [2.0, 1.0, 1.5]), "ref:2": (1, [1.0, 0.0]), "tied:2": (2, [1.0, 0.0, 2.0])},
                 0.2934697255541248),
    "T3": ({"ref:0": (1, [9, 3, 2]), "tied:0": (3, [8, 8, 8, 2]), "ref:1": (1, [7, 7]), "tied:1": (2, [6, 6, 6]),
            "ref:2": (1, [5, 6]), "tied:2": (2, [4, 4, 9])}, 0.3333333333333333),
    "T4": ({"ref:0": (1, [-1, 3, 2]), "tied:0": (3, [7, -1, 8, 2]), "ref:1": (1, [9, -1, -1]),
            "tied:1": (2, [9, 9, -1])}, 0.5005270556608289),
}


def official_ties(rows: dict[str, tuple[int, list[float]]]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's division by zero, as upstream
        return process_single_model(Dataset([{"id": uid, "subset": "Ties", "num_correct": n, "scores": s}
                                              for uid, (n, s) in rows.items()]))[1]


def ours(rows: dict[str, tuple[int, list[float]]]) -> float | None:
    groups: dict[str, list] = {}
    for uid, (n, scores) in rows.items():
        kind, pid = uid.split(":")
        groups.setdefault(pid, [None, None])[kind == "tied"] = prompt_stats(scores, n)
    return ties_score([tuple(g) for g in groups.values()])


@pytest.mark.parametrize("name", TIES_VECTORS)
def test_the_ties_statistic_is_the_official_one_on_spec16s_vectors(name):
    rows, expected = TIES_VECTORS[name]
    assert official_ties(rows) == pytest.approx(expected, abs=1e-15)
    assert ours(rows) == pytest.approx(expected, abs=1e-15)
    if VECTORS.exists():  # the researcher's JSON of the same vectors
        stored = {r["id"]: (r["num_correct"], r["scores"]) for r in json.loads(VECTORS.read_text())[
            {"T3": "T3_ratings_with_zero_spread", "T4": "T4_failed_ratings_-1"}.get(name, name)]}
        assert stored == rows


def test_the_ties_statistic_matches_the_official_code_on_random_scores():
    """Fixture-shaped groups (a ref row of 1 correct and a tied row of 2-4), rewards and ratings
    with ties and -1s, some prompt ids with only one of their rows: ours equals the official."""
    draw = random.Random(5)
    for trial in range(300):
        rows: dict[str, tuple[int, list[float]]] = {}
        for pid in range(draw.randint(1, 6)):
            value = (lambda: float(draw.choice([-1, 1, 2, 5, 7, 9, 10]))) if trial % 2 else (lambda: draw.gauss(0, 1))
            if pid == 0 or draw.random() < 0.9:
                rows[f"ref:{pid}"] = (1, [value() for _ in range(draw.randint(2, 4))])
            if pid == 0 or draw.random() < 0.9:
                correct = draw.randint(2, 4)
                rows[f"tied:{pid}"] = (correct, [value() for _ in range(correct + draw.randint(1, 3))])
        mine = ours(rows)
        assert mine is not None
        assert mine == pytest.approx(official_ties(rows), abs=1e-12)


@pytest.mark.parametrize(("scores", "expected"), [
    ([2.0, 1.0, 0.5, 0.0], 1.0), ([1.0, 2.0, 0.5, 0.0], 0.0), ([1.0, 1.0, 0.5, 0.0], 0.5),
    ([1.0, 1.0, 1.0, 0.0], 1 / 3), ([1.0, 1.0, 1.0, 1.0], 0.25), ([0.0, 1.0, 1.0, 0.0], 0.0), ([3, 3, 1, 2], 0.5),
    ([-1.5, -1.5, -2.0, -1.5], 1 / 3), ([-1.0, -2.0, -3.0, -4.0], 1.0)])
def test_a_reward_models_best_of_n_is_the_official_rule(scores, expected):
    assert float(reroll_result(scores)) == pytest.approx(expected) == best_of_n(scores)


@pytest.mark.parametrize(("ratings", "expected"), [
    ([9, 7, 7, 3], 1.0), ([8, 8, 3, 2], 0.5), ([8, 8, 8, 8], 0.25), ([7, 9, 1, 1], 0.0), ([-1, 5, 4, 3], 0.0),
    ([-1, -1, -1, -1], 0.25), ([6, -1, -1, -1], 1.0), ([5, 5, 5, 2], 1 / 3), ([5, 5, -1, 5, 2], 1 / 3)])
def test_ratings_best_of_n_is_the_official_rule(ratings, expected):
    assert ratings_result(ratings) == pytest.approx(expected)
    assert best_of_n([None if r == -1 else float(r) for r in ratings]) == pytest.approx(expected)


@pytest.mark.parametrize("reply", ["My verdict: [[C]]", "[[B]] ... final: [[A]]", "[[D]]", "best is C", "[[a]]",
                                   "[[ A ]]", "**[[B]]**", "", "[[E]] then [[D]]"])
def test_the_4way_verdict_is_process_judgement(reply):
    official = process_judgement(reply, None)
    assert four_way_verdict(reply) == (None if official == "error" else official)


@pytest.mark.parametrize("reply", ["Good answer.\n\n9", "Rating: 10", "Rating: 9.", "Score: 9/10", "**8**", "7 ",
                                   "rated 0", "11", "x10", "Final rating: 3\n", "$ERROR$", "", "Rating: [[7]]"])
def test_the_rating_is_get_single_ratings(reply):
    official = parse_rating(reply)
    assert rating_verdict(reply) == (None if official == -1 else official)


def test_the_4way_layouts_are_the_official_swaps_seeded_per_record(tmp_path):
    rb2_fixture.write(tmp_path)
    records = [r for r in RB2.load(tmp_path).records if r.subset != "Ties"]
    for option, layout in enumerate(SWAPS):
        shown, winner = shuffle("c", "r0", "r1", "r2", option)
        assert tuple(("c", "r0", "r1", "r2")[int(i)] for i in layout) == shown
        record = records[0]
        presentation = Presentation(Ranking(record, (0, 1, 2, 3)), layout)
        for picked in "ABCD":
            expected = process_shuffled(picked, option)
            assert presentation.outcome(picked) == ("win" if expected == 1 else "loss")
        assert winner == "ABCD"[option]
    seen = {RB2.orders_for(RB2.judgments(r, "ranking")[0], "random", seed)[0]
            for r, seed in itertools.product(records, range(8))}
    assert seen == set(SWAPS)  # every official layout occurs, each the same in every run
    assert {RB2.orders_for(RB2.judgments(r, "ranking")[0], "fixed", 3)[0] for r in records} == {"0123"}


def test_the_templates_are_the_official_prompts_byte_for_byte():
    """spec16 3.3's SHA-256s of the official strings ({prompt}, {completion} as placeholders)."""
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    four = templates.load("rewardbench2")
    assert sha(four.system) == "cc81b612789438e858efeee67de4087ac07d451c750915b79b73d470ed36a5ff"
    assert sha(four.user) == "0b53abc0dd92074fcf9351fb8edab886a23bc29ee68172e7592bd08bfe0e6221"
    assert (four.kind, four.max_tokens, four.slots) == ("ranking", 2048, 4)
    gemini = templates.load("rewardbench2-gemini")
    assert not gemini.system and sha(gemini.user[:855]) == (
        "bbb18673721094746b8faeece0bbcfdd123d56777fb51102656a0c31fe3a294f") and gemini.user[855:] == four.user
    for name, digest in (("rewardbench2-ratings", "dd94ed65b24c00d411e65e8a671611ed2cba7154e97ff457b96183112b99ee14"),
                         ("rewardbench2-ratings-ties",
                          "86b62377fd01e9697fd87f04ef6d1163ee694a006b838d532d1866267d9722b4")):
        rating = templates.load(name)
        assert (rating.kind, rating.max_tokens, rating.system) == ("rating", 1024, "")
        assert sha(rating.user.replace("{question}", "{prompt}").replace("{answer}", "{completion}")) == digest
        # rendered as the official str.format does, braces in the texts kept
        (message,) = rating.render_single((templates.Message("user", "Q {x}"),), "ties", "A {y}")
        assert message == ("user", rating.user.replace("{question}", "Q {x}").replace("{answer}", "A {y}"))


def test_the_data_is_checked_row_by_row(tmp_path):
    rows = rb2_fixture.rows()
    dataset = RB2.load(rb2_fixture.write(tmp_path / "ok").parent.parent)
    assert len(dataset.records) == 28 and {r.subset for r in dataset.records} == set(rb2_fixture.BEST_OF_4) | {"Ties"}
    ties = [r for r in dataset.records if r.subset == "Ties"]
    assert [(r.uid, r.extra["row"], r.extra["prompt_id"], len(r.chosen)) for r in ties[:2]] == [
        ("ref:0", "ref", 0, 1), ("tied:0", "tied", 0, 2)]
    assert RB2.load(tmp_path / "ok" / "data").records[0].uid == "100"  # the data/ folder itself
    for change, said in ((lambda r: r[-1].update(id="tied-0"), "a Ties id must be ref:<prompt id>"),
                         (lambda r: r[0].update(num_correct=2), "num_correct 2 is not the 1 chosen"),
                         (lambda r: r[0].update(rejected=["x", "y"], total_completions=3), "at least three rejected"),
                         (lambda r: r[1].update(id="100"), "id '100' of Factuality repeats row 0"),
                         (lambda r: r[-2].update(chosen=["a", "b"], num_correct=2, total_completions=4), "a ref row of Ties has one"),
                         (lambda r: r[0].update(subset="Chat"), "subset 'Chat' is none of")):
        broken = [dict(row) for row in rows]
        change(broken)
        folder = tmp_path / said[:10].replace(" ", "_")
        rb2_fixture.write(folder, broken)
        with pytest.raises(DataError, match=said.replace("(", r"\(")):
            RB2.load(folder)


def test_limit_and_sample_take_a_ties_prompt_ids_rows_together(tmp_path, capsys):
    rb2_fixture.write(tmp_path, rb2_fixture.rows(per_subset=3, ties=12))
    limited = RB2.load(tmp_path, Selection(limit=2))
    assert [r.uid for r in limited.records if r.subset == "Ties"] == ["ref:0", "tied:0", "ref:1", "tied:1"]
    assert sum(r.subset == "Math" for r in limited.records) == 2
    for seed in range(4):
        sampled = RB2.load(tmp_path, Selection(sample=0.5, seed=seed)).records
        ids = [r.extra["prompt_id"] for r in sampled if r.subset == "Ties"]
        assert sorted(ids) == sorted(i for i in set(ids) for _ in range(2)) and 0 < len(set(ids)) < 12
    assert [r.subset for r in RB2.load(tmp_path, Selection(scenarios=["Precise*"])).records] == ["Precise IF"] * 3
    assert cli.main(["run", "--benchmark", "rewardbench2", "--judge", "mock", "--data", str(tmp_path), "--out",
                     str(tmp_path / "o"), "--scenarios", "*Chat*"]) == 2
    assert "matches no scenario" in capsys.readouterr().err
    assert cli.main(["run", "--benchmark", "rewardbench2", "--judge", "mock", "--data", str(tmp_path), "--out",
                     str(tmp_path / "o"), "--template", "rmb"]) == 2
    assert "a pairwise template does not apply" in capsys.readouterr().err


def test_the_mock_judge_answers_rankings_and_bare_ratings():
    four = templates.load("rewardbench2")
    (_, user) = four.render_many((templates.Message("user", "Q?"),), "math", ["one", "two", "three", "four"])
    reply = simulated_reply(user[1])
    assert four_way_verdict(reply) in tuple("ABCD") and reply == simulated_reply(user[1])
    rating = templates.load("rewardbench2-ratings")
    (message,) = rating.render_single((templates.Message("user", "Q?"),), "math", "An answer.")
    assert rating_verdict(simulated_reply(message[1])) in range(1, 11)
    # RMB's prompts: the replies they always had
    assert simulated_reply("[The Start of Assistant A's Answer]\nx\n[The End of Assistant A's Answer]\n"
                           "[The Start of Assistant B's Answer]\ny\n[The End of Assistant B's Answer]") in ("[[A]]",
                                                                                                          "[[B]]")
