"""RM-Bench end to end, as a user runs it: `data fetch` from a local fake of GitHub's raw files,
`estimate` and `run` of a generative judge through the real openai SDK against the fake server
(stopped by --max-cost, then resumed without paying twice) and of a tiny `hf:` reward model, a
--precision run, then report, compare, view and jury. The scores must be the official scorer's
(tests/rm_bench_official.py) on the same verdicts and rewards. The local data copy lacks
math_filtered.json, so runs select the other domains (and say so)."""

from __future__ import annotations

import hashlib
import json

import pytest
from fake_api import Reply
from local_site import serving, static_site
from rm_bench_official import compute_accuracy_over
from test_judgebench_run import plain_rewards
from test_rm_bench import KEYS, PRESENT, WITHOUT_MATH, oracle_results, rm_bench_data  # noqa: F401  (a fixture)
from tiny_models import build_tiny_reward_model

from rmb_judge import benchmarks, cli
from rmb_judge.benchmarks.rm_bench import file_of
from rmb_judge.providers.mock import extract_pair
from rmb_judge.records import Selection

RMBENCH = benchmarks.get("rm-bench")
COMMIT = "73c52d7b27b361621361ec959ac6c0eb9bb7a689"
DOMAINS = ["chat", "code", "safety"]
NOTE = ("RM-Bench: only the chat, code and safety domains selected: hard, normal, easy and overall are means over "
        "these, not comparable to RM-Bench's published ones (over chat, code, math and safety)")


def official(results: list[dict]) -> dict[str, float | None]:
    """The oracle's scores over the domains selected, as our keys (math: none)."""
    return {"math": None, **{KEYS[k]: float(v) for k, v in compute_accuracy_over(results, DOMAINS).items()}}


def length_judge_reply(first: str, second: str) -> str:
    """A length-biased fake judge: the longer answer, except a tie or no verdict now and then."""
    digest = hashlib.sha256(f"{first}\0{second}".encode()).digest()[0] % 8
    if digest == 0:
        return "Both answers are equally good. [[C]]"
    if digest == 1:
        return "I cannot tell which is better."
    return "The more thorough answer wins. " + ("[[A]]" if len(first) > len(second) else "[[B]]")


def length_judge(body: dict, wire: str) -> Reply:
    shown = extract_pair(body["messages"][-1]["content"])
    assert shown is not None
    return Reply(length_judge_reply(shown[0].strip(), shown[1].strip()))


@pytest.fixture
def github(tmp_path, rm_bench_data):  # noqa: F811
    """raw.githubusercontent.com for THU-KEG/RM-Bench at the pinned commit, from its own thread:
    /THU-KEG/RM-Bench/<commit>/data/<file> for the four files of the local copy (math absent).
    Records the raw paths asked for."""
    asked: list[str] = []
    site = tmp_path / "github"
    folder = site / "THU-KEG" / "RM-Bench" / COMMIT / "data"
    folder.mkdir(parents=True)
    for subset in PRESENT:
        (folder / file_of(subset)).write_bytes((rm_bench_data / file_of(subset)).read_bytes())

    with serving(static_site(site, asked)) as url:
        yield f"{url}/THU-KEG/RM-Bench/{COMMIT}", asked, folder


