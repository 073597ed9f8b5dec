"""`rmb-judge jury` and the judges' agreement in `compare`, on real run folders of three fake
judges: every number recomputed by hand from the members' samples.jsonl."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import RMB, make_config
from fake_api import FAKE_KEY, FakeAPI, first_pick, label_judge
from test_verdict_probs import SELECTION, probability_judge

from rmb_judge import cli, records
from rmb_judge.compare import compare, read_run
from rmb_judge.jury import build, verdict
from rmb_judge.report import load_runs, render_html, render_markdown
from rmb_judge.report.behaviour import lines as report_lines
from rmb_judge.samples import JudgedComparison, Presented
from rmb_judge.session import run

MEMBERS = ("a", "b", "c")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    """a: a judge that reasons and gives probabilities; b: always the first answer; c: always
    right, both orders; all with --verdict-probs and a price. mock: the mock judge, no probabilities."""
    root = tmp_path_factory.mktemp("jury")
    selection = records.Selection(**SELECTION)
    dataset_records = RMB.load(data_root, selection).records
    responders = {"a": probability_judge(), "b": first_pick, "c": label_judge(dataset_records)}
    with pytest.MonkeyPatch.context() as patch, FakeAPI().run_in_thread() as api:
        patch.setenv("OPENAI_API_KEY", FAKE_KEY)
        for name in MEMBERS:
            api.responder = responders[name]
            run(make_config(judge=f"openai:judge-{name}", data=data_root, out=root / name, cache=root / "cache",
                            base_urls=[api.openai_url], selection=selection, verdict_probs=True, price=(1.0, 2.0),
                            order="both" if name == "c" else "random"))
    run(make_config(judge="mock", data=data_root, out=root / "mock", cache=root / "cache", selection=selection))
    return root


def outcomes(folder: Path) -> dict[tuple, str | None]:
    """Each comparison's verdict relative to the label: its orders' when they agree, a tie
    when they do not, none when one is missing."""
    by = defaultdict(list)
    for line in (folder / "samples.jsonl").read_text().splitlines():
        s = json.loads(line)
        preferred = "A" if s["order"] == "AB" else "B"
        word = None if s["verdict"] is None else "tie" if s["verdict"] == "tie" else \
            "win" if s["verdict"] == preferred else "loss"
        by[(s["category_path"], s["uid"], s["loser_index"])].append(word)
    return {k: None if None in v else v[0] if len(set(v)) == 1 else "tie" for k, v in by.items()}


def label_probs(folder: Path) -> dict[tuple, tuple[float, float, float]]:
    by = defaultdict(list)
    for line in (folder / "samples.jsonl").read_text().splitlines():
        s = json.loads(line)
        p = s["probs"]
        by[(s["category_path"], s["uid"], s["loser_index"])].append(
            (p["A"], p["B"], p["tie"]) if s["order"] == "AB" else (p["B"], p["A"], p["tie"]))
    return {k: tuple(sum(x[i] for x in v) / len(v) for i in range(3)) for k, v in by.items()}


def scores(verdicts: dict[tuple, str | None]) -> dict[str, float]:
    """RMB's rule: a comparison 1 / 0.5 / 0; pairwise its comparison, Best-of-N all won; means."""
    by_record = defaultdict(list)
    for (path, uid, _), word in verdicts.items():
        by_record[(path, uid)].append({"win": 1.0, "tie": 0.5}.get(word or "", 0.0))
    sections = defaultdict(list)
    for (path, _), values in by_record.items():
        kind, goal = path.split("/")[:2]
        section = ("pairwise" if kind == "Pairwise_set" else "bon") + "_" + goal.lower()
        sections[section].append(values[0] if kind == "Pairwise_set" else float(all(v == 1 for v in values)))
    means = {k: sum(v) / len(v) for k, v in sections.items()}
    means["overall"] = sum(means.values()) / len(means)
    return means


