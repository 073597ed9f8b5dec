"""JudgeBench: its data, its official metric, its judges, end to end.

Scores are checked against the official scoring code ported verbatim into
tests/judgebench_official.py (the oracle), on the decisions of the official outputs committed
to the JudgeBench repository (tests/data/judgebench_official_decisions.json, derived from them:
decisions, labels and rewards only) and on verdicts and rewards our runs produce."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import JUDGEBENCH_DATA
from judgebench_official import arena_hard_decision, category_scores, compute_final_metrics, reward_model_decision

from rmb_judge import benchmarks, cli, scoring, templates
from rmb_judge.benchmarks.judgebench import SPLITS
from rmb_judge.judgments import Judged, Presentation
from rmb_judge.records import Selection

JB = benchmarks.get("judgebench")
OFFICIAL = json.loads((Path(__file__).parent / "data" / "judgebench_official_decisions.json").read_text())["outputs"]
# The official scores of the committed outputs (spec16 1.4: correct pairs / pairs, both orders)
TABLE = {
    "arena_hard:claude-3-haiku-20240307": {"knowledge": (58, 154), "reasoning": (15, 51), "math": (11, 34),
                                           "coding": (3, 31), "overall": (87, 270)},
    "arena_hard:o1-mini-2024-09-12": {"knowledge": (90, 154), "reasoning": (61, 98), "math": (46, 56),
                                      "coding": (33, 42), "overall": (230, 350)},
    "reward_model:Ray2333_GRM-Gemma-2B-rewardmodel-ft": {"knowledge": (97, 154), "reasoning": (52, 98),
                                                         "math": (36, 56), "coding": (23, 42), "overall": (208, 350)},
    "reward_model:Skywork_Skywork-Reward-Gemma-2-27B": {"knowledge": (92, 154), "reasoning": (65, 98),
                                                        "math": (47, 56), "coding": (21, 42), "overall": (225, 350)},
    "reward_model:Skywork_Skywork-Reward-Llama-3.1-8B": {"knowledge": (91, 154), "reasoning": (63, 98),
                                                         "math": (43, 56), "coding": (21, 42), "overall": (218, 350)},
    "reward_model:internlm_internlm2-20b-reward": {"knowledge": (96, 154), "reasoning": (68, 98), "math": (37, 56),
                                                   "coding": (21, 42), "overall": (222, 350)},
    "reward_model:internlm_internlm2-7b-reward": {"knowledge": (87, 154), "reasoning": (60, 98), "math": (40, 56),
                                                  "coding": (21, 42), "overall": (208, 350)},
}
SINGLE_GAME = {"arena_hard:claude-3-haiku-20240307": (80, 270), "arena_hard:o1-mini-2024-09-12": (248, 350)}
VERDICT = {"A>B": "A", "B>A": "B", "A=B": "tie"}  # a decision in the shown frame, as our verdict


def rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (JUDGEBENCH_DATA / SPLITS[split]).read_text().splitlines()]


def records(split: str):
    return JB.load(JUDGEBENCH_DATA, Selection(options={"split": split})).records


def official_pairs(name: str) -> list[dict]:
    """The committed output's pairs as the official scorer reads them: the data record and its
    two judgments' decisions (j0 in the data's order, j1 swapped)."""
    output = OFFICIAL[name]
    pairs = []
    for row, stored in zip(rows(output["split"]), output["pairs"], strict=True):
        if name.startswith("arena_hard"):
            decisions = [decision for decision, _ in stored]
        else:
            decisions = stored[1]
        pairs.append({**row, "judgments": [{"decision": d} for d in decisions]})
    return pairs


def our_scores(name: str, order: str) -> dict[str, float | None]:
    """Our scores of the committed output's decisions: each judgment a presentation in the
    data's order (j0) or swapped (j1), its decision as our verdict, scored by the benchmark."""
    output = OFFICIAL[name]
    judged = []
    for record, stored in zip(records(output["split"]), output["pairs"], strict=True):
        decisions = [d for d, _ in stored] if name.startswith("arena_hard") else stored[1]
        pair = JB.judgments(record, "pairwise")[0]
        for shown, decision in zip(JB.orders_for(pair, order, 0), decisions, strict=False):
            judged.append(Judged(Presentation(pair, shown), VERDICT.get(decision or "")))
    scored = scoring.score_records(JB, judged)
    summary = scoring.summarize(JB, judged, scored, [rs.record for rs in scored], scalar=False)
    return summary.scores


