"""`rmb-judge compare` and the report's paired comparisons, on real run folders: a judge that
always agrees with RMB's labels (the fake server's label judge) against the mock judge."""

from __future__ import annotations

import io
import json
import os
import shutil
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


# ---------------------------------------------------------------- damaged run folders


def _kind(value) -> str:
    """A JSON value's kind: two numbers are one kind, true is not a number."""
    return {bool: "bool", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "null")


def _fields(value, path=()):
    """Every field path of a JSON value (a list's first item standing for the rest)."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _fields(item, (*path, key))
    elif isinstance(value, list) and value:
        yield from _fields(value[0], (*path, 0))


def _replaced(data, path, value):
    data = json.loads(json.dumps(data))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return data


WRONG = ("1", True, [], {}, float("nan"), 5.0, -1)
PARTS = 4
SAID = {("judge",): 'not an rmb-judge summary (no "judge" string)', ("benchmark",): "unknown benchmark"}


@pytest.mark.parametrize("part", range(PARTS))
def test_every_field_of_a_damaged_summary_is_read_or_one_line(part, runs, tmp_path):
    """Each field of a real summary (with every optional block filled) replaced by a value of
    each wrong kind: report and compare read it or refuse it in one line naming the file and
    the field, never a traceback; a value of another JSON kind than the field's, NaN, a score
    above 1 or a negative count is always refused. (The fields in PARTS parts, every PARTS-th
    one each, for the test workers to share.)"""
    import shutil

    from rmb_judge.errors import DataError
    from rmb_judge.summary import Agreement, Sampling

    folder = tmp_path / "damaged"
    shutil.copytree(runs / "label", folder)
    base = json.loads((folder / "summary.json").read_text())
    base["agreement"] = Agreement(3, 0.9, [0.8, 0.95], 0.96, [0.9, 0.99]).__dict__
    base["precision"] = Sampling(0.05, 2.05, 0.04, True, 3, 20, 40, 80, 40).__dict__
    base["position"]["by_section"] = {"pairwise_helpfulness": 0.5}
    base["position"]["by_section_intervals"] = {"pairwise_helpfulness": [0.4, 0.6]}
    other, tried, refused = read_run(runs / "mock"), 0, 0
    for path in list(_fields(base))[part::PARTS]:
        where = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in path).replace(".[", "[")
        original = base
        for key in path:
            original = original[key]
        for value in WRONG:
            (folder / "summary.json").write_text(json.dumps(_replaced(base, path, value)))
            tried += 1
            try:
                loaded = load_runs([folder])
                render_terminal(loaded, Console(file=io.StringIO(), width=120))
                render_markdown(loaded)
                render_html(loaded)
                compared = compare(read_run(folder), other)
                cli_render(compared)
            except DataError as error:
                refused += 1
                message, file = str(error), folder / "summary.json"
                assert message.startswith((f"{file}: {where}", f"{file}: {SAID.get(path)}")), message
                assert "\n" not in message
                continue
            numeric = _kind(original) == "number" and _kind(value) == "number"
            must_refuse = (
                (original is not None and _kind(value) != _kind(original))
                or (numeric and value != value)
                or (numeric and value == 5.0 and path[0] in ("scores", "intervals", "macro", "chance"))
                or (numeric and value == -1 and path[0] in ("sections", "data") and path[-1] != "root")
            )
            assert not must_refuse, f"{where} = {value!r} was accepted"
    assert tried > 900 / PARTS and refused > 0.8 * tried


def cli_render(comparison) -> str:
    from rmb_judge.compare import render

    return render(comparison)


def _samples_with(runs, tmp_path, change) -> str:
    """A copy of the mock run whose samples.jsonl lines went through `change` (a list of dicts
    in, a list out); the copy's path."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs / "mock", copy)
    lines = [json.loads(line) for line in (copy / "samples.jsonl").read_text().splitlines()]
    (copy / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in change(lines)))
    return str(copy)


