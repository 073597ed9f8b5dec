"""`rmb-judge compare` and the report's paired comparisons, on real run folders: a judge that
always agrees with RMB's labels (the fake server's label judge) against the mock judge."""

from __future__ import annotations

import io
import json
from collections import defaultdict

import pytest
from conftest import RMB, make_config
from fake_api import FAKE_KEY, FakeAPI, label_judge
from rich.console import Console

from rmb_judge import cli, records
from rmb_judge.compare import compare, read_run
from rmb_judge.report import load_runs, render_html, render_markdown, render_terminal
from rmb_judge.session import run

SELECTION = dict(scenarios=["*Chat*", "*Harmlessness/S3*"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    """label: the label judge on 6 records per scenario; mock: the mock judge on the same;
    short: the mock judge on 3 per scenario."""
    root = tmp_path_factory.mktemp("compare")
    dataset = RMB.load(data_root, records.Selection(**SELECTION))
    with pytest.MonkeyPatch.context() as patch, FakeAPI(label_judge(dataset.records)).run_in_thread() as api:
        patch.setenv("OPENAI_API_KEY", FAKE_KEY)
        run(make_config(judge="openai:gpt-4o-mini", data=data_root, out=root / "label", cache=root / "cache",
                        base_urls=[api.openai_url], selection=records.Selection(limit=6, **SELECTION)))
    run(make_config(judge="mock", data=data_root, out=root / "mock", cache=root / "cache",
                    selection=records.Selection(limit=6, **SELECTION)))
    run(make_config(judge="mock", data=data_root, out=root / "short", cache=root / "cache", template="arena-hard",
                    selection=records.Selection(limit=3, **SELECTION)))
    return root


def record_scores(folder) -> dict[tuple[str, str], float]:
    """Each record's score recomputed from its comparisons in samples.jsonl (BoN: all won)."""
    comparisons: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in (folder / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        comparisons[(sample["category_path"], sample["uid"])].append(sample["correct"])
    return {k: (v[0] if k[0].startswith("Pairwise") else float(all(x == 1 for x in v))) for k, v in comparisons.items()}


def test_the_difference_of_each_score_on_the_same_records(runs):
    label, mock = json.loads((runs / "label" / "summary.json").read_text()), record_scores(runs / "mock")
    assert label["scores"]["overall"] == 1.0
    result = compare(read_run(runs / "label"), read_run(runs / "mock"))
    assert result.shared == len(mock) and result.only_a == result.only_b == 0
    assert result.differs == ["judge: openai:gpt-4o-mini vs mock"]
    by_key = {s.key: s for s in result.scores}
    assert set(by_key) == {k for k, v in label["scores"].items() if v is not None}
    for key, score in by_key.items():
        section = [v for (path, _), v in mock.items() if key == "overall" or _section(path) == key]
        if key != "overall":
            assert score.b == pytest.approx(sum(section) / len(section))
            assert score.records == len(section)
        assert score.a == 1.0 and score.difference == pytest.approx(1 - score.b)
        assert score.low < score.difference < score.high
    overall = result.overall
    assert overall is not None and overall.significant and overall.p_value < 0.001
    assert result.sentence().startswith(f"openai:gpt-4o-mini (label) is ahead of mock (mock) by "
                                        f"{100 * (1 - overall.b):.1f} points (95% CI")


def _section(path: str) -> str:
    kind, goal = path.split("/")[:2]
    return ("pairwise" if kind == "Pairwise_set" else "bon") + "_" + goal.lower()


def test_runs_on_different_selections_are_compared_on_what_they_share(runs):
    result = compare(read_run(runs / "mock"), read_run(runs / "short"))
    short = record_scores(runs / "short")
    assert result.shared == len(short) and result.only_a == len(record_scores(runs / "mock")) - len(short)
    assert "limit: 6 vs 3" in result.differs and "template: rmb vs arena-hard" in result.differs


def test_scenarios_whose_data_files_differ_are_left_out(runs, tmp_path):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(runs / "mock", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edited = sorted(manifest["data"]["files"])[0]
    manifest["data"]["files"][edited] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = compare(read_run(runs / "mock"), read_run(copy))
    dropped = sum(1 for path, _ in record_scores(copy) if f"{path}.json" == edited)
    assert dropped and result.shared == len(record_scores(copy)) - dropped
    assert any("1 scenarios left out: their data files differ" in note for note in result.notes)


def test_cli_compare_prints_the_sentence_and_json(runs, capsys):
    assert cli.main(["compare", str(runs / "mock"), str(runs / "label")]) == 0
    out = capsys.readouterr().out
    assert "openai:gpt-4o-mini (label) is ahead of mock (mock) by" in out and "records scored by both" in out
    assert cli.main(["compare", str(runs / "mock"), str(runs / "label"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shared"] > 0 and data["sentence"].startswith("openai:gpt-4o-mini (label) is ahead")
    assert {s["key"] for s in data["scores"]} >= {"overall", "pairwise_helpfulness"}


def test_runs_sharing_no_records_are_one_clear_line(runs, tmp_path, data_root, capsys):
    run(make_config(judge="mock", data=data_root, out=tmp_path / "code", cache=tmp_path / "cache",
                    selection=records.Selection(limit=2, scenarios=["*Code*"])))
    capsys.readouterr()
    assert cli.main(["compare", str(runs / "mock"), str(tmp_path / "code")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "share no scored records" in err


def test_an_older_samples_file_is_one_clear_line(runs, tmp_path, capsys):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(runs / "mock", copy)
    lines = [json.loads(line) for line in (copy / "samples.jsonl").read_text().splitlines()]
    (copy / "samples.jsonl").write_text("".join(json.dumps({k: v for k, v in line.items() if k != "record_correct"})
                                                + "\n" for line in lines))
    assert cli.main(["compare", str(runs / "mock"), str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "record_correct" in err and "--offline" in err


def test_report_compares_each_run_with_the_next(runs):
    shown = load_runs([runs / "mock", runs / "label"])
    out = io.StringIO()
    render_terminal(shown, Console(file=out, width=300))
    line = next(line for line in out.getvalue().splitlines() if line.startswith("#1 vs #2"))
    assert "#1 is ahead of #2 by" in line and "judge: openai:gpt-4o-mini vs mock" in line
    assert "## Paired comparisons" in render_markdown(shown)
    assert 'class="paired"' in render_html(shown)


def test_swapping_a_sampled_run_and_a_full_run_only_flips_the_sign(tmp_path, data_root):
    """A --precision run weighs each scenario by its size in the selection, whichever side of
    the comparison it stands on."""
    selection = records.Selection(**SELECTION)
    run(make_config(judge="mock", data=data_root, out=tmp_path / "full", cache=tmp_path / "cache", selection=selection))
    run(make_config(judge="mock", data=data_root, out=tmp_path / "sample", cache=tmp_path / "cache2",
                    selection=selection, precision=0.1, template="arena-hard"))
    full, sample = read_run(tmp_path / "full"), read_run(tmp_path / "sample")
    forward, backward = compare(full, sample), compare(sample, full)
    assert forward.shared == backward.shared < len(full.records)
    for ahead, behind in zip(forward.scores, backward.scores, strict=True):
        assert ahead.key == behind.key
        assert (ahead.a, ahead.b) == pytest.approx((behind.b, behind.a))
        assert ahead.difference == pytest.approx(-behind.difference)
    # on the shared (sampled) records, the full run's scores weighted as the sample's own summary weighs them
    sampled = json.loads((tmp_path / "sample" / "summary.json").read_text())
    overall = next(s for s in backward.scores if s.key == "overall")
    assert overall.a == pytest.approx(sampled["scores"]["overall"])


def test_a_sampled_run_is_weighted_as_its_summary_against_a_run_of_another_seed(tmp_path, data_root):
    """--seed draws a --precision run's sample and the full run's random orders; whatever the
    other run's seed, the sampled run's records stand for their scenarios as in its summary."""
    run(make_config(judge="mock", data=data_root, out=tmp_path / "full", cache=tmp_path / "cache",
                    selection=records.Selection(**SELECTION, seed=2)))
    run(make_config(judge="mock", data=data_root, out=tmp_path / "sample", cache=tmp_path / "cache",
                    selection=records.Selection(**SELECTION, seed=5), precision=0.15, template="arena-hard"))
    sampled = json.loads((tmp_path / "sample" / "summary.json").read_text())
    assert sampled["precision"]["records"] < sampled["precision"]["population"]
    result = compare(read_run(tmp_path / "sample"), read_run(tmp_path / "full"))
    assert "seed: 5 vs 2" in result.differs
    overall = next(s for s in result.scores if s.key == "overall")
    assert overall.a == pytest.approx(sampled["scores"]["overall"])
    for key, score in sampled["scores"].items():
        if score is not None and key != "overall":
            assert next(s for s in result.scores if s.key == key).a == pytest.approx(score)


def test_records_linked_across_sections_are_read_from_the_samples(runs, tmp_path):
    """samples.jsonl names each record's linked set (records holding an answer to the same
    conversation): here Best-of-N records share theirs with pairwise ones; a file without
    them is compared all the same, with a note."""
    import shutil

    mock = read_run(runs / "mock")
    assert mock.links is not None and len(mock.links) == len(mock.records)
    sections: dict[int, set[str]] = defaultdict(set)
    for (path, _), link in mock.links.items():
        sections[link].add(path.split("/")[0])
    assert any(len(kinds) == 2 for kinds in sections.values())
    assert not any("linked" in note for note in compare(mock, read_run(runs / "label")).notes)
    copy = tmp_path / "old"
    shutil.copytree(runs / "mock", copy)
    lines = [json.loads(line) for line in (copy / "samples.jsonl").read_text().splitlines()]
    (copy / "samples.jsonl").write_text("".join(json.dumps({k: v for k, v in line.items() if k != "link"}) + "\n"
                                                for line in lines))
    result = compare(read_run(copy), read_run(runs / "label"))
    assert any("lists no linked records" in note for note in result.notes) and result.overall is not None
