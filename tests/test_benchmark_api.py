"""A benchmark is one module: a toy best-of-4 benchmark (one chosen and three rejected answers per
prompt, asked as a 4-way ranking or as four ratings, with a score key of its own estimator),
defined here against `benchmark.Benchmark` alone, runs through the core unchanged: a generative
judge through the fake server, with both judgment kinds, and a tiny hf: reward model. The
scores are computed again here from what the judge was sent and said."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from fake_api import Reply
from tiny_models import build_tiny_reward_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmb_judge import benchmarks, cli
from rmb_judge.benchmark import OVERALL, Benchmark, ScoreKey, Section
from rmb_judge.intervals import Estimate
from rmb_judge.judgments import SCORE, SLOTS, Ranking, Rating
from rmb_judge.records import Answer, Dataset, Message, Record, Selection
from rmb_judge.verdicts import Style, register_style

GOOD = "GOOD"
register_style(Style("toy-slot", lambda text: m.group(1) if (m := re.search(r"\[\[([A-D])\]\]", text)) else None,
                     "[[A]] ... [[D]]"))


def spread(scored, estimates, z) -> Estimate | None:
    """A key of the toy's own estimator: the share of records judged, with no interval to speak of."""
    return Estimate(1.0, 0.0, float(len(scored)), 1.0, 1.0) if scored else None


class Toy(Benchmark):
    name = "toy"
    title = "Toy best-of-4"
    sections = (Section("easy", "bo4", "easy", "Easy"), Section("hard", "bo4", "hard", "Hard"))
    leaderboard = ("easy", "hard")
    data_variable = "TOY_DATA"
    manifest_resource = "rmb_files.json"  # (never fetched)
    default_order = "fixed"
    default_template = "rmb"

    def score_keys(self):
        sections = ("easy", "hard")
        return (ScoreKey("easy", ("easy",)), ScoreKey("hard", ("hard",)), ScoreKey("alone", sections, value="alone"),
                ScoreKey("spread", sections, estimator=spread), ScoreKey(OVERALL, sections))

    def load(self, root: Path, selection: Selection | None = None) -> Dataset:
        selection = selection or Selection()
        dataset = Dataset(Path(root), [], ["toy.jsonl"], 1)
        dataset.records = [r for r in self.read_file(Path(root), Path(root) / "toy.jsonl", dataset.sha256)
                           if selection.wants_record(r)][: selection.limit]
        return dataset

    def read_file(self, root, path, digests=None):
        for index, line in enumerate(path.read_text().splitlines()):
            item = json.loads(line)
            answers = [Answer("m", text) for text in item["answers"]]
            yield Record("bo4", item["level"], item["level"], item["level"], str(index),
                         (Message("user", item["prompt"]),), (answers[0],), tuple(answers[1:]), "toy.jsonl", index)

    def check_selection(self, selection):
        super().check_selection(selection)

    def upstream_files(self, selection):
        return 1

    def notes(self, dataset, selection):
        return [f"toy: {len(dataset.records)} of its 12 records selected"] if selection.limit else []

    def judgments(self, record, mode):
        if mode == "rating":
            return [Rating(record, i, i) for i in range(4)]
        return [Ranking(record, (0, 1, 2, 3))]  # ranking templates and reward models

    def judgment_score(self, judged):
        return float(judged[0].outcome == "win")

    def record_score(self, record, judged, scores):
        if isinstance(judged[0][0].judgment, Ranking):
            return {SCORE: scores[0], "alone": scores[0]}
        ratings = [group[0].verdict for group in judged]  # in answer order, the chosen first
        if ratings[0] is None:
            return {SCORE: 0.0, "alone": 0.0}
        top = max(r for r in ratings if r is not None)
        ties = sum(r == top for r in ratings)
        return {SCORE: 1 / ties if ratings[0] == top else 0.0, "alone": float(ratings[0] == top and ties == 1)}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setitem(benchmarks._CLASSES, "toy", Toy)
    benchmarks.get.cache_clear()
    data = tmp_path / "data"
    data.mkdir()
    lines = []
    for i in range(12):
        answers = [f"{GOOD} answer {i}", f"plain answer {i}", f"weak answer {i}", f"odd answer {i}"]
        lines.append(json.dumps({"prompt": f"Question {i}?", "level": "easy" if i < 7 else "hard", "answers": answers}))
    (data / "toy.jsonl").write_text("\n".join(lines) + "\n")
    ranking = tmp_path / "rank4.toml"
    ranking.write_text('kind = "ranking"\nstyle = "toy-slot"\nuser = """Which answer is best?\n{question}\n'
                       '[A] {answer_a}\n[B] {answer_b}\n[C] {answer_c}\n[D] {answer_d}\nSay [[A]] ... [[D]]."""\n')
    rating = tmp_path / "rate.toml"
    rating.write_text('kind = "rating"\nstyle = "pointwise"\nuser = """Rate 1-10.\n{question}\nANSWER: {answer}"""\n')
    yield data, ranking, rating
    benchmarks.get.cache_clear()


