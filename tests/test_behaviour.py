"""Length bias, self-preference, accuracy by responder model and refusal rate, against
computations by hand on fixed presentations and straight from the data files for a run."""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from fnmatch import fnmatch

import pytest
from conftest import make_config

from rmb_judge import behaviour, records
from rmb_judge.judgments import Judged, Pair, Presentation
from rmb_judge.measures import paired
from rmb_judge.providers.mock import stable_hash
from rmb_judge.records import Answer, Message, Record
from rmb_judge.session import run


def record(uid: str, preferred: tuple[str, int], *others: tuple[str, int]) -> Record:
    kind = "pairwise" if len(others) == 1 else "bon"
    return Record(kind, "helpfulness", f"{kind}_helpfulness", f"{kind}/x", uid, (Message("user", "q"),),
                  (Answer(preferred[0], "p" * preferred[1]),), tuple(Answer(m, "o" * n) for m, n in others),
                  "x.json", 0)


def judged(r: Record, loser: int | None, order: str, verdict: str | None, refused: bool = False) -> Judged:
    return Judged(Presentation(Pair(r, 0, loser or 0, loser), order), verdict, refused=refused)


R1 = record("1", ("gpt-4o-mini", 100), ("Llama-2-7b-chat-hf", 50))
R2 = record("2", ("claude-3-opus", 20), ("gpt-4", 80))
R3 = record("3", ("Gemini-pro", 30), ("gpt-4o", 30), ("vicuna-7b-v1.5", 10))
R4 = record("4", ("alibaba/Qwen2-7B-Instruct", 5), ("Mistral-7B-Instruct-v0.1", 6))
FIXED = [
    judged(R1, None, "AB", "A"),  # picks the preferred, longer answer (a gpt one)
    judged(R2, None, "BA", "A"),  # shown first is the other: picks gpt-4's longer answer, wrongly
    judged(R3, 0, "AB", "tie"),  # equal lengths; a tie
    judged(R3, 1, "AB", "B"),  # picks vicuna's shorter answer, wrongly
    judged(R4, None, "AB", None, refused=True),
]


def test_each_measure_by_hand():
    found = behaviour.measure(FIXED, "gpt-4o", scalar=False)
    assert found.presentations == 5
    length = found.length
    # picked the longer answer: R1 yes, R2 yes, R3/1 no (R3/0 equal lengths, R4 no pick); labels: 1, 0, 1
    assert (length.judge.value, length.judge.n) == (pytest.approx(2 / 3), 3)
    assert length.label.value == pytest.approx(2 / 3) and length.difference.value == pytest.approx(0.0)
    own = found.self_preference
    assert own.family == "gpt"
    # exactly one gpt answer and a side picked: R1 (picked it, the label prefers it), R2 (picked it, label not)
    assert (own.prefers_own.judge.value, own.prefers_own.label.value) == (1.0, 0.5)
    assert own.prefers_own.difference.value == pytest.approx(0.5)
    assert own.accuracy_own.value == pytest.approx((1 + 0 + 0.5) / 3)  # R1, R2, R3/0 (a tie: half)
    assert own.accuracy_others.value == 0.0 and own.accuracy_others.n == 2  # R3/1, R4
    assert (found.refusal.value, found.refusal.n) == (pytest.approx(0.2), 5)
    by_model = {m.model: m for m in found.models}
    assert found.models[0].model == "Gemini-pro"  # two presentations; the others one each
    assert by_model["Gemini-pro"].accuracy.value == pytest.approx(0.25)
    assert by_model["Gemini-pro"].when_preferred.value == pytest.approx(0.25)
    assert by_model["Gemini-pro"].when_other.n == 0
    assert (by_model["gpt-4"].when_other.value, by_model["gpt-4o"].when_other.value) == (0.0, 0.5)
    assert by_model["Llama-2-7b-chat-hf"].family == "llama" and by_model["gpt-4o-mini"].accuracy.value == 1.0
    for measure in (length.judge, own.accuracy_own, found.refusal):
        assert measure.interval[0] <= measure.value <= measure.interval[1]