def test_a_jury_of_three_scores_the_majority_computed_by_hand(runs, tmp_path):
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (runs / "cache").iterdir())
    summary = build([runs / m for m in MEMBERS], tmp_path / "jury")
    member = {m: outcomes(runs / m) for m in MEMBERS}
    majority = {}
    for key in member["a"]:
        counted = Counter(member[m][key] for m in MEMBERS if member[m][key] is not None).most_common()
        majority[key] = None if not counted else "tie" if len(counted) > 1 and counted[1][1] == counted[0][1] \
            else counted[0][0]
    assert outcomes(tmp_path / "jury") == majority
    want = scores(majority)
    assert {k: v for k, v in summary.scores.items() if v is not None} == pytest.approx(want, abs=1e-12)
    for key, value in want.items():
        low, high = summary.intervals[key]
        assert low <= value <= high
    assert summary.jury == [f"openai:judge-{m}" for m in MEMBERS] and summary.judge.startswith("jury:majority(")
    costs = [json.loads((runs / m / "summary.json").read_text())["usage"]["results"]["cost_usd"] for m in MEMBERS]
    assert None not in costs and summary.usage.results.cost_usd == pytest.approx(sum(costs))
    assert summary.usage.requests == 0 and summary.position is None
    assert summary.agreement.samples == 3  # how often all members agree
    # nothing sent, nothing cached: the cache folder is as it was
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (runs / "cache").iterdir()) == before
    written = json.loads((tmp_path / "jury" / "summary.json").read_text())
    assert written["jury"] == summary.jury and written["calibration"]["comparisons"] == len(majority)


def test_the_mean_probability_rule_by_hand(runs, tmp_path):
    summary = build([runs / m for m in MEMBERS], tmp_path / "jury", rule="mean-prob")
    probs = {m: label_probs(runs / m) for m in MEMBERS}
    verdicts = {}
    for key in probs["a"]:
        right, wrong, tie = (sum(probs[m][key][i] for m in MEMBERS) / 3 for i in range(3))
        verdicts[key] = "tie" if tie > max(right, wrong) or right == wrong else "win" if right > wrong else "loss"
    assert outcomes(tmp_path / "jury") == verdicts
    assert {k: v for k, v in summary.scores.items() if v is not None} == pytest.approx(scores(verdicts), abs=1e-12)
    q = [p[0] + p[2] / 2 for p in (tuple(sum(probs[m][k][i] for m in MEMBERS) / 3 for i in range(3))
                                   for k in probs["a"])]
    assert summary.calibration.brier.value == pytest.approx(sum((1 - x) ** 2 for x in q) / len(q))


def test_compare_reads_a_jury_and_measures_agreement_by_hand(runs, tmp_path):
    build([runs / m for m in MEMBERS], tmp_path / "jury")
    result = compare(read_run(tmp_path / "jury"), read_run(runs / "b"), measures=True)
    assert result.shared == result.overall.records and result.only_a == result.only_b == 0
    assert result.differs == ["judge: jury:majority(openai:judge-a, openai:judge-b, openai:judge-c) vs openai:judge-b"]
    jury, b = outcomes(tmp_path / "jury"), outcomes(runs / "b")
    both = [(jury[k], b[k]) for k in jury if jury[k] is not None and b[k] is not None]
    n = len(both)
    observed = sum(x == y for x, y in both) / n
    rows, cols = Counter(x for x, _ in both), Counter(y for _, y in both)
    chance = sum(rows[c] * cols[c] for c in ("win", "loss", "tie")) / n / n
    agreement = result.agreement
    assert agreement.comparisons == n and agreement.raw.value == pytest.approx(observed)
    assert agreement.kappa.value == pytest.approx((observed - chance) / (1 - chance))
    assert set(result.probabilities) == {"brier", "ece", "auroc"}
    assert "Cohen's kappa" in cli_compare(tmp_path / "jury", runs / "b")


def cli_compare(a: Path, b: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["compare", str(a), str(b)]) == 0
    return out.getvalue()