def answers_shown(prompt: str) -> list[str]:
    return re.findall(r"^\[[A-D]\] (.*)$", prompt, re.M)


def test_a_benchmark_of_rankings_and_ratings_runs_through_the_core(toy, tmp_path, fake_api_thread, monkeypatch):
    data, ranking, rating = toy
    api = fake_api_thread
    for variable, value in api.env().items():
        monkeypatch.setenv(variable, value)

    def respond(body, wire):
        prompt = body["messages"][-1]["content"]
        if shown := answers_shown(prompt):  # a position-biased judge: the good answer if shown first or second
            good = next(i for i, a in enumerate(shown) if GOOD in a)
            return Reply(f"[[{SLOTS[good if good < 2 else 0]}]]")
        return Reply("Rating: [[9]]" if GOOD in prompt or "plain" in prompt else "Rating: [[2]]")

    api.responder = respond
    base = ["run", "--benchmark", "toy", "--judge", "openai:m", "--data", str(data), "--cache", str(tmp_path / "c"),
            "--no-progress", "--max-unparsed", "1"]
    assert cli.main([*base, "--template", str(ranking), "--order", "random", "--out", str(tmp_path / "rank")]) == 0
    summary = json.loads((tmp_path / "rank" / "summary.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "rank" / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 12 == len(api.calls())
    right = {}
    for call in api.calls():  # from what the judge was shown: right iff the good answer was in slot A or B
        shown = answers_shown(call.body["messages"][-1]["content"])
        right[int(re.search(r"answer (\d+)", shown[0]).group(1))] = float(any(GOOD in a for a in shown[:2]))
    easy = [right[i] for i in range(7)]
    hard = [right[i] for i in range(7, 12)]
    assert summary["scores"]["easy"] == pytest.approx(sum(easy) / 7)
    assert summary["scores"]["hard"] == pytest.approx(sum(hard) / 5)
    assert summary["scores"]["overall"] == pytest.approx((sum(easy) / 7 + sum(hard) / 5) / 2)
    assert summary["scores"]["alone"] == summary["scores"]["overall"] and summary["scores"]["spread"] == 1.0
    assert set(summary["intervals"]) == set(summary["scores"])
    assert {line["layout"] for line in lines} != {"0123"}  # seeded layouts
    for line in lines:  # the answer picked (its index in the record, the chosen one 0): the good one, or slot A's
        assert line["picked"] == (0 if right[int(line["uid"])] else int(line["layout"][0]))
    # the same records asked as four ratings each: the good and the plain answer tie at the top
    assert cli.main([*base, "--template", str(rating), "--out", str(tmp_path / "rate")]) == 0
    rated = json.loads((tmp_path / "rate" / "summary.json").read_text())
    assert len(api.calls()) == 12 + 48
    assert rated["scores"]["overall"] == 0.5 and rated["scores"]["alone"] == 0.0
    assert {json.loads(line)["rating"] for line in (tmp_path / "rate" / "samples.jsonl").read_text().splitlines()} == {
        9.0, 2.0}


def test_a_benchmark_notes_what_a_selection_means_in_the_summary(toy, tmp_path, fake_api_thread, monkeypatch):
    data, ranking, _ = toy
    for variable, value in fake_api_thread.env().items():
        monkeypatch.setenv(variable, value)
    fake_api_thread.responder = lambda body, wire: Reply("[[A]]")
    base = ["run", "--benchmark", "toy", "--judge", "openai:m", "--data", str(data), "--cache", str(tmp_path / "c"),
            "--no-progress", "--template", str(ranking), "--order", "fixed", "--price", "1,1"]
    assert cli.main([*base, "--limit", "3", "--out", str(tmp_path / "some")]) == 0
    assert json.loads((tmp_path / "some" / "summary.json").read_text())["warnings"] == [
        "toy: 3 of its 12 records selected"]
    assert cli.main([*base, "--out", str(tmp_path / "all")]) == 0
    assert json.loads((tmp_path / "all" / "summary.json").read_text())["warnings"] == []


def test_a_reward_model_ranks_the_answers_by_their_rewards(toy, tmp_path):
    data, _, _ = toy
    model = build_tiny_reward_model(tmp_path / "rm", seed=2)
    assert cli.main(["run", "--benchmark", "toy", "--judge", f"hf:{model}", "--data", str(data),
                     "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32).eval()
    scores = []
    for record in Toy().load(data).records:
        rewards = []
        for answer in record.answers:
            text = tok.apply_chat_template([{"role": "user", "content": record.conversation[0].content},
                                            {"role": "assistant", "content": answer.text}], tokenize=False)
            with torch.no_grad():
                rewards.append(net(input_ids=tok(text, add_special_tokens=False, return_tensors="pt").input_ids)
                               .logits[0, 0].item())
        scores.append(float(rewards[0] > max(rewards[1:])))  # the chosen one alone at the top
    assert summary["scores"]["easy"] == pytest.approx(sum(scores[:7]) / 7)
    assert summary["scores"]["hard"] == pytest.approx(sum(scores[7:]) / 5)
    assert summary["usage"]["answers_scored"] == 48
