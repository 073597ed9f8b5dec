"""RM-Bench: its data, its selection, its official metric.

Scores are checked against the official scoring code ported verbatim into
tests/rm_bench_official.py (the oracle): on spec16's hand-made vector, on a "length reward model"
over every record of the local data copy (spec16's vectors), and on generative verdicts with ties
(a tie counts half: each record goes to the oracle twice, its ties once won and once lost)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import DATA
from rm_bench_official import compute_accuracy, compute_accuracy_over

from rmb_judge import benchmarks, cli, intervals, scoring
from rmb_judge.benchmarks.rm_bench import SUBSETS, file_of, git_blob, parse_record
from rmb_judge.errors import DataError
from rmb_judge.intervals import Stratum
from rmb_judge.judgments import Judged, Presentation
from rmb_judge.records import Selection

RMBENCH = benchmarks.get("rm-bench")
# RM-Bench's data files: $RM_BENCH_TEST_DATA, else beside RMB's in the shared copy (math absent)
RM_BENCH_DATA = Path(os.environ.get("RM_BENCH_TEST_DATA", DATA.parent.parent / "rm-bench" / "data"))
PRESENT = ["chat", "code", "safety-refuse", "safety-response"]  # the local copy's files
WITHOUT_MATH = ["--scenarios", "chat", "--scenarios", "code", "--scenarios", "safety-*"]
KEYS = {"chat": "chat", "code": "code", "math": "math", "safety": "safety", "hard_acc": "hard",
        "normal_acc": "normal", "easy_acc": "easy", "total_avg_acc": "overall"}  # official -> ours


@pytest.fixture(scope="session")
def rm_bench_data() -> Path:
    if not (RM_BENCH_DATA / "chat_filtered.json").is_file():
        pytest.fail(f"RM-Bench test data not found at {RM_BENCH_DATA} (set RM_BENCH_TEST_DATA)")
    return RM_BENCH_DATA


def rows(subset: str) -> list[dict]:
    return json.loads((RM_BENCH_DATA / file_of(subset)).read_text())


def ours(official: dict) -> dict:
    return {KEYS[key]: float(value) for key, value in official.items()}


class Cell:
    """A matrix cell's side for the oracle: `chosen[i] > rejected[j]` is the judged outcome of
    that pair (a tie is won in one copy of the record and lost in the other)."""

    def __init__(self, index: int, matrix: list[list[float]] | None = None, copy_: int = 0):
        self.index, self.matrix, self.copy = index, matrix, copy_

    def __gt__(self, other: Cell) -> bool:
        assert self.matrix is not None
        cell = self.matrix[self.index][other.index]
        return cell == 1.0 or (cell == 0.5 and self.copy == 0)


def oracle_results(matrices: dict) -> list[dict]:
    """The oracle's results for judged matrices ({(domain file, uid): 3x3 of 1/0.5/0}): each
    record twice, so a half-won cell averages to 0.5 over its two copies."""
    results = []
    for (subset, _), matrix in matrices.items():
        for copy_ in (0, 1):
            results.append({"domain": subset, "score_chosen": [Cell(i, matrix, copy_) for i in range(3)],
                            "score_rejected": [Cell(j) for j in range(3)]})
    return results


def scalar_scores(records, reward) -> dict:
    """Our scores of a reward model giving each answer `reward(text)`."""
    judged = []
    for record in records:
        for pair in RMBENCH.judgments(record, "scalar"):
            (order,) = RMBENCH.orders_for(pair, "random", 0, scalar=True)
            presentation = Presentation(pair, order)
            verdict = RMBENCH.reward_verdict(presentation, [reward(a.text) for a in presentation.shown])
            judged.append(Judged(presentation, verdict, scalar=True))
    scored = scoring.score_records(RMBENCH, judged)
    return scoring.summarize(RMBENCH, judged, scored, [rs.record for rs in scored], scalar=True).scores


def test_the_data_its_domains_and_uids(rm_bench_data):
    every = RMBENCH.load_every(rm_bench_data)
    assert [sum(r.subset == s for r in every.records) for s in PRESENT] == [129, 228, 284, 157]
    assert {r.subset: r.section for r in every.records} == {s: SUBSETS[s] for s in PRESENT}
    first = rows("chat")[0]
    record = every.records[0]
    assert (record.uid, record.subset, record.file) == (f"chat:{first['id']}", "chat", "chat_filtered.json")
    assert [m.content for m in record.conversation] == [first["prompt"]]
    assert [a.text for a in record.chosen] == first["chosen"] and [a.text for a in record.rejected] == first["rejected"]
    # chat and code share ids: the uids tell them apart
    assert len({r.uid for r in every.records}) == 798 > len({r.extra["id"] for r in every.records})
    pairs = RMBENCH.judgments(record, "pairwise")
    assert [(p.chosen, p.rejected, p.position) for p in pairs] == [(i, j, 3 * i + j) for i in range(3)
                                                                   for j in range(3)]
    # --limit: the first N of each file; --scenarios: a glob over the domain files
    limited = RMBENCH.load(rm_bench_data, Selection(scenarios=["chat", "code", "safety-*"], limit=2))
    assert [r.uid for r in limited.records] == [f"{s}:{row['id']}" for s in PRESENT for row in rows(s)[:2]]
    safety = RMBENCH.load(rm_bench_data, Selection(scenarios=["safety-*"]))
    assert len(safety.records) == 441 and {r.section for r in safety.records} == {"safety"}
    assert RMBENCH.notes(safety, Selection()) == [
        "RM-Bench: only the safety domain selected: hard, normal, easy and overall are means over it, not "
        "comparable to RM-Bench's published ones (over chat, code, math and safety)"]


def test_a_selection_needing_a_missing_file_is_refused_in_one_line(rm_bench_data, tmp_path, capsys):
    base = ["run", "--benchmark", "rm-bench", "--judge", "mock", "--data", str(rm_bench_data),
            "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--no-progress"]
    for extra, said in (([], "math_filtered.json missing (RM-Bench's math domain); run `rmb-judge data fetch "
                             "--benchmark rm-bench`, or leave it out: --scenarios chat --scenarios code "
                             "--scenarios 'safety-*'"),
                        (["--scenarios", "ma*"], "or select the domains present with --scenarios"),
                        (["--scenarios", "safety"], "--scenarios 'safety' matches no scenario"),
                        (["--sets", "bon"], "--sets: not a selection of benchmark rm-bench"),
                        (["--split", "claude"], "--split: not an option of benchmark rm-bench")):
        assert cli.main([*base, *extra]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "SIMULATED" not in line]
        assert len(err) == 1 and said in err[0], err
    assert not (tmp_path / "o" / "summary.json").exists()
    # a template whose criteria do not cover RM-Bench's domains
    assert cli.main([*base, *WITHOUT_MATH, "--template", "rmb-criteria"]) == 2
    assert "its [criteria] table lacks chat, code, math, safety" in capsys.readouterr().err


def test_a_file_the_manifest_has_no_sha256_for_must_be_the_pinned_git_blob(rm_bench_data, tmp_path):
    """math_filtered.json's SHA-256 is unknown (absent from every snapshot): its git blob id at the
    pinned commit is checked instead. Our blob id is git's (the manifest's ids of the other files)."""
    blobs = json.loads((Path(benchmarks.__file__).parent / "rm_bench_files.json").read_text())["git_blobs"]
    for subset in PRESENT:
        assert git_blob((rm_bench_data / file_of(subset)).read_bytes()) == blobs[file_of(subset)]
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "math_filtered.json").write_text(json.dumps(rows("chat")[:2]))
    with pytest.raises(DataError, match=r"math_filtered.json: not the file of RM-Bench commit 73c52d7 \(git blob "):
        RMBENCH.load(folder, Selection(scenarios=["math"]))


def test_the_hand_made_vector_scores_as_the_official_code():
    """spec16 2.4 vector B (rewards given directly): equal rewards lose, safety pools its two files."""
    vector = [
        ("chat", [3, 2, 1], [1, 2, 3]), ("chat", [1, 1, 1], [1, 0, 2]), ("code", [5, 5, 5], [4, 6, 5]),
        ("math", [0, 0, 0], [0, 0, 0]), ("safety-refuse", [2, 3, 4], [1, 1, 1]),
        ("safety-response", [1, 2, 3], [3, 2, 1]), ("safety-response", [0.5, 0.5, 0.5], [0.25, 0.75, 0.5]),
    ]
    records, reward = [], {}
    for index, (subset, chosen, rejected) in enumerate(vector):
        texts = {f"{index} {side} {i}": value for side, values in (("c", chosen), ("r", rejected))
                 for i, value in enumerate(values)}
        reward.update(texts)
        names = list(texts)
        records.append(parse_record({"id": index, "prompt": "q", "chosen": names[:3], "rejected": names[3:]},
                                    subset, file_of(subset), index))
    official = compute_accuracy([{"domain": s, "score_chosen": c, "score_rejected": r} for s, c, r in vector])
    assert scalar_scores(records, reward.__getitem__) == pytest.approx(ours(official), abs=1e-12)
    assert ours(official) == pytest.approx({"chat": 1 / 3, "code": 1 / 3, "math": 0.0, "safety": 5 / 9,
                                            "hard": 0.19444444444444442, "normal": 0.3055555555555555,
                                            "easy": 0.41666666666666663, "overall": 0.3055555555555555})


def test_a_length_reward_model_over_the_local_data_scores_as_the_official_code(rm_bench_data):
    """spec16 2.4's length vectors: reward = the answer's length, every record of the four local
    files; math absent, so the official total path over chat, code and safety."""
    records = RMBENCH.load_every(rm_bench_data).records
    results = [{"domain": subset, "score_chosen": [len(t) for t in row["chosen"]],
                "score_rejected": [len(t) for t in row["rejected"]]} for subset in PRESENT for row in rows(subset)]
    official = ours(compute_accuracy_over(copy.deepcopy(results), ["chat", "code", "safety"]))
    found = scalar_scores(records, len)
    assert found.pop("math") is None and found == pytest.approx(official, abs=1e-12)
    assert found == pytest.approx({"chat": 0.373815676141, "code": 0.516081871345, "safety": 0.467624086672,
                                   "hard": 0.126666333608, "normal": 0.393976127103, "easy": 0.836879173447,
                                   "overall": 0.452507211386}, abs=1e-12)
    # a domain's hard/normal/easy: the official per-file path on its records
    chat = compute_accuracy([{k: v for k, v in r.items() if k != "domain"} for r in results if r["domain"] == "chat"])
    assert scalar_scores([r for r in records if r.subset == "chat"], len) == pytest.approx(
        {"chat": float(sum(chat.values()) / 3), "code": None, "math": None, "safety": None,
         **{key.removesuffix("_acc"): float(v) for key, v in chat.items()}, "overall": float(sum(chat.values()) / 3)})


@pytest.mark.parametrize("order", ["random", "both"])
def test_generative_verdicts_score_as_the_official_matrix_with_ties_half(rm_bench_data, order):
    """Each of the nine pairs judged (A, B, a tie, no verdict), in one seeded order or both
    (RMB's rule: a win only if both orders agree, a tie if they disagree, nothing without a
    verdict): the matrix the oracle scores, a tie counting half."""
    records = RMBENCH.load(rm_bench_data, Selection(scenarios=["chat", "code", "safety-*"], limit=3)).records
    judged, matrices = [], {}
    for record in records:
        matrix = [[0.0] * 3 for _ in range(3)]
        for pair in RMBENCH.judgments(record, "pairwise"):
            outcomes = []
            for shown in RMBENCH.orders_for(pair, order, 7):
                digest = hashlib.sha256(f"{record.uid}:{pair.position}:{shown}".encode()).digest()[0]
                verdict = ("A", "B", "tie", None)[digest % 4]
                judged.append(Judged(Presentation(pair, shown), verdict))
                outcomes.append(verdict if verdict in (None, "tie") else
                                "win" if verdict == ("A" if shown == "AB" else "B") else "loss")
            matrix[pair.chosen][pair.rejected] = (
                0.0 if None in outcomes else
                {"win": 1.0, "tie": 0.5, "loss": 0.0}[outcomes[0]] if len(set(outcomes)) == 1 else 0.5)
        matrices[record.subset, record.uid] = matrix
    scored = scoring.score_records(RMBENCH, judged)
    found = scoring.summarize(RMBENCH, judged, scored, records, scalar=False).scores
    official = ours(compute_accuracy_over(oracle_results(matrices), ["chat", "code", "safety"]))
    assert found.pop("math") is None and found == pytest.approx(official, abs=1e-12)
    assert any(0.5 in row for matrix in matrices.values() for row in matrix)


def test_every_score_has_an_interval_of_a_mean_over_domains_of_record_means(rm_bench_data):
    """Records are the clusters; a domain's interval is its records' mean's (safety pooling its two
    files by size); hard, normal, easy and overall are means over the domains of those."""
    records = RMBENCH.load(rm_bench_data, Selection(scenarios=["chat", "code", "safety-*"], limit=20)).records
    judged = []
    for record in records:
        for pair in RMBENCH.judgments(record, "scalar"):
            presentation = Presentation(pair, "AB")
            judged.append(Judged(presentation, RMBENCH.reward_verdict(
                presentation, [len(a.text) % 7 for a in presentation.shown]), scalar=True))
    scored = scoring.score_records(RMBENCH, judged)
    summary = scoring.summarize(RMBENCH, judged, scored, records, scalar=True)
    values = {(rs.record.subset, key): [] for rs in scored for key in ("score", "hard", "normal", "easy")}
    for rs in scored:
        for key in ("score", "hard", "normal", "easy"):
            values[rs.record.subset, key].append(rs.values[key])
    domains = {"chat": ["chat"], "code": ["code"], "safety": ["safety-refuse", "safety-response"]}

    def strata(value: str, among: list[str]) -> list[Stratum]:
        return [Stratum(1 / len(among) * 20 / (20 * len(domains[d])), values[s, value], group=d, size=20)
                for d in among for s in domains[d]]

    for key, value, among in (("chat", "score", ["chat"]), ("safety", "score", ["safety"]),
                              ("overall", "score", list(domains)), ("hard", "hard", list(domains)),
                              ("easy", "easy", list(domains))):
        expected = intervals.stratified(strata(value, among))
        assert expected is not None and summary.intervals[key] == pytest.approx(expected.interval, abs=1e-12), key
        assert summary.scores[key] == pytest.approx(expected.value, abs=1e-12)
    assert summary.intervals["math"] is None and summary.chance["chat"] == 0.5


def test_published_rows_follow_the_official_formula():
    table = RMBENCH.published()
    assert table is not None and "b0d159fb8f945bb51e07ebbe83b5699830d94c3c" in table.source
    assert [row["model"] for row in table.rows][:2] == ["Skywork-Reward-Llama-3.1-8B", "Nemotron-340B-Reward"]
    for row in table.rows:  # Overall = Domain Avg = Difficulty Avg, to the table's rounding
        assert sum(row[k] for k in ("chat", "code", "math", "safety")) / 4 == pytest.approx(row["overall"], abs=1.1e-3)
        assert sum(row[k] for k in ("hard", "normal", "easy")) / 3 == pytest.approx(row["overall"], abs=1.1e-3)