def test_the_jury_command_and_reports(runs, tmp_path, capsys):
    assert cli.main(["jury", *(str(runs / m) for m in MEMBERS), "--out", str(tmp_path / "j")]) == 0
    out = capsys.readouterr().out
    assert "jury" in out and "verdict probabilities on" in out
    [jury] = load_runs([tmp_path / "j"])
    assert jury.jury and "jury" in render_html([jury, *load_runs([runs / "a"])])
    member = load_runs([runs / "a"])
    assert 'class="reliability"' in render_html(member) and '<ul class="behaviour">' in render_html(member)
    assert "## Behaviour" in render_markdown(member) and "verdict probabilities on" in render_markdown(member)
    # another jury may not overwrite it without --replace; a run without probabilities has no mean-prob
    assert cli.main(["jury", str(runs / "a"), str(runs / "b"), "--out", str(tmp_path / "j")]) == 2
    assert cli.main(["jury", str(runs / "a"), str(runs / "mock"), "--rule", "mean-prob",
                     "--out", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "holds a run of another judge" in err[0]
    assert err[-1] == f"rmb-judge: --rule mean-prob: {runs / 'mock'} has no verdict probabilities (a run with " \
                      "--verdict-probs has them)"


def test_a_jury_of_an_incomplete_member_says_so(runs, tmp_path, capsys):
    """A member stopped early (here: its summary says so) scored fewer records: the jury
    covers those and exits 1."""
    partial = tmp_path / "a-partial"
    shutil.copytree(runs / "a", partial)
    summary = json.loads((partial / "summary.json").read_text())
    (partial / "summary.json").write_text(json.dumps({**summary, "complete": False, "stopped_reason": "budget"}))
    assert cli.main(["jury", str(partial), str(runs / "b"), "--out", str(tmp_path / "j")]) == 1
    err = capsys.readouterr().err
    assert "rmb-judge: incomplete: a member run is incomplete" in err
    written = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert written["complete"] is False and any("is incomplete" in w for w in written["warnings"])


@pytest.mark.timeout(20)
def test_a_member_samples_file_that_is_no_regular_file_is_refused_unread(runs, tmp_path, capsys):
    """A FIFO would block the jury forever: refused before reading, as report and compare refuse it."""
    copy = tmp_path / "b"
    shutil.copytree(runs / "b", copy)
    (copy / "samples.jsonl").unlink()
    os.mkfifo(copy / "samples.jsonl")
    assert cli.main(["jury", str(runs / "a"), str(copy), "--out", str(tmp_path / "j")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{copy / 'samples.jsonl'}: not a regular file" in err


def test_a_run_counted_twice_is_refused(runs, tmp_path, capsys, monkeypatch):
    """The same run given twice, or a member that is already in a jury given beside it, would
    count its verdicts twice: one line naming it, nothing written. Members are recorded by
    their absolute paths, so this holds for a jury built from another folder."""
    assert cli.main(["jury", str(runs / "a"), str(runs / "a"), str(runs / "b"), "--out", str(tmp_path / "j")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{runs / 'a'}" in err and "twice" in err
    monkeypatch.chdir(runs)
    assert cli.main(["jury", "a", "b", "--out", str(tmp_path / "ab")]) == 0
    monkeypatch.chdir(tmp_path)
    manifest = json.loads((tmp_path / "ab" / "manifest.json").read_text())
    assert [m["path"] for m in manifest["jury"]["members"]] == [str(runs / "a"), str(runs / "b")]
    capsys.readouterr()
    assert cli.main(["jury", str(tmp_path / "ab"), str(runs / "b"), str(runs / "c"), "--out", str(tmp_path / "j")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{runs / 'b'}" in err and f"{tmp_path / 'ab'}" in err
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize("selection", [
    ["--scenarios", "*Harmlessness/S1", "--limit", "20", "--order", "both"],  # 8 linked sets of records
    ["--scenarios", "*Harmlessness/S1", "--sample", "0.3", "--seed", "3"],
    ["--scenarios", "*Harmlessness/S1", "--scenarios", "*Chat/Discussion", "--precision", "0.1"],
], ids=["linked", "sample", "precision"])
def test_a_jury_of_two_copies_of_a_run_is_that_run(selection, data_root, tmp_path, capsys):
    """Two copies of one run agree on every verdict, so their jury must score exactly what the
    run scored, with the same intervals: records linked by a shared comparison are one
    cluster, a --sample or --precision sample's scenarios weigh as in the whole selection,
    and a --precision run's intervals keep their critical value for stopping."""
    run_ = tmp_path / "run"
    assert cli.main(["run", "--judge", "mock", "--data", str(data_root), "--out", str(run_),
                     "--cache", str(tmp_path / "cache"), "--no-progress", *selection]) == 0
    shutil.copytree(run_, tmp_path / "copy")
    assert cli.main(["jury", str(run_), str(tmp_path / "copy"), "--out", str(tmp_path / "jury")]) == 0
    capsys.readouterr()
    member, jury = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("run", "jury"))
    assert jury["data"]["records_scored"] == member["data"]["records_scored"]
    def numbers(summary: dict) -> list:
        return [(key, summary["scores"][key], *(summary["intervals"][key] or ())) for key in sorted(summary["scores"])
                ] + [(s["category_path"], s["accuracy"], *s["interval"]) for s in summary["scenarios"]]

    assert numbers(jury) == [pytest.approx(row, abs=1e-12) for row in numbers(member)]


def test_members_of_different_selections_make_a_jury_of_the_records_they_share(runs, data_root, tmp_path, capsys):
    """A member of 2 records per scenario and one of 1 share the first record of each: the jury's
    selection says so (the report ranks it with the 1-record run, not as a "full selection");
    a member that judged a sample of another selection is refused, its sample being no sample
    of what the members share."""
    common = [arg for glob in SELECTION["scenarios"] for arg in ("--scenarios", glob)]
    assert cli.main(["run", "--judge", "mock", "--data", str(data_root), "--out", str(tmp_path / "one"),
                     "--cache", str(tmp_path / "cache"), "--no-progress", *common, "--limit", "1"]) == 0
    summary = build([runs / "a", tmp_path / "one"], tmp_path / "jury")
    assert (summary.settings.limit, summary.settings.scenarios) == (1, SELECTION["scenarios"])
    assert summary.data.records == json.loads((tmp_path / "one" / "summary.json").read_text())["data"]["records"]
    shown = load_runs([tmp_path / "jury", tmp_path / "one"])
    assert "first 1 records per scenario" in render_markdown(shown) and "Another selection" not in render_markdown(
        shown)
    assert cli.main(["run", "--judge", "mock", "--data", str(data_root), "--out", str(tmp_path / "sampled"),
                     "--cache", str(tmp_path / "cache"), "--no-progress", *common, "--sample", "0.5"]) == 0
    capsys.readouterr()
    assert cli.main(["jury", str(tmp_path / "sampled"), str(runs / "a"), "--out", str(tmp_path / "j2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{tmp_path / 'sampled'} judged a sample" in err


def test_a_majority_jury_has_probabilities_only_where_every_member_gives_one(runs, tmp_path):
    """Beside a member without probabilities, the others' mean is not the jury's: its
    calibration would be theirs (with one member: exactly that member's Brier, ECE and AUROC)."""
    summary = build([runs / "a", runs / "mock"], tmp_path / "jury")
    assert summary.calibration is None
    lines = [json.loads(line) for line in (tmp_path / "jury" / "samples.jsonl").read_text().splitlines()]
    assert lines and all(line["probs"] is None for line in lines)


def test_kappa_of_judges_that_give_one_verdict_throughout_is_undefined_not_nan(runs, tmp_path, capsys):
    """Two judges right on every comparison agree on all of them, but kappa's chance agreement is
    then 1 and kappa 0/0: said in words, null in --json (NaN is no JSON)."""
    shutil.copytree(runs / "c", tmp_path / "c")
    assert set(outcomes(runs / "c").values()) == {"win"}
    assert cli.main(["compare", str(runs / "c"), str(tmp_path / "c"), "--json"]) == 0

    def no_nan(word):
        raise AssertionError(f"{word} in --json")

    said = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    assert said["agreement"]["raw"]["value"] == 1.0 and said["agreement"]["kappa"]["value"] is None
    assert "Cohen's kappa undefined (both gave one and the same verdict throughout)" in cli_compare(runs / "c", tmp_path / "c")


def test_a_jury_of_a_suspect_member_is_suspect(runs, tmp_path, capsys):
    """A member whose own verdicts could not be trusted (suspect: too many unparsed) makes the
    jury suspect too: exit 6, and its warnings name the member."""
    suspect = tmp_path / "b-suspect"
    shutil.copytree(runs / "b", suspect)
    summary = json.loads((suspect / "summary.json").read_text())
    (suspect / "summary.json").write_text(json.dumps({**summary, "suspect": True, "warnings": ["60% unparsed"]}))
    assert cli.main(["jury", str(runs / "a"), str(suspect), str(runs / "c"), "--out", str(tmp_path / "j")]) == 6
    assert "suspect jury" in capsys.readouterr().err
    written = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert written["suspect"] is True and any(str(suspect) in w and "suspect" in w for w in written["warnings"])


def said(outcome: str | None, probs: tuple[float, float, float] | None = None) -> JudgedComparison:
    """A member's comparison judged once, the preferred answer shown first."""
    verdict = {"win": "A", "loss": "B", "tie": "tie", None: None}[outcome]
    return JudgedComparison([Presented("AB", verdict, probs)])


@pytest.mark.parametrize(("members", "expected"), [
    (["win", "loss"], "tie"),  # two members that disagree: a split
    (["win", "win", "loss", "loss"], "tie"),  # an even split
    (["win", "win", "loss", None], "win"),  # an abstaining member does not count
    (["win", "loss", "tie"], "tie"),  # three ways
    (["tie", "tie", "win"], "tie"),
    ([None, None], None),  # no member read a verdict
])
def test_majority_splits_and_abstentions(members, expected):
    assert verdict([said(m) for m in members], "majority")[0] == expected


def test_mean_probability_ties_and_abstentions():
    even = [said("win", (0.7, 0.3, 0.0)), said("loss", (0.3, 0.7, 0.0))]
    assert verdict(even, "mean-prob") == ("tie", pytest.approx((0.5, 0.5, 0.0)))
    abstains = [said("win", (0.6, 0.3, 0.1)), said(None)]
    assert verdict(abstains, "mean-prob") == ("win", pytest.approx((0.6, 0.3, 0.1)))
    assert verdict(abstains, "majority") == ("win", None)  # not every member gave probabilities
    assert verdict([said(None), said(None)], "mean-prob") == (None, None)


def test_scenarios_whose_data_files_the_members_judged_in_other_versions_are_left_out_and_named(runs, tmp_path):
    """A member that judged another version of a data file (its SHA-256 in manifest.json) saw
    other texts: those records are left out, and the jury's warnings say which file."""
    other = tmp_path / "b-other-data"
    shutil.copytree(runs / "b", other)
    manifest = json.loads((other / "manifest.json").read_text())
    changed = sorted(manifest["data"]["files"])[0]
    manifest["data"]["files"][changed] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    whole = build([runs / "a", runs / "b"], tmp_path / "whole")
    summary = build([runs / "a", other], tmp_path / "jury")
    scenario = changed.removesuffix(".json")
    assert summary.data.records < whole.data.records
    assert not any(s.category_path == scenario for s in summary.scenarios)
    assert any(changed in w and "left out" in w for w in summary.warnings)


def test_a_jury_written_over_one_of_its_members_is_refused(runs, tmp_path, capsys):
    """--out naming a member's folder (with --replace, which would let it through) would destroy
    the member's own run: refused in one line, the member left as it was."""
    member = tmp_path / "b"
    shutil.copytree(runs / "b", member)
    before = sorted((p.name, p.read_bytes()) for p in member.iterdir())
    assert cli.main(["jury", str(runs / "a"), str(member), "--out", str(member), "--replace"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "member" in err
    assert sorted((p.name, p.read_bytes()) for p in member.iterdir()) == before


def test_a_jurys_comparisons_without_probabilities_say_why(runs, tmp_path):
    """Where one member has no probability for a comparison, the jury has none: the calibration
    line says a member gave none, not that no verdict token was read."""
    partial = tmp_path / "c"
    shutil.copytree(runs / "c", partial)
    lines = [json.loads(line) for line in (partial / "samples.jsonl").read_text().splitlines()]
    lines[0]["probs"] = None
    (partial / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = build([runs / "a", partial], tmp_path / "jury")
    assert summary.calibration.without == 1
    [said] = [line for line in report_lines(load_runs([tmp_path / "jury"])[0]) if line.startswith("verdict probabilities")]
    assert "(1 without: a member gave none)" in said
@pytest.mark.parametrize("kind", ["limit", "precision"])
def test_a_jury_of_one_run_twice_keeps_its_linked_records(data_root, tmp_path, kind):
    """A jury of a run and its copy has the run's verdicts, so its scores and their intervals
    are the run's own: records holding one comparison in two sections stay linked (their
    covariance in overall's interval), and its samples.jsonl names them for `compare`; a
    --precision run's records stand for their scenarios' records, as in its own summary."""
    selection = records.Selection(scenarios=["*Helpfulness/Chat*"], limit=None if kind == "precision" else 10)
    run(make_config(judge="mock", data=data_root, out=tmp_path / "a", cache=tmp_path / "cache", selection=selection,
                    precision=0.08 if kind == "precision" else None))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    lines = [json.loads(line) for line in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    kinds = defaultdict(set)
    for line in lines:
        kinds[line["link"]].add(line["category_path"].split("/")[0])
    assert any(len(k) == 2 for k in kinds.values())  # some records are linked across the two sets
    build([tmp_path / "a", tmp_path / "b"], tmp_path / "jury")
    member, jury = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("a", "jury"))
    if kind == "precision":  # a sample of the selection
        assert member["precision"]["records"] < member["precision"]["population"]
    assert jury["scores"] == member["scores"]
    assert jury["intervals"] == member["intervals"]
    links = {(s["category_path"], s["uid"]): s["link"]
             for s in map(json.loads, (tmp_path / "jury" / "samples.jsonl").read_text().splitlines())}
    assert None not in links.values()
    assert len(set(links.values())) == len(kinds)  # the same linked sets
    assert not any("linked" in note for note in compare(read_run(tmp_path / "jury"), read_run(tmp_path / "a")).notes)


def damaged(runs: Path, tmp_path: Path, change) -> Path:
    """A copy of member a whose samples.jsonl lines are passed through `change`."""
    folder = tmp_path / "damaged"
    shutil.copytree(runs / "a", folder)
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    (folder / "samples.jsonl").write_text("".join(json.dumps(change(row)) + "\n" for row in rows))
    return folder


@pytest.mark.parametrize(("probs", "said"), [
    ({"A": float("nan"), "B": 0.5, "tie": 0.0}, "probs.A: expected a finite number, got NaN"),
    ({"A": 5.0, "B": 0.5, "tie": 0.0}, "probs.A: 5.0 is outside [0, 1]"),
    ({"A": "0.5", "B": 0.5, "tie": 0.0}, 'probs.A: expected a number, got "0.5"'),
    ({"A": 0.5, "B": 0.5}, "probs.tie: missing"),
])
def test_damaged_probabilities_are_one_line_for_compare_and_jury(runs, tmp_path, capsys, probs, said):
    """A member's samples.jsonl whose `probs` are no probabilities is refused in one line naming
    the file, line and field (exit 2), as its `record_correct` would be: never a traceback, a
    NaN Brier score or a jury verdict read from them."""
    folder = damaged(runs, tmp_path, lambda row: {**row, "probs": probs})
    for argv in (["compare", str(folder), str(runs / "b")],
                 ["jury", str(folder), str(runs / "b"), "--rule", "mean-prob", "--out", str(tmp_path / "j")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{folder / 'samples.jsonl'}, line 1: {said}" in err[0], err
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize("kind", ["zero", "fifo"])
def test_a_jury_member_whose_samples_are_no_file_is_refused_unread(runs, tmp_path, capsys, kind):
    """samples.jsonl linked to /dev/zero (read until memory ran out) or a FIFO (waited on)."""
    import os

    folder = tmp_path / "member"
    shutil.copytree(runs / "a", folder)
    (folder / "samples.jsonl").unlink()
    if kind == "zero":
        (folder / "samples.jsonl").symlink_to("/dev/zero")
    else:
        os.mkfifo(folder / "samples.jsonl")
    assert cli.main(["jury", str(folder), str(runs / "b"), "--out", str(tmp_path / "j")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rmb-judge: {folder / 'samples.jsonl'}: not a regular file (a device, a FIFO or a link to one)"]