@pytest.mark.parametrize("value", [5.0, -0.5, float("nan"), "1", True, [1]])
def test_a_record_score_that_is_no_score_is_one_line(value, runs, tmp_path, capsys):
    copy = _samples_with(runs, tmp_path, lambda lines: [{**lines[0], "record_correct": value}, *lines[1:]])
    assert cli.main(["compare", str(runs / "label"), copy]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "samples.jsonl, line 1: record_correct" in err


def test_every_field_compare_reads_of_a_sample_line_is_read_or_one_line(runs, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs / "mock", copy)
    lines = (copy / "samples.jsonl").read_text().splitlines()
    bon = json.loads(next(line for line in lines if json.loads(line)["loser_index"] is not None))
    for field in ("subset", "category_path", "uid", "loser_index", "order", "record_correct"):
        for value in WRONG:
            # a line names its record's subset by `subset` (and RMB's category_path), or, written
            # before issue 16, by category_path alone: that is the one read then
            line = {k: v for k, v in bon.items() if field != "category_path" or k != "subset"}
            (copy / "samples.jsonl").write_text("\n".join([json.dumps({**line, field: value}), *lines]) + "\n")
            code = cli.main(["compare", str(runs / "label"), str(copy)])
            err = capsys.readouterr().err.strip()
            if code == 2:
                assert len(err.splitlines()) == 1 and "samples.jsonl, line 1: " in err, err
            else:
                assert code == 0 and _kind(value) == _kind(bon[field]) and value == value, (field, value)


def test_two_lines_for_one_presentation_are_one_line(runs, tmp_path, capsys):
    """A repeated line is refused, not read as "the last one wins"; so are two lines of one
    record that disagree on its score."""
    copy = _samples_with(runs, tmp_path, lambda lines: [*lines, {**lines[0], "record_correct": 1 - lines[0]["record_correct"]}])
    assert cli.main(["compare", str(runs / "label"), copy]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a second line for uid" in err and "line 1 has it" in err

    def disagree(lines):
        pair = next(i for i, line in enumerate(lines) if line["loser_index"] == 1)
        lines[pair]["record_correct"] = 1 - lines[pair]["record_correct"]
        return lines

    copy = _samples_with(runs, tmp_path / "b", disagree)
    assert cli.main(["compare", copy, str(runs / "label")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "record_correct" in err and "on line" in err


def test_a_folder_without_manifest_is_one_line(runs, tmp_path, capsys):
    copy = _samples_with(runs, tmp_path, lambda lines: lines)
    (tmp_path / "copy" / "manifest.json").unlink()
    assert cli.main(["compare", str(runs / "label"), copy]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no manifest.json" in err and "--offline" in err


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["samples.jsonl", "summary.json", "manifest.json"])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_file_that_is_no_regular_file_is_refused_unread(name, special, runs, tmp_path, capsys):
    """A link to /dev/zero is read until memory runs out and a FIFO blocks forever: both are
    refused before reading, by compare and report alike."""
    copy = tmp_path / "copy"
    _samples_with(runs, tmp_path, lambda lines: lines)
    (copy / name).unlink()
    if special == "fifo":
        os.mkfifo(copy / name)
    else:
        (copy / name).symlink_to(special)
    assert cli.main(["compare", str(runs / "label"), str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{copy / name}: not a regular file" in err
    if name == "summary.json":
        assert cli.main(["report", str(copy)]) == 2
        assert f"{copy / name}: not a regular file" in capsys.readouterr().err


def test_report_pairs_runs_only_within_a_selection_group(runs):
    """`short` judged 3 records per scenario, the others 6: another selection, ranked apart, so
    never paired with the run ranked just above it (they share its 3 records per scenario)."""
    shown = load_runs([runs / "mock", runs / "label", runs / "short"])
    assert compare(read_run(runs / "mock"), read_run(runs / "short")).shared > 0
    markdown = render_markdown(shown)
    paired = [line for line in markdown.splitlines() if line.startswith("- #") and " vs #" in line]
    assert len(paired) == 1 and paired[0].startswith("- #1 vs #2 ")
    assert "Another selection" in markdown


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


def test_the_same_selection_given_in_another_order_is_no_difference(runs, tmp_path):
    """--scenarios X --scenarios Y selects what --scenarios Y --scenarios X selects: compare (and
    the report's paired comparisons, and a jury of the runs) say the runs differ in judge only."""
    copy = tmp_path / "label"
    shutil.copytree(runs / "label", copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["settings"]["scenarios"] = summary["settings"]["scenarios"][::-1]
    summary["settings"]["sets"] = summary["settings"]["sets"][::-1]
    (copy / "summary.json").write_text(json.dumps(summary))
    assert len(summary["settings"]["scenarios"]) > 1
    assert compare(read_run(copy), read_run(runs / "mock")).differs == ["judge: openai:gpt-4o-mini vs mock"]