@pytest.mark.parametrize("name", TABLE)
def test_the_official_scorer_gives_the_published_scores_of_the_committed_outputs(name):
    """The oracle and the fixture are what spec16 says: the official scorer on the committed
    decisions gives the official table."""
    found = category_scores(official_pairs(name), reverse_order=True)
    assert found == pytest.approx({key: a / b for key, (a, b) in TABLE[name].items()}, abs=1e-12)


@pytest.mark.parametrize("name", TABLE)
def test_our_scores_of_the_committed_decisions_are_the_official_scorers(name):
    """Both orders (the counter: a tie, a missing verdict or an unknown label count 0) and the
    single game, every category and overall (correct pairs over all pairs, not the mean)."""
    assert our_scores(name, "both") == pytest.approx(category_scores(official_pairs(name), True), abs=1e-12)
    assert our_scores(name, "fixed") == pytest.approx(category_scores(official_pairs(name), False), abs=1e-12)
    if name in SINGLE_GAME:
        correct, pairs = SINGLE_GAME[name]
        assert our_scores(name, "fixed")["overall"] == pytest.approx(correct / pairs)


@pytest.mark.parametrize("name", [n for n in OFFICIAL if n.startswith("arena_hard")])
def test_the_arena_hard_parser_reproduces_every_stored_decision(name):
    """Each committed judgment's labels, as its response held them: the official get_score,
    ours, and our verdict style agree with the stored decision (13 of haiku's hold two
    different labels: no verdict, no follow-up)."""
    style = templates.load("judgebench-arena-hard").style
    from rmb_judge.verdicts import parse_verdict, style_of

    several = 0
    for stored in OFFICIAL[name]["pairs"]:
        for decision, labels in stored:
            text = "\n" + " and ".join(f"[[{label}]]" for label in labels)
            assert arena_hard_decision(text)[0] == decision
            assert parse_verdict(text, style) == VERDICT.get(decision or "")
            assert style_of(style).labelled(text) is bool(labels)
            several += len(set(labels)) > 1
    assert several == (13 if "haiku" in name else 0)


@pytest.mark.parametrize("name", [n for n in OFFICIAL if n.startswith("reward_model")])
def test_a_reward_models_decisions_follow_the_official_rule(name):
    """The committed rewards through our reward verdict give the stored decisions in both
    orders (equal rewards decide for the second-shown answer: a counter of 0, wrong)."""
    output = OFFICIAL[name]
    ties = 0
    judged = []
    for record, (rewards, decisions) in zip(records(output["split"]), output["pairs"], strict=True):
        pair = JB.judgments(record, "scalar")[0]
        a_reward, b_reward = rewards  # the data's A and B
        for shown, decision in zip(JB.orders_for(pair, "both", 0, scalar=True), decisions, strict=True):
            first, second = (a_reward, b_reward) if shown == JB.orders_for(pair, "fixed", 0)[0] else (b_reward,
                                                                                                     a_reward)
            presentation = Presentation(pair, shown)
            verdict = JB.reward_verdict(presentation, [first, second])
            assert reward_model_decision(first, second) == decision
            assert VERDICT[decision] == verdict
            judged.append(Judged(presentation, verdict, scalar=True))
        ties += a_reward == b_reward
    scored = scoring.score_records(JB, judged)
    found = scoring.summarize(JB, judged, scored, [rs.record for rs in scored], scalar=True).scores
    assert found == pytest.approx({key: a / b for key, (a, b) in TABLE[name].items()}, abs=1e-12)
    assert ties == {"reward_model:Skywork_Skywork-Reward-Gemma-2-27B": 3,
                    "reward_model:Skywork_Skywork-Reward-Llama-3.1-8B": 1}.get(name, 0)