def test_model_families():
    assert [behaviour.family(m) for m in (
        "Mixtral-8x7B-Instruct-v0.1", "alibaba/Qwen2-7B-Instruct", "vicuna-7b-v1.5", "o3-mini", "chatgpt-4o-latest",
        "Skywork/Skywork-Reward-Llama-3.1-8B", "claude-instant-1.2", "Gemini-pro", "gemma-2-9b", "my-model", None,
    )] == ["mistral", "qwen", "vicuna", "gpt", "gpt", "llama", "claude", "gemini", "gemma", None, None]
    assert behaviour.measure(FIXED, "my-model", scalar=True).self_preference is None
    assert behaviour.measure(FIXED, "my-model", scalar=True).refusal is None


def test_a_runs_length_bias_from_the_data_files(data_root, tmp_path):
    """The mock judge (order fixed: the preferred answer first) picks the answer whose text
    hashes higher: its length preference and the labels', recomputed from the raw files."""
    selection = records.Selection(scenarios=["*Chat*"], limit=5)
    result = run(make_config(judge="mock", data=data_root, out=tmp_path / "out", cache=tmp_path / "c",
                             order="fixed", selection=selection))
    judge_picks, label_prefers = defaultdict(list), defaultdict(list)
    for path in sorted(data_root.rglob("*.json")):
        if not fnmatch(path.relative_to(data_root).as_posix().removesuffix(".json"), "*Chat*"):
            continue
        for item in json.loads(path.read_text())[:5]:
            best = item.get("chosen") or item["bon_best"]
            for other in [item["reject"]] if "reject" in item else item["loser_list"]:
                a, b = best["answer"], other["answer"]
                if len(a) != len(b):
                    picks_best = stable_hash(a.strip()) >= stable_hash(b.strip())
                    judge_picks[path].append(float(picks_best == (len(a) > len(b))))
                    label_prefers[path].append(float(len(a) > len(b)))
    length = result.summary.behaviour.length
    judge = [x for v in judge_picks.values() for x in v]
    label = [x for v in label_prefers.values() for x in v]
    assert length.judge.n == len(judge) and length.judge.value == pytest.approx(sum(judge) / len(judge))
    assert length.label.value == pytest.approx(sum(label) / len(label))
    assert result.summary.behaviour.note == "self-preference: the family of mock is not known"


def test_a_preference_difference_by_enumeration_and_bootstrap():
    """The judge-minus-label difference (length bias, self-preference): its p-value against every
    one of the 2^k sign patterns of the records' sums, and its interval's width against a
    bootstrap of whole records."""
    clusters = [[1, 0], [1], [-1], [1, 1], [0, 1], [1], [-1, 0], [1], [0], [1, -1, 1]]
    gap = paired(clusters)
    n = sum(map(len, clusters))
    sums = [sum(c) for c in clusters]
    assert gap.value == pytest.approx(sum(sums) / n) and gap.n == n
    extreme = sum(abs(sum(s * sign for s, sign in zip(sums, signs))) >= abs(sum(sums)) - 1e-9
                  for signs in itertools.product((1, -1), repeat=len(sums)))
    assert gap.p_value == pytest.approx(extreme / 2 ** len(sums))

    rng = random.Random(11)
    clusters = [[rng.choices((1, 0, -1), (0.35, 0.45, 0.2))[0] for _ in range(rng.randint(1, 3))] for _ in range(400)]
    gap = paired(clusters)
    means = []
    for _ in range(800):
        drawn = [clusters[rng.randrange(len(clusters))] for _ in clusters]
        means.append(sum(map(sum, drawn)) / sum(map(len, drawn)))
    centre = sum(means) / len(means)
    spread = (sum((m - centre) ** 2 for m in means) / (len(means) - 1)) ** 0.5
    assert (gap.interval[1] - gap.interval[0]) / 2 / 1.959964 == pytest.approx(spread, rel=0.1)
    assert gap.interval[0] < gap.value < gap.interval[1]