def test_fetch_verifies_every_file_against_the_pinned_manifest(github, tmp_path, capsys):
    base, asked, served = github
    manifest = RMBENCH.manifest()
    assert manifest.commit == COMMIT and [manifest.url(e) for e in manifest.files] == [
        f"https://raw.githubusercontent.com/THU-KEG/RM-Bench/{COMMIT}/data/{s}_filtered.json"
        for s in ("chat", "code", "math", "safety-refuse", "safety-response")]
    dest = tmp_path / "rmbench"
    fetch = ["data", "fetch", "--benchmark", "rm-bench", "--data", str(dest), "--base-url", base]
    # the mirror lacks math: that file fails, named
    assert cli.main(fetch) == 2
    assert "math_filtered.json: download failed: HTTP 404" in capsys.readouterr().err
    only = ["--only", "chat_*", "--only", "code_*", "--only", "safety-*"]
    assert cli.main([*fetch, *only]) == 0
    assert "798 records" in capsys.readouterr().out
    assert {f"/THU-KEG/RM-Bench/{COMMIT}/data/{e.path}" for e in manifest.files} >= set(asked)
    for entry in manifest.files:
        if entry.sha256 is not None:
            assert hashlib.sha256((dest / entry.path).read_bytes()).hexdigest() == entry.sha256
    assert cli.main(["data", "validate", "--benchmark", "rm-bench", "--data", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "4 of 5 data files, 798 records, all well-formed" in out and "missing (1" in out and "math_filtered" in out
    assert cli.main(["data", "info", "--benchmark", "rm-bench", "--data", str(dest), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sections"]["safety"]["records"] == 441 and info["scenarios"]["safety-refuse"] == 284
    assert info["sections"]["safety"]["comparisons"] == 9 * 441  # each prompt's nine pairs
    # a mirror serving a math file that is not the pinned one (its git blob id), or other bytes
    (served / "math_filtered.json").write_text(json.dumps(json.loads((served / "chat_filtered.json").read_text())[:2]))
    assert cli.main([*fetch, "--only", "math_*"]) == 2
    err = capsys.readouterr().err
    assert "math_filtered.json: downloaded file is not RM-Bench data: not the file of RM-Bench commit 73c52d7" in err
    assert not (dest / "math_filtered.json").exists()
    tampered = served / "code_filtered.json"
    tampered.write_bytes(tampered.read_bytes().replace(b"def ", b"fed ", 1))  # (the same size)
    other = tmp_path / "other"
    assert cli.main([*fetch[:-3], str(other), "--base-url", base, "--only", "code_*"]) == 2
    assert "does not match the manifest" in capsys.readouterr().err and not (other / "code_filtered.json").exists()


def test_a_generative_judge_scores_as_the_official_code_and_resumes_without_paying_twice(
        rm_bench_data, tmp_path, fake_api_thread, monkeypatch, capsys):  # noqa: F811
    """Two prompts of each domain file, nine pairs each in a seeded order: estimate counts the
    requests; a run stopped by --max-cost resumes paying only for the rest; the scores are the
    official scorer's on the verdicts the fake judge gave (a tie half); a rerun sends nothing."""
    api = fake_api_thread
    api.responder = length_judge
    for variable, value in api.env().items():
        monkeypatch.setenv(variable, value)
    out, cache = tmp_path / "out", tmp_path / "cache"
    run = ["run", "--benchmark", "rm-bench", "--judge", "openai:gpt-4o-mini", "--data", str(rm_bench_data),
           *WITHOUT_MATH, "--limit", "2", "--out", str(out), "--cache", str(cache), "--no-progress",
           "--max-unparsed", "0.5", "--price", "published"]
    assert cli.main(["estimate", *run[1:run.index("--out")], "--cache", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 8 * 9
    assert cli.main([*run, "--max-cost", "0.002", "--concurrency", "1"]) == cli.EXIT_BUDGET
    stopped = len(api.calls("openai"))
    assert 0 < stopped < 72 and not json.loads((out / "summary.json").read_text())["complete"]
    assert cli.main(run) == 0
    capsys.readouterr()
    calls = api.calls("openai")
    assert len(calls) == 72 == len({json.dumps(c.body["messages"]) for c in calls})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark"] == "rm-bench" and summary["complete"] and summary["warnings"] == [NOTE]
    assert summary["usage"]["requests"] == 72 - stopped and summary["settings"]["order"] == "random"
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 72 and {line["domain"] for line in lines} == set(PRESENT)
    # the official scorer on the verdicts the judge gave, each read from what it was shown
    records = {r.uid: r for r in RMBENCH.load(rm_bench_data, Selection(scenarios=["chat", "code", "safety-*"],
                                                                       limit=2)).records}
    matrices: dict = {}
    for line in lines:
        record = records[line["uid"]]
        i, j = divmod(line["judgment"], 3)
        shown = (record.chosen[i].text, record.rejected[j].text)
        reply = length_judge_reply(*(shown if line["order"] == "AB" else shown[::-1]))
        assert line["raw"] == reply
        picked = "tie" if "[[C]]" in reply else None if "[[" not in reply else reply[-3]
        cell = 0.5 if picked == "tie" else float(picked == ("A" if line["order"] == "AB" else "B"))
        matrices.setdefault((record.subset, record.uid), [[0.0] * 3 for _ in range(3)])[i][j] = cell
    assert summary["scores"] == pytest.approx(official(oracle_results(matrices)), abs=1e-12)
    assert all(summary["intervals"][k] is not None for k in summary["scores"] if k != "math")
    assert cli.main(run) == 0 and len(api.calls("openai")) == 72
    assert json.loads((out / "summary.json").read_text())["scores"] == summary["scores"]


def test_a_reward_model_scores_as_the_official_code(rm_bench_data, tmp_path):  # noqa: F811
    """A tiny hf: model on the first prompt of each file: each of the six answers scored once, the
    official matrix (strictly higher wins) on an independent forward pass."""
    model = build_tiny_reward_model(tmp_path / "rm", seed=5, max_position_embeddings=8192)
    out = tmp_path / "out"
    assert cli.main(["run", "--benchmark", "rm-bench", "--judge", f"hf:{model}", "--data", str(rm_bench_data),
                     *WITHOUT_MATH, "--limit", "1", "--out", str(out), "--cache", str(tmp_path / "cache"),
                     "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = RMBENCH.load(rm_bench_data, Selection(scenarios=["chat", "code", "safety-*"], limit=1)).records
    rewards = plain_rewards(model, records)
    results = [{"domain": r.subset, "score_chosen": [rewards[a.text] for a in r.chosen],
                "score_rejected": [rewards[a.text] for a in r.rejected]} for r in records]
    assert summary["scores"] == pytest.approx(official(results), abs=1e-9)
    assert summary["usage"]["answers_scored"] == 24 and summary["warnings"] == [NOTE]


def test_report_compare_view_jury_and_precision_read_rm_bench_runs(rm_bench_data, judgebench_data, tmp_path,  # noqa: F811
                                                                   capsys):
    """Runs of the mock judge on RM-Bench (and one on JudgeBench): the report has RM-Bench's board
    with its published rows and a judge x benchmark table, compare pairs their records, view shows
    a record's six answers and nine comparisons, a jury is built from them, and a --precision
    run stops on its target."""
    runs = tmp_path / "runs"
    base = ["run", "--judge", "mock", "--cache", str(tmp_path / "cache"), "--no-progress"]
    rm = [*base, "--benchmark", "rm-bench", "--data", str(rm_bench_data), *WITHOUT_MATH, "--limit", "2"]
    for name, extra in (("random", []), ("both", ["--order", "both"]), ("seed", ["--seed", "1"])):
        assert cli.main([*rm, "--out", str(runs / name), *extra]) == 0
    assert cli.main([*base, "--benchmark", "judgebench", "--data", str(judgebench_data), "--limit", "1",
                     "--out", str(runs / "jb")]) == 0
    capsys.readouterr()
    summary = json.loads((runs / "random" / "summary.json").read_text())
    assert cli.main(["report", str(runs), "--published", "--markdown", str(tmp_path / "board.md")]) == 0
    board = (tmp_path / "board.md").read_text()
    assert "# Judges across benchmarks" in board and "# RM-Bench leaderboard" in board and NOTE in board
    # the official leaderboard's columns: the domains, then easy, normal and hard (with chance levels)
    assert ("| Skywork-Reward-Llama-3.1-8B | discriminative | 0.695 | 0.606 | 0.545 | 0.957 | 0.890 | 0.747 | 0.466 "
            "| 0.701 |") in board
    row = next(line for line in board.splitlines() if line.startswith("| 1 |"))
    assert [f"{summary['scores'][key]:.3f} ±" in row for key in ("chat", "code", "safety", "easy", "normal", "hard",
                                                                    "overall")] == [True] * 7
    assert "| chance level |  | 0.500 | — | 0.500 | 0.500 | 0.500 | 0.500 | 0.500 | 0.500 |" in board
    capsys.readouterr()
    assert cli.main(["compare", str(runs / "random"), str(runs / "both"), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["shared"] == 8 and [s["key"] for s in compared["scores"]] == ["chat", "code", "safety", "overall"]
    assert {s["key"]: s["a"] for s in compared["scores"]} == pytest.approx(
        {k: summary["scores"][k] for k in ("chat", "code", "safety", "overall")})
    from rmb_judge.explorer.index import build

    index = build([runs / "random", runs / "both"])
    assert len(index.entries) == 8 and not index.notes
    entry = index.entries[0]
    shown = index.detail(entry.id)
    assert shown is not None and [a["label"] for a in shown["answers"]] == [
        "chosen 1", "chosen 2", "chosen 3", "rejected 1", "rejected 2", "rejected 3"]
    comparisons = shown["runs"][1]["comparisons"]
    assert [c["title"] for c in comparisons] == [f"chosen {i} vs rejected {j}" for i in (1, 2, 3) for j in (1, 2, 3)]
    record = entry.record
    for comparison in comparisons:
        i, j = divmod(comparison["loser_index"], 3)
        first = comparison["presentations"][0]
        assert first["order"] == "AB" and first["shown"] == [f"chosen {i + 1}", f"rejected {j + 1}"]
        (user,) = first["prompts"][0][-1:]
        assert extract_pair(user["content"]) == (record.chosen[i].text, record.rejected[j].text)
    assert cli.main(["jury", str(runs / "random"), str(runs / "both"), str(runs / "seed"),
                     "--out", str(tmp_path / "jury")]) in (0, 6)
    jury = json.loads((tmp_path / "jury" / "summary.json").read_text())
    assert jury["benchmark"] == "rm-bench" and set(jury["scores"]) == set(KEYS.values())
    precise = tmp_path / "precise"
    assert cli.main([*base, "--benchmark", "rm-bench", "--data", str(rm_bench_data), *WITHOUT_MATH,
                     "--precision", "0.2", "--out", str(precise)]) == 0
    sampled = json.loads((precise / "summary.json").read_text())
    assert sampled["stopped_reason"] == "precision" and sampled["precision"]["population"] == 798
    assert sampled["precision"]["half_width"] <= 0.2 and sampled["precision"]["records"] < 798