# spec16 1.4's hand-made decisions: (label, decision of the data's order, raw decision of the
# swapped order, correct)
HAND_MADE = [("A>B", "A>B", "B>A", 1), ("A>B", "A>B", "A=B", 1), ("A>B", "A>B", None, 1), ("A>B", "A>B", "A>B", 0),
             ("A>B", "A=B", "A=B", 0), ("A>B", None, None, 0), ("B>A", "B>A", "A>B", 1), ("B>A", "A>B", "A>B", 0),
             ("B>A", "A=B", "A>B", 1), ("B>A", "A", "A>B", 1), ("B>A", "B<A", "B<A", 0), ("A>B", "B>A", "B>A", 0)]


@pytest.mark.parametrize("label, first, second, correct", HAND_MADE)
def test_the_counter_rule_by_hand(label, first, second, correct):
    row = {**rows("gpt")[0], "label": label}
    official = compute_final_metrics([{**row, "judgments": [{"decision": first}, {"decision": second}]}], True) / 100
    from rmb_judge.benchmarks.judgebench import parse_record

    record = parse_record(row, "x.jsonl", 0)
    pair = JB.judgments(record, "pairwise")[0]
    judged = [Judged(Presentation(pair, shown), VERDICT.get(decision or ""))
              for shown, decision in zip(JB.orders_for(pair, "both", 0), (first, second), strict=True)]
    assert JB.judgment_score(judged) == correct == official


@pytest.mark.parametrize("split, expected", [("gpt", (68, 41, 29, 23, 161)), ("claude", (68, 22, 14, 14, 118))])
def test_a_length_reward_model_scores_as_the_official_code(split, expected):
    """spec16's length vectors: reward = the answer's length, both orders (the Claude split's two
    pairs of equal lengths are wrong in both orders)."""
    judged = []
    for record in records(split):
        pair = JB.judgments(record, "scalar")[0]
        for shown in JB.orders_for(pair, "both", 0, scalar=True):
            presentation = Presentation(pair, shown)
            judged.append(Judged(presentation, JB.reward_verdict(presentation, [len(a.text) for a in presentation.shown]),
                                 scalar=True))
    scored = scoring.score_records(JB, judged)
    found = scoring.summarize(JB, judged, scored, [rs.record for rs in scored], scalar=True).scores
    sizes = {"gpt": (154, 98, 56, 42, 350), "claude": (154, 51, 34, 31, 270)}[split]
    keys = ("knowledge", "reasoning", "math", "coding", "overall")
    assert found == pytest.approx({k: a / b for k, a, b in zip(keys, expected, sizes, strict=True)}, abs=1e-12)


def test_the_data_and_its_categories():
    gpt, claude = records("gpt"), records("claude")
    assert len(gpt) == 350 and len(claude) == 270
    assert {r.section for r in gpt if r.subset == "mmlu-pro-math"} == {"knowledge"}
    assert [sum(r.section == key for r in gpt) for key in ("knowledge", "reasoning", "math", "coding")] == [
        154, 98, 56, 42]
    first = rows("gpt")[0]
    record = gpt[0]
    assert (record.uid, record.subset, record.extra["label"]) == (first["pair_id"], first["source"], first["label"])
    assert [m.content for m in record.conversation] == [first["question"]]
    data_a = record.chosen[0] if first["label"] == "A>B" else record.rejected[0]
    assert data_a.text == first["response_A"]
    assert JB.orders_for(JB.judgments(record, "pairwise")[0], "fixed", 0) == (
        ("AB",) if first["label"] == "A>B" else ("BA",))
    assert len(JB.load_every(JUDGEBENCH_DATA).records) == 620
    # --limit: the first N of each source; --scenarios: a glob over the sources
    limited = JB.load(JUDGEBENCH_DATA, Selection(limit=1))
    assert len(limited.records) == 17 and len({r.subset for r in limited.records}) == 17
    coding = JB.load(JUDGEBENCH_DATA, Selection(scenarios=["livecode*"])).records
    assert len(coding) == 42 and {r.section for r in coding} == {"coding"}


def test_the_templates_are_the_official_ones_byte_for_byte():
    """arena_hard's system message has the official file's SHA-256, and the user message is the
    official rendering (verified in spec16 against 540 committed prompts)."""
    import hashlib

    arena = templates.load("judgebench-arena-hard")
    record = records("gpt")[0]
    q, a, b = record.conversation[0].content, "ANSWER ONE {x}", "ANSWER TWO"
    system, user = arena.render_pair(record.conversation, record.goal, a, b)
    assert system[0] == "system" and hashlib.sha256(system[1].encode()).hexdigest() == (
        "03f68010febd7a6405102ef882b4dd5a9700c56b2e1ff286d3b38f5d3a929bbf")
    assert user == ("user", "<|User Prompt|>\n" + q + "\n\n<|The Start of Assistant A's Answer|>\n" + a
                    + "\n<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n" + b
                    + "\n<|The End of Assistant B's Answer|>")
    assert arena.max_tokens == 4096 and arena.follow_up == (
        "continue your judgment and finish by outputting a final verdict label")
    vanilla = templates.load("judgebench-vanilla")
    (only,) = vanilla.render_pair(record.conversation, record.goal, a, b)
    assert only[0] == "user" and only[1].startswith("You are a helpful assistant in evaluating") and only[1].endswith(
        f"# Instruction:\n{q}\n# Output (a):\n{a}\n# Output (b):\n{b}\n# Which is better, Output (a) or Output (b)? "
        'Your response should be either "Output (a)" or "Output (b)":')
    assert hashlib.sha256(only[1].replace(q, "{{question}}").replace(a, "{{answer_a}}")
                          .replace(b, "{{answer_b}}").encode()).hexdigest() == (
        "45d0b0bd8304b032c9b34a2fece15ac9ad5c241ef296aff9896e5d5666d77026")
    from rmb_judge.verdicts import parse_verdict

    assert [parse_verdict(t, "judgebench-vanilla") for t in ("Output (a)", " Output (b)\n", "Output (a).", "a")] == [
        "A", "B", None, None]


def test_selection_flags_of_another_benchmark_are_refused_in_one_line(capsys, tmp_path):
    base = ["run", "--benchmark", "judgebench", "--judge", "mock", "--data", str(JUDGEBENCH_DATA),
            "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]
    for extra, said in ((["--sets", "bon"], "--sets: not a selection of benchmark judgebench"),
                        (["--order", "random"], "--order random: benchmark judgebench is judged in both or fixed"),
                        (["--scenarios", "mmlu-law"], "--scenarios 'mmlu-law' matches no scenario")):
        assert cli.main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and said in err, err
    with pytest.raises(SystemExit) as exited:
        cli.main([*base, "--split", "llama"])
    assert exited.value.code == 2 and "--split: invalid choice: 'llama'" in capsys.readouterr().err
    rmb = ["run", "--judge", "mock", "--out", str(tmp_path / "o"), "--split", "claude"]
    assert cli.main(rmb) == 2
    assert "--split: not an option of benchmark rmb" in capsys.readouterr().err


def test_published_rows_are_the_verified_ones():
    table = JB.published()
    assert table is not None and "e2c52c284e735e139b3daa61c206ee208f36c461" in table.source
    by_model = {row["model"].split(" ")[0]: row for row in table.rows}
    for name, expected in TABLE.items():
        row = by_model[re.sub(r"^.*?:(?:[A-Za-z0-9]+_)?", "", name, count=1)]
        for key, (a, b) in expected.items():
            assert row[key] == round(a / b, 4), (name, key)
