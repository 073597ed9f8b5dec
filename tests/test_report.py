"""`rmb-judge report`: loading run folders and the terminal, Markdown and HTML renderings."""

from __future__ import annotations

import base64
import colorsys
import io
import itertools
import json
import random
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import DATA, present_files
from rich.console import Console

from rmb_judge import benchmarks
from rmb_judge.errors import DataError, RmbJudgeError
from rmb_judge.report import load_runs, render_html, render_markdown, render_terminal
from rmb_judge.report.html import ABSENT
from rmb_judge.report.view import board

RMB = benchmarks.get("rmb")
SCORE_KEYS = (*RMB.leaderboard, "overall")

CHANCE = {
    "pairwise_helpfulness": 0.5,
    "pairwise_harmlessness": 0.5,
    "bon_helpfulness": 0.215,
    "bon_harmlessness": 0.22,
}


def dataset_paths() -> list[str]:
    """Every scenario's category_path in the real data copy (46 pairwise + 49 Best-of-N files)."""
    paths = sorted(path.relative_to(DATA).with_suffix("").as_posix() for path in DATA.rglob("*.json"))
    assert len(paths) == len(present_files()), f"expected the RMB data copy at {DATA}"
    return paths


def section_of(path: str) -> str:
    set_dir, section_dir = path.split("/")[:2]
    return ("pairwise" if set_dir == "Pairwise_set" else "bon") + "_" + section_dir.lower()


# settings as `rmb-judge run` writes them for a full run with the default flags
FULL = {"sets": ["pairwise", "bon"], "sections": ["helpfulness", "harmlessness"], "scenarios": [],
        "limit": None, "sample": None, "seed": 0, "template": "rmb", "template_kind": "pairwise",
        "verdict_style": "rmb", "order": "random", "samples": 1, "temperature": 0.0, "max_tokens": 2048}


def write_run(
    folder: Path,
    judge: str,
    paths: list[str],
    seed: int,
    *,
    settings: dict | None,
    complete: bool = True,
    simulated: bool = False,
    chance: dict | None = CHANCE,
    position: dict | None = None,
    agreement: dict | None = None,
    cost: float | None = 0.0,
    results_cost: float | None = None,
    records: int | None = None,
    suspect: bool | None = None,
    warnings: list[str] | None = None,
    stopped_reason: str | None = None,
    data_files: dict | None = None,
    overall: float | None = None,
) -> dict:
    """A summary.json as `rmb-judge run` writes it, with scores that follow from its scenarios.

    `settings` gets the selection keys of a full run unless it names them; `records` (selected)
    adds the `data` block; `results_cost`, `suspect` and `warnings` add the newer fields.
    """
    rng = random.Random(seed)
    scenarios, sections = [], {}
    for path in paths:
        n = random.Random(path).randint(8, 30)  # a scenario has as many records in every run that selects it
        wins = rng.randint(0, n)
        unparsed, refused, failed = rng.randint(0, 2), rng.randint(0, 1), rng.randint(0, 1)
        set_, section = section_of(path).split("_")
        scenarios.append({
            "category_path": path, "set": set_, "section": section, "n": n, "accuracy": wins / n,
            "unparsed": unparsed, "refused": refused, "failed": failed,
        })
        totals = sections.setdefault(section_of(path), {"n": 0, "wins": 0, "unparsed": 0, "refused": 0, "failed": 0})
        for key, value in (("n", n), ("wins", wins), ("unparsed", unparsed), ("refused", refused), ("failed", failed)):
            totals[key] += value
    scores = {key: None for key in SCORE_KEYS}
    for key, totals in sections.items():
        scores[key] = totals["wins"] / totals["n"]
    present = [scores[key] for key in SCORE_KEYS[:4] if scores[key] is not None]
    scores["overall"] = sum(present) / len(present) if overall is None else overall
    n = sum(s["n"] for s in scenarios)
    summary = {
        "judge": judge, "simulated": simulated, "complete": complete,
        "stopped_reason": stopped_reason if stopped_reason or complete else "budget",
        "settings": None if settings is None else {**FULL, **settings},
        "scores": scores,
        "chance": None if chance is None else {key: chance[key] for key in sections},
        "sections": sections, "scenarios": scenarios, "position": position, "agreement": agreement,
        "usage": {"requests": 10, "cache_hits": 0, "retries": 0, "failed": 0, "unparsed": 0, "refused": 0,
                  "input_tokens": 1000, "output_tokens": 100, "cost_usd": cost},
    }
    if records is not None:
        summary["data"] = {
            "root": str(DATA), "scenario_files_found": 95, "scenario_files_read": len(paths), "records": records,
            "records_scored": n, "comparisons_judged": n if complete else 2 * n,
            "comparisons_expected": n if complete else 10 * records,
        }
    if results_cost is not None:
        summary["usage"]["results"] = {"input_tokens": 1000, "output_tokens": 100, "cost_usd": results_cost}
    if suspect is not None:
        summary["suspect"], summary["warnings"] = suspect, warnings or []
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (folder / "samples.jsonl").write_text("", encoding="utf-8")
    manifest = {} if data_files is None else {"judge": judge, "data": {"root": str(DATA), "files": data_files}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return summary


@pytest.fixture
def runs3(tmp_path: Path) -> dict[str, dict]:
    """Three runs: a full real-judge run, a partial ablation of it (pairwise only), and a mock run."""
    paths = dataset_paths()
    pairwise = [p for p in paths if p.startswith("Pairwise_set/")]
    partial = [p for p in pairwise if "Helpfulness" in p] + [p for p in pairwise if "Harmlessness" in p][:5]
    return {
        "full": write_run(
            tmp_path / "gpt-full", "openai:gpt-4o-mini", paths, 1,
            settings={"template": "rmb", "order": "random", "samples": 1, "temperature": 0.0, "seed": 0},
            position={"first_pick_rate": 0.55, "by_section": {}, "consistency": None}, cost=0.4213,
        ),
        "ablation": write_run(
            tmp_path / "gpt-ablation", "openai:gpt-4o-mini", partial, 2, complete=False,
            settings={"template": "arena-hard", "order": "both", "samples": 3, "temperature": 0.7, "seed": 0,
                      "limit": 20},
            position={"first_pick_rate": 0.61, "by_section": {}, "consistency": 0.81}, cost=1.5,
            agreement={"samples": 3, "unanimous_rate": 0.93, "mean_majority_share": 0.97},
        ),
        "mock": write_run(
            tmp_path / "mock", "mock", paths, 3, simulated=True,
            settings={"template": "rmb", "order": "fixed", "samples": 1, "temperature": 0.0, "seed": 0},
        ),
    }


def listed(runs3: dict[str, dict]) -> list[dict]:
    """The order the report lists runs3 in: the two complete full runs by overall, then the partial one."""
    complete = sorted((runs3["full"], runs3["mock"]), key=lambda summary: -summary["scores"]["overall"])
    return [*complete, runs3["ablation"]]


def folders(tmp_path: Path) -> list[Path]:
    return [tmp_path / "gpt-full", tmp_path / "gpt-ablation", tmp_path / "mock"]


def terminal(runs, width: int, published: bool = False) -> str:
    """What `rmb-judge report` prints when its stdout is a pipe or a file: plain text, `width` columns."""
    out = io.StringIO()
    render_terminal(runs, Console(file=out, force_terminal=False, width=width), published=published)
    return out.getvalue()


class Elements(HTMLParser):
    """Every element with its attributes and own text, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.all: list[dict] = []
        self._open: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "text": "", **dict(attrs)}
        self.all.append(element)
        self._open.append(element)

    def handle_endtag(self, tag):
        while self._open and self._open.pop()["tag"] != tag:
            pass

    def handle_data(self, data):
        if self._open:
            self._open[-1]["text"] += data

    def having(self, tag: str, css: str) -> list[dict]:
        return [e for e in self.all if e["tag"] == tag and css in e.get("class", "").split()]


def hue(colour: str) -> float:
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hsv(r, g, b)[0]


# ---------------------------------------------------------------- loading


def test_load_runs_reads_each_summary(runs3, tmp_path):
    full, ablation, mock = load_runs(folders(tmp_path))
    assert (full.judge, full.label, full.simulated, full.complete) == (
        "openai:gpt-4o-mini", "rmb · random · k=1", False, True,
    )
    assert ablation.label == "arena-hard · both · k=3 T=0.7 · limit=20" and not ablation.complete
    assert mock.simulated and mock.label == "rmb · fixed · k=1"
    sections = runs3["full"]["sections"].values()
    assert full.n == sum(s["n"] for s in sections) and full.unparsed == sum(s["unparsed"] for s in sections)
    assert ablation.scores["bon_helpfulness"] is None and ablation.unanimous == 0.93
    assert len(full.scenarios) == len(dataset_paths()) and full.cost_usd == 0.4213


def test_a_folder_without_summary_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RmbJudgeError) as caught:
        load_runs([tmp_path / "empty"])
    message = str(caught.value)
    assert str(tmp_path / "empty") in message and "summary.json" in message and "\n" not in message


def test_bad_json_names_the_file_and_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text('{"judge": "mock",\n  "scores": }', encoding="utf-8")
    with pytest.raises(DataError, match=r"run/summary\.json: not valid JSON .* line 2"):
        load_runs([tmp_path / "run"])


@pytest.mark.parametrize("content, expected", [
    ('["judge"]', 'not an rmb-judge summary \\(no "judge" string\\)'),
    ('{"judge": 1}', 'not an rmb-judge summary'),
    ('{"judge": "mock", "benchmark": "nope"}', "unknown benchmark 'nope'"),
])
def test_a_json_that_is_no_summary_of_a_known_benchmark_is_one_clear_error(tmp_path, content, expected):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'run' / 'summary.json'))}: {expected}"):
        load_runs([tmp_path / "run"])


def test_report_passes_over_folders_without_a_summary_and_takes_their_parent(tmp_path, capsys, monkeypatch):
    """`report runs/*` where one folder holds no run (a failed command's) reports the others
    with a note; `report runs` reports every run inside."""
    from rmb_judge import cli

    monkeypatch.setenv("COLUMNS", "250")
    paths = dataset_paths()[:3]
    write_run(tmp_path / "runs" / "a", "openai:gpt-4o", paths, 1, settings={})
    write_run(tmp_path / "runs" / "b", "anthropic:claude-3-5-sonnet", paths, 2, settings={})
    (tmp_path / "runs" / "failed").mkdir()
    (tmp_path / "runs" / "board.html").write_text("")
    assert cli.main(["report", *sorted(str(p) for p in (tmp_path / "runs").iterdir())]) == 0
    out, err = capsys.readouterr()
    assert "openai:gpt-4o" in out and "anthropic:claude-3-5-sonnet" in out
    assert f"rmb-judge: note: {tmp_path / 'runs' / 'failed'}: passed over: no summary.json" in err
    assert f"{tmp_path / 'runs' / 'board.html'}: passed over: not a folder" in err
    assert cli.main(["report", str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert "openai:gpt-4o" in out and "anthropic:claude-3-5-sonnet" in out and not err
    assert cli.main(["report", str(tmp_path / "runs" / "failed")]) == 2
    assert "failed: passed over: no summary.json" in capsys.readouterr().err


def test_a_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(RmbJudgeError, match=rf"^{re.escape(str(tmp_path / 'gone'))}: no such run folder$"):
        load_runs([tmp_path / "gone"])


class Renamed(type(RMB)):
    """RMB's data under other names and another column order: what the report shows must follow."""

    name = "renamed"
    title = "Renamed"
    sections = tuple(replace(section, title=section.title.upper()) for section in RMB.sections)
    leaderboard = tuple(reversed(RMB.leaderboard))
    published_resource = None


@pytest.fixture
def renamed(monkeypatch):
    real = benchmarks.get
    monkeypatch.setattr(benchmarks, "get", lambda name="rmb": Renamed() if name == "renamed" else real(name))


def test_sections_titles_and_columns_come_from_the_runs_benchmark(tmp_path, renamed):
    summary = write_run(tmp_path / "run", "openai:gpt-4o", dataset_paths(), 1, settings={}, records=1700)
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**summary, "benchmark": "renamed"}), encoding="utf-8")
    runs = load_runs([tmp_path / "run"])
    markdown = render_markdown(runs, published=True)
    header, _, row, _ = markdown_rows(markdown)
    assert markdown.startswith("# Renamed leaderboard\n") and "Published" not in markdown
    assert header[3:8] == ["HARM PAIR", "HARM BON", "HELP PAIR", "HELP BON", "Overall"]
    assert row[3] == f"{summary['scores']['pairwise_harmlessness']:.3f}"
    assert terminal(runs, 200).startswith("Renamed leaderboard\n")
    page = Elements(render_html(runs, published=True))
    assert [e["text"] for e in page.all if e["tag"] == "h1"] == ["Renamed leaderboard"]
    assert page.having("rect", "bar")[0]["data-section"] == "pairwise_harmlessness"
    assert not page.having("table", "published")


def test_judges_on_several_benchmarks_get_a_judge_by_benchmark_table_and_a_leaderboard_each(tmp_path, renamed):
    paths = dataset_paths()[:3]
    rmb_a = write_run(tmp_path / "a", "openai:gpt-4o", paths, 1, settings={}, overall=0.7)
    write_run(tmp_path / "m", "mock", paths, 2, settings={}, overall=0.5, simulated=True)
    for folder, judge, overall in (("b", "openai:gpt-4o", 0.6), ("c", "anthropic:claude-3-5-haiku", 0.8)):
        summary = write_run(tmp_path / folder, judge, paths, 3, settings={}, overall=overall)
        (tmp_path / folder / "summary.json").write_text(json.dumps({**summary, "benchmark": "renamed"}),
                                                        encoding="utf-8")
    runs = load_runs([tmp_path / name for name in ("a", "b", "c", "m")])
    markdown = render_markdown(runs)
    assert markdown.startswith("# Judges across benchmarks\n")
    assert [line for line in markdown.splitlines() if line.startswith("# ")] == [
        "# Judges across benchmarks", "# RMB leaderboard", "# Renamed leaderboard"]
    table = markdown_rows(markdown)  # the first table: judges by benchmark
    assert table[0] == ["Judge", "RMB", "Renamed"]
    across = {row[0]: row[1:] for row in table[2:5]}
    assert across == {"openai:gpt-4o": [f"{rmb_a['scores']['overall']:.3f} (#1)", "0.600 (#2)"],
                      "mock": ["0.500 (#2)", "—"], "anthropic:claude-3-5-haiku": ["—", "0.800 (#1)"]}
    page = Elements(render_html(runs))
    assert [e["text"] for e in page.all if e["tag"] == "h1"] == [
        "Leaderboards: RMB, Renamed", "RMB leaderboard", "Renamed leaderboard"]
    assert [s["data-benchmark"] for s in page.having("section", "board")] == ["rmb", "renamed"]
    cells = [td["text"] for td in page.all if td["tag"] == "td"]
    assert "0.600 (#2)" in cells and "0.800 (#1)" in cells
    assert [a["download"] for a in page.all if a["tag"] == "a"][::3] == ["rmb-scores-by-section.svg",
                                                                          "renamed-scores-by-section.svg"]
    text = terminal(runs, 120)
    assert text.index("Judges across benchmarks") < text.index("RMB leaderboard") < text.index("Renamed leaderboard")


def test_runs_with_the_same_judge_and_settings_stay_distinct(tmp_path):
    paths = dataset_paths()[:3]
    settings = {"template": "rmb", "order": "random", "samples": 1}
    write_run(tmp_path / "a", "openai:gpt-4o", paths, 1, settings=settings)
    write_run(tmp_path / "b", "openai:gpt-4o", paths, 2, settings=settings)
    labels = [run.label for run in load_runs([tmp_path / "a", tmp_path / "b"])]
    assert labels == ["rmb · random · k=1 · a", "rmb · random · k=1 · b"]


def test_loading_reads_the_newer_fields_and_defaults_them_for_older_summaries(tmp_path):
    paths = dataset_paths()[:4]
    write_run(tmp_path / "new", "openai:gpt-4o", paths, 1, settings={"limit": 5, "scenarios": ["*Chat*"]},
              records=20, results_cost=0.0125, suspect=True, warnings=["35 of 35 verdicts unparsed."])
    write_run(tmp_path / "old", "openai:gpt-4o", paths, 1, settings=None, cost=0.5)
    new, old = load_runs([tmp_path / "new", tmp_path / "old"])
    assert (new.suspect, new.warnings) == (True, ("35 of 35 verdicts unparsed.",))
    assert (new.records, new.cost_usd) == (20, 0.0125)
    assert new.label == "rmb · random · k=1 · scenarios=*Chat* · limit=5"
    assert new.selection_text == "scenarios *Chat* · first 5 records per scenario"
    assert (old.suspect, old.warnings, old.cost_usd, old.cost_is_spend) == (False, (), 0.5, False)
    assert old.records == old.n and old.selection_text == "selection not recorded (older summary)"


# ---------------------------------------------------------------- grouping: what may be ranked together


def test_a_partial_five_record_run_never_ranks_above_a_complete_full_run(tmp_path):
    paths = dataset_paths()
    write_run(tmp_path / "full", "openai:gpt-4o", paths, 1, settings={}, records=1700, overall=0.61)
    tiny = write_run(tmp_path / "tiny", "anthropic:claude-3-5-haiku", paths[:1], 2, settings={}, records=1700,
                     complete=False, stopped_reason="budget", overall=0.97)
    tiny["scenarios"][0]["n"] = next(iter(tiny["sections"].values()))["n"] = 5  # it stopped after five records
    tiny["data"].update(records_scored=5, comparisons_judged=5)
    (tmp_path / "tiny" / "summary.json").write_text(json.dumps(tiny), encoding="utf-8")
    runs = load_runs([tmp_path / "tiny", tmp_path / "full"])

    header, _, *rows = markdown_rows(render_markdown(runs))
    assert [(r[0], r[1]) for r in rows if r[0]] == [("1", "openai:gpt-4o"), ("2", "anthropic:claude-3-5-haiku")]
    cells = next(dict(zip(header, row)) for row in rows if row[0] == "2")
    assert (cells["Status"], cells["n"]) == ("partial: 5 of 17,000 comparisons, stopped: budget", "5")
    headings = markdown_headings(render_markdown(runs))
    assert headings[0].startswith("Complete runs · full selection") and headings[1].startswith("Partial runs")

    text = terminal(runs, 200)
    assert text.index("openai:gpt-4o") < text.index("Partial runs") < text.index("anthropic:claude-3-5-haiku")
    assert re.search(r"│ 2 │ anthropic:claude-3-5-haiku .*partial: ", text)

    page = Elements(render_html(runs))
    run_rows = [row for row in page.all if row["tag"] == "tr" and "run" in row.get("class", "").split()]
    assert [row["data-group"] for row in run_rows] == ["ranked", "partial"]
    titles = [g["text"] for g in page.all if g["tag"] == "th" and g.get("colspan")]
    assert titles[0].startswith("Complete runs") and titles[1].startswith("Partial runs")
    bars = {b["data-run"]: b for b in page.having("rect", "bar") if b["data-section"] == "overall"}
    assert bars["1"]["data-score"] == "0.610" and "fill-opacity" not in bars["1"]
    assert bars["2"]["data-score"] == "0.970" and bars["2"]["fill-opacity"] == "0.45"
    assert bars["2"]["data-group"] == "partial"
    step = float(bars["2"]["x"]) - float(bars["1"]["x"])
    assert step > 1.5 * float(bars["1"]["width"])  # a gap sets the partial run apart
    assert "#2 anthropic:claude-3-5-haiku · rmb · random · k=1 (partial)" in [e["text"] for e in page.all]
    assert page.having("line", "group-break")


def test_a_suspect_run_is_marked_in_every_renderer(tmp_path):
    paths = dataset_paths()
    write_run(tmp_path / "good", "openai:gpt-4o", paths, 1, settings={}, records=1700, overall=0.6,
              suspect=False, warnings=[])
    write_run(tmp_path / "bad", "openai:o3-mini", paths, 2, settings={}, records=1700, overall=0.9, suspect=True,
              warnings=["35 of 35 verdicts unparsed, more than --max-unparsed 0.05 allows."])
    runs = load_runs([tmp_path / "bad", tmp_path / "good"])
    warning = "35 of 35 verdicts unparsed, more than --max-unparsed 0.05 allows."

    markdown = render_markdown(runs)
    header, _, *rows = markdown_rows(markdown)
    by_judge = {row[1]: dict(zip(header, row)) for row in rows}
    assert by_judge["openai:gpt-4o"]["#"] == "1" and by_judge["openai:o3-mini"]["#"] == "2"
    assert by_judge["openai:o3-mini"]["Status"] == "complete · SUSPECT"
    assert markdown_headings(markdown)[1].startswith("SUSPECT runs")
    assert f"- #2 openai:o3-mini · rmb · random · k=1: SUSPECT: {warning}" in markdown

    text = terminal(runs, 120)
    assert text.index("openai:gpt-4o") < text.index("SUSPECT runs") < text.index("openai:o3-mini")
    row = next(i for i, line in enumerate(text.splitlines()) if line.startswith("│ 2 │ openai:o3-mini"))
    assert "SUSPECT" in text.splitlines()[row + 1]
    assert "SUSPECT: 35 of 35 verdicts unparsed" in " ".join(text.split())

    page = Elements(render_html(runs))
    tag = next(t for t in page.having("span", "tag") if t["text"] == "SUSPECT")
    assert "suspect" in tag["class"].split() and tag["title"] == warning
    assert [r["class"] for r in page.all if r["tag"] == "tr" and r.get("data-group") == "suspect"] == ["run suspect"]
    assert any(e["text"].endswith("(SUSPECT)") for e in page.having("text", "hm-run"))
    assert any(warning in e["text"] for e in page.having("p", "note"))


def test_runs_on_other_selections_get_their_own_groups(tmp_path):
    paths = dataset_paths()
    chat = [p for p in paths if "/Chat/" in p]
    write_run(tmp_path / "full-a", "openai:gpt-4o", paths, 1, settings={}, records=1700, overall=0.6)
    write_run(tmp_path / "full-b", "openai:gpt-4o-mini", paths, 2, settings={}, records=1700, overall=0.7)
    write_run(tmp_path / "five", "anthropic:claude-3-5-sonnet", paths, 3, settings={"limit": 5}, records=475,
              overall=0.95)
    write_run(tmp_path / "chat", "google:gemini-2.0-flash", chat, 4, settings={"scenarios": ["*Chat*"]},
              records=300, overall=0.9)
    write_run(tmp_path / "sample", "mock", paths, 5, settings={"sample": 0.1, "seed": 7}, records=170,
              simulated=True, overall=0.99)
    runs = load_runs([tmp_path / name for name in ("sample", "chat", "five", "full-a", "full-b")])
    markdown = render_markdown(runs)
    assert markdown_headings(markdown) == [
        "Complete runs · full selection · 1,700 records",
        "Another selection · first 5 records per scenario · 475 records · not ranked against the runs above",
        "Another selection · scenarios \\*Chat\\* · 300 records · not ranked against the runs above",
        "Another selection · sample 10% (seed 7) · 170 records · not ranked against the runs above",
    ]
    _, _, *rows = markdown_rows(markdown)
    assert [(row[0], row[1]) for row in rows if row[0]] == [
        ("1", "openai:gpt-4o-mini"), ("2", "openai:gpt-4o"), ("3", "anthropic:claude-3-5-sonnet"),
        ("4", "google:gemini-2.0-flash"), ("5", "mock"),
    ]
    text = terminal(runs, 200)
    order = [text.index(heading.replace("\\", "")) for heading in markdown_headings(markdown)]
    assert order == sorted(order)
    page = Elements(render_html(runs))
    assert [r["data-group"] for r in page.all if r["tag"] == "tr" and r.get("data-group")] == [
        "ranked", "ranked", "selection", "selection", "selection",
    ]
    assert "(other selection) (simulated)" in next(e["text"] for e in page.having("text", "hm-run")
                                                   if e["text"].startswith("#5"))


def test_runs_that_all_judged_the_same_subset_rank_together(tmp_path):
    paths = dataset_paths()
    for index, (judge, overall) in enumerate((("openai:gpt-4o", 0.5), ("openai:gpt-4o-mini", 0.8), ("mock", 0.3))):
        write_run(tmp_path / judge.replace(":", "-"), judge, paths, index, settings={"limit": 2}, records=190,
                  overall=overall, simulated=judge == "mock")
    runs = load_runs(sorted(tmp_path.iterdir()))
    markdown = render_markdown(runs)
    assert markdown_headings(markdown) == ["Complete runs · first 2 records per scenario · 190 records"]
    _, _, *rows = markdown_rows(markdown)
    assert [row[1] for row in rows if row[0]] == ["openai:gpt-4o-mini", "openai:gpt-4o", "mock"]
    page = Elements(render_html(runs))
    assert not page.having("line", "group-break") and not [b for b in page.having("rect", "bar") if "fill-opacity" in b]


def test_the_same_flags_on_different_data_files_are_not_ranked_together(tmp_path):
    paths = dataset_paths()
    write_run(tmp_path / "a", "openai:gpt-4o", paths, 1, settings={}, records=1700, data_files={"x.json": "aa"})
    write_run(tmp_path / "b", "openai:gpt-4o-mini", paths, 2, settings={}, records=1700, data_files={"x.json": "bb"})
    write_run(tmp_path / "c", "mock", paths, 3, settings={}, records=1700, data_files={"x.json": "aa"})
    headings = markdown_headings(render_markdown(load_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"])))
    assert len(headings) == 2 and all("data files " in heading for heading in headings)
    assert headings[0].startswith("Complete runs") and headings[1].startswith("Another selection")
    # A run folder without a manifest (older runs) cannot be told apart: flags and counts decide.
    (tmp_path / "b" / "manifest.json").unlink()
    assert len(markdown_headings(render_markdown(load_runs([tmp_path / "a", tmp_path / "b"])))) == 1


# ---------------------------------------------------------------- cost


def test_a_fully_cached_rerun_shows_what_its_results_cost(tmp_path):
    paths = dataset_paths()[:10]
    summary = write_run(tmp_path / "rerun", "openai:gpt-4o-mini", paths, 1, settings={}, records=150, cost=0.0,
                        results_cost=0.0125)
    summary["usage"].update(requests=0, cache_hits=150)
    (tmp_path / "rerun" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    runs = load_runs([tmp_path / "rerun"])
    header, _, row, *_ = markdown_rows(render_markdown(runs))
    assert dict(zip(header, row))["Cost"] == "$0.0125"
    page = Elements(render_html(runs))
    assert "$0.0125" in [td["text"] for td in page.all if td["tag"] == "td"]
    for width in (80, 200):
        text = terminal(runs, width)
        assert "$0.0125" in text and "$0.0000" not in text
    assert "$0.0000" not in render_markdown(runs) + render_html(runs)


def test_an_older_cached_rerun_labels_its_cost_as_spend(tmp_path):
    paths = dataset_paths()[:10]
    summary = write_run(tmp_path / "old", "openai:gpt-4o-mini", paths, 1, settings={}, cost=0.0)
    summary["usage"].update(requests=0, cache_hits=150)
    (tmp_path / "old" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    write_run(tmp_path / "paid", "openai:gpt-4o", paths, 2, settings={}, cost=0.02)  # no cache hits: spend is all
    markdown = render_markdown(load_runs([tmp_path / "old", tmp_path / "paid"]))
    header, _, *rows = markdown_rows(markdown)
    costs = {row[1]: dict(zip(header, row))["Cost"] for row in rows if row[0]}
    assert costs == {"openai:gpt-4o-mini": "$0.0000\\*", "openai:gpt-4o": "$0.0200"}
    assert "- \\*: an older summary that records only what its own invocation spent" in markdown


# ---------------------------------------------------------------- HTML


def test_html_heatmap_has_one_cell_per_scenario_and_run(runs3, tmp_path):
    page = Elements(render_html(load_runs(folders(tmp_path))))
    order = listed(runs3)
    cells = page.having("rect", "hm-cell")
    assert len(cells) == len(dataset_paths()) * 3
    values = {(v["data-run"], v["data-scenario"]): v["text"] for v in page.having("text", "hm-value")}
    present = []
    for cell in cells:
        summary = order[int(cell["data-run"]) - 1]
        expected = {s["category_path"]: s["accuracy"] for s in summary["scenarios"]}.get(cell["data-scenario"])
        key = (cell["data-run"], cell["data-scenario"])
        if expected is None:  # the ablation did not run Best-of-N nor most harmlessness scenarios
            assert cell["fill"] == ABSENT and cell["data-accuracy"] == "" and key not in values
        else:
            assert cell["data-accuracy"] == f"{expected:.3f}"
            assert values[key] == f"{expected:.2f}"
            present.append((expected, cell["fill"]))
    assert sum(1 for c in cells if c["fill"] == ABSENT) == len(dataset_paths()) - len(runs3["ablation"]["scenarios"])
    present.sort()
    hues = [hue(fill) for _, fill in present]
    # Hue rises with accuracy (8-bit rounding of the RGB channels wobbles it by under 1 degree).
    assert all(a <= b + 0.003 for a, b in itertools.pairwise(hues)), "colour must rise with accuracy"
    assert hues[0] < 0.05 and hues[-1] > 0.3  # red at the bottom, green at the top
    # The partial run's column stands apart, behind a dashed line, and says why.
    (line,) = page.having("line", "group-break")
    assert line["data-before-run"] == "3"
    assert page.having("text", "hm-run")[2]["text"].endswith("(partial)")


def test_html_heatmap_groups_scenarios_with_short_labels(runs3, tmp_path):
    page = Elements(render_html(load_runs(folders(tmp_path))))
    texts = [e["text"] for e in page.all if e["tag"] == "text"]
    headers = [t for t in texts if " · " in t and not t.startswith("#")]
    assert headers == ["Pairwise · Helpfulness", "Pairwise · Harmlessness", "Best-of-N · Helpfulness",
                       "Best-of-N · Harmlessness"]
    assert "Chat/Discussion" in texts and "S11 Sexual Content" in texts
    assert not any(t.startswith(("Pairwise_set", "BoN_set")) for t in texts)
    # Scenarios in a group sort naturally: S2 before S10.
    bon_harm = texts[texts.index("Best-of-N · Harmlessness"):]
    assert bon_harm.index("S2 Non-Violent Crimes") < bon_harm.index("S10 Suicide & Self-Harm")


# The RMB repository's harmlessness dataset table (fig/harmless_dataset_table.pdf), row by row:
# the scenario's name, its pairwise pairs and its Best-of-N lists. The files are named S1 ... S11
# and multi, in the table's order; the counts tie each file to its row.
HARM_TABLE = [
    ("S1", "Violent Crimes", 459, 111), ("S2", "Non-Violent Crimes", 1040, 249),
    ("S3", "Sex-Related Crimes", 739, 171), ("S4", "Child Sexual Exploitation", 537, 136),
    ("S5", "Specialized Advice", 561, 122), ("S6", "Privacy", 317, 83), ("S7", "Intellectual Property", 510, 121),
    ("S8", "Indiscriminate Weapons", 519, 127), ("S9", "Hate", 543, 132), ("S10", "Suicide & Self-Harm", 360, 79),
    ("S11", "Sexual Content", 977, 215), ("multi", "Multi", 502, 131),
]


def test_harmlessness_scenarios_carry_their_rmb_names(tmp_path):
    for file, _, pairs, lists in HARM_TABLE:
        for folder, expected in (("Pairwise_set", pairs), ("BoN_set", lists)):
            path = DATA / folder / "Harmlessness" / f"{file}.json"
            if path.is_file():  # the shared copy lacks the pairwise S11 (over 4 MiB)
                assert len(json.loads(path.read_text(encoding="utf-8"))) == expected, path
    harm = [p for p in dataset_paths() if "/Harmlessness/" in p]
    write_run(tmp_path / "run", "openai:gpt-4o", harm, 1, settings={})
    texts = [e["text"] for e in Elements(render_html(load_runs([tmp_path / "run"]))).all if e["tag"] == "text"]
    bon_harm = texts[texts.index("Best-of-N · Harmlessness"):]
    named = [f"{file} {name}" for file, name, _, _ in HARM_TABLE[:-1]] + ["multi"]
    assert sorted(t for t in bon_harm if t in named) == sorted(named)


def test_html_bar_chart_has_a_bar_per_run_and_section_with_chance_lines(runs3, tmp_path):
    page = Elements(render_html(load_runs(folders(tmp_path))))
    order = listed(runs3)
    bars = page.having("rect", "bar")
    expected = {
        (str(rank), key): summary["scores"][key]
        for rank, summary in enumerate(order, 1)
        for key in SCORE_KEYS
        if summary["scores"][key] is not None
    }
    assert {(b["data-run"], b["data-section"]): b["data-score"] for b in bars} == {
        key: f"{score:.3f}" for key, score in expected.items()
    }
    assert len(bars) == 5 + 5 + 3  # the ablation has no Best-of-N sections
    heights = {(b["data-run"], b["data-section"]): float(b["height"]) for b in bars}
    for key, score in expected.items():
        assert heights[key] == pytest.approx(260 * score, abs=0.1)
    lines = {(c["data-run"], c["data-section"]): float(c["data-chance"]) for c in page.having("line", "chance")}
    assert lines[("3", "pairwise_helpfulness")] == 0.5
    assert lines[("3", "overall")] == 0.5
    assert lines[("1", "bon_helpfulness")] == 0.215
    assert lines[("1", "overall")] == pytest.approx((0.5 + 0.5 + 0.215 + 0.22) / 4, abs=5e-4)
    assert {b["data-group"] for b in bars if b["data-run"] == "3"} == {"partial"}
    assert all((b.get("fill-opacity") == "0.45") == (b["data-run"] == "3") for b in bars)
    for key in SCORE_KEYS:  # runs of one group stand side by side, never on top of each other
        x = {b["data-run"]: float(b["x"]) for b in bars if b["data-section"] == key}
        assert x["2"] - x["1"] >= float(bars[0]["width"])
    cells = {c["data-run"]: float(c["x"]) for c in page.having("rect", "hm-cell")}
    assert cells["2"] - cells["1"] >= float(page.having("rect", "hm-cell")[0]["width"])


def test_html_is_one_self_contained_file(runs3, tmp_path):
    text = render_html(load_runs(folders(tmp_path)), published=True)
    assert "<script" not in text and "@import" not in text and "url(" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert text.count("<style>") == 1 and text.count("<svg") == 3  # scores by section, cost, scenarios
    page = Elements(text)
    downloads = [a for a in page.all if a["tag"] == "a"]
    assert [a["download"] for a in downloads] == ["rmb-scores-by-section.svg", "rmb-cost-vs-accuracy.svg",
                                                  "rmb-accuracy-by-scenario.svg"]
    svgs = re.findall(r"<svg .*?</svg>", text, re.S)
    def drawn(svg: str) -> str:  # the chart less its legend and the height the legend takes
        return re.sub(r'height="\d+" viewBox="0 0 (\d+) \d+"', "", re.sub(r'<g class="key">.*?</g>\n?', "", svg, flags=re.S))

    for link, svg in zip(downloads, svgs):  # each chart as a file, as the page shows it with its legend inside
        prefix = "data:image/svg+xml;base64,"
        assert link["href"].startswith(prefix) and drawn(base64.b64decode(link["href"][len(prefix):]).decode()) == drawn(
            svg)
        assert 'xmlns="http://www.w3.org/2000/svg"' in svg and "font-family=" in svg
    page = Elements(text)
    published = page.having("table", "published")
    assert published and "GPT-4o-2024-05-13" in text and "2410.09893" in text
    assert {t["text"] for t in page.having("span", "tag")} == {"complete", "partial", "simulated"}
    assert [body["class"] for body in page.all if body["tag"] == "tbody"] == ["ranked", "partial"]


def test_heatmap_cells_show_n_and_fade_below_a_few_records(tmp_path):
    paths = dataset_paths()[:6]
    summary = write_run(tmp_path / "run", "openai:gpt-4o", paths, 1, settings={})
    for scenario, n in zip(summary["scenarios"], (1, 2, 5, 9, 10, 250)):
        scenario["n"] = n
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    page = Elements(render_html(load_runs([tmp_path / "run"])))
    cells = {c["data-scenario"]: c for c in page.having("rect", "hm-cell")}
    shown_n = {t["data-scenario"]: t["text"] for t in page.having("text", "hm-n")}
    opacity = {}
    for scenario in summary["scenarios"]:
        path, n = scenario["category_path"], scenario["n"]
        assert shown_n[path] == f"n={n}" and cells[path]["data-n"] == str(n)
        opacity[n] = float(cells[path].get("fill-opacity", 1))
    assert opacity[1] < opacity[2] < opacity[5] < opacity[9] < 1 == opacity[10] == opacity[250]
    assert opacity[1] <= 0.3  # a cell on one record is barely there


def cost_run(tmp_path, name, judge, cost, overall, interval=0.03):
    summary = write_run(tmp_path / name, judge, dataset_paths()[:4], 1, settings={}, records=80, cost=cost,
                        results_cost=cost, overall=overall)
    summary["intervals"] = {"overall": [overall - interval, overall + interval]}
    (tmp_path / name / "summary.json").write_text(json.dumps(summary), encoding="utf-8")


def test_cost_against_accuracy_marks_the_pareto_front(tmp_path):
    # cheap and weak, dear and strong, in between, and two that another run beats on both
    runs = {"cheap": (0.02, 0.60), "dear": (9.0, 0.80), "middle": (0.5, 0.72), "beaten": (1.0, 0.70),
            "worse": (12.0, 0.75)}
    for name, (cost, overall) in runs.items():
        cost_run(tmp_path, name, f"openai:{name}", cost, overall)
    cost_run(tmp_path, "free", "openai:unpriced", None, 0.9)
    write_run(tmp_path / "other", "openai:elsewhere", dataset_paths()[:2], 1, settings={"limit": 3}, cost=0.0)
    shown = load_runs([tmp_path / name for name in (*runs, "free", "other")])
    page = Elements(render_html(shown))
    rank = {row["text"].split()[1]: int(row["text"].split()[0].lstrip("#")) for row in page.all
            if row["tag"] == "li" and row["text"].startswith("#") and " · " in row["text"]}
    points = {int(c["data-run"]): c for c in page.having("circle", "point")}
    front = {name for name, (cost, score) in runs.items()
             if not any(c <= cost and s >= score and (c, s) != (cost, score) for c, s in runs.values())}
    assert front == {"cheap", "middle", "dear"}
    assert {r for r, c in points.items() if "front" in c["class"].split()} == {rank[f"openai:{n}"] for n in front}
    assert rank["openai:elsewhere"] not in points and rank["openai:unpriced"] not in points  # another selection; no price
    assert any("price is unknown" in p["text"] and "openai:unpriced" in p["text"] for p in page.having("p", "note"))
    by_cost = sorted(runs, key=lambda name: runs[name][0])
    xs = [float(points[rank[f"openai:{name}"]]["cx"]) for name in by_cost]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert any("log scale" in t["text"] for t in page.all if t["tag"] == "text")  # $0.02 to $12
    bars = {int(b["data-run"]) for b in page.all if b["tag"] == "path" and "error-bar" in b.get("class", "")}
    assert set(points) <= bars


def test_the_report_says_how_to_browse_each_run(tmp_path):
    paths = dataset_paths()[:3]
    for name in ("a b", "c"):
        write_run(tmp_path / name, f"openai:{name[0]}", paths, 1, settings={})
    runs = load_runs([tmp_path / "a b", tmp_path / "c"])
    quoted = f"'{tmp_path / 'a b'}'"
    page = Elements(render_html(runs))
    commands = [c["text"] for c in page.all if c["tag"] == "code"]
    assert f"rmb-judge view {quoted}" in commands and f"rmb-judge view {tmp_path / 'c'}" in commands
    assert f"rmb-judge view {quoted} {tmp_path / 'c'}" in commands  # the two side by side
    assert f"`` rmb-judge view {quoted} ``" in render_markdown(runs)
    assert f"Browse the records: rmb-judge view {quoted} {tmp_path / 'c'}" in " ".join(terminal(runs, 300).split())


EVIL = """<script>alert(1)</script> & "q" 'a'"""
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li", "span", "br",
        "table", "tbody", "tr", "th", "td", "svg", "line", "rect", "text", "section", "div", "figure", "a", "code",
        "circle", "path", "g"}


def test_html_escapes_what_runs_and_folders_say_everywhere(tmp_path):
    """Judge names, folders, settings, scenario paths and warnings are the runs' own text: every
    place they appear holds them as text, and the page's elements are only the report's own."""
    paths = dataset_paths()[:3]
    folder = tmp_path / "<b>run&"
    summary = write_run(folder, f"openai:{EVIL}", paths, 1, settings={"scenarios": ["<script>*"], "template": EVIL},
                        records=50, suspect=True, warnings=[EVIL])
    summary["scenarios"].append({"category_path": f"{paths[0]}/{EVIL}", "set": "pairwise",
                                 "section": "helpfulness", "n": 3, "accuracy": 0.5})
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    write_run(tmp_path / "ok", "openai:gpt-4o", paths, 2, settings={"scenarios": ["<script>*"]}, records=50)
    text = render_html(load_runs([folder, tmp_path / "ok"]))
    assert "<script" not in text and "<b>" not in text and "'a'" not in text and '"q"' not in text
    page = Elements(text)
    assert {e["tag"] for e in page.all} <= TAGS
    judge = f"openai:{EVIL}"
    title = f"#2 {judge} · {EVIL} · random · k=1 · scenarios=<script>* (SUSPECT)"
    assert any(td["text"].startswith(judge) for td in page.all if td["tag"] == "td")
    assert any(e["text"].startswith(EVIL) for e in page.having("span", "settings"))  # settings under the judge
    assert next(t for t in page.having("span", "tag") if t["text"] == "SUSPECT")["title"] == EVIL
    assert str(folder) in [row.get("title") for row in page.having("tr", "run")]
    assert title in [li["text"] for li in page.all if li["tag"] == "li"]
    tips = [e["text"] for e in page.all if e["tag"] == "title"]
    assert title in tips  # over its heatmap column (whose own text is cut short)
    assert any(tip.startswith(f"{title}: ") for tip in tips)  # the bars'
    assert f"{paths[0]}/{EVIL} · {title}: 0.500 (n=3)" in tips  # the heatmap cell's
    assert f"{paths[0]}/{EVIL}" in {cell["data-scenario"] for cell in page.having("rect", "hm-cell")}
    assert any(EVIL in note["text"] and judge in note["text"] for note in page.having("p", "note"))
    assert "Complete runs · scenarios <script>* · 50 records" in [th["text"] for th in page.all if th["tag"] == "th"]


def test_report_code_names_no_benchmark():
    """Sections, their titles, folders and scenario names come from the benchmark object."""
    from rmb_judge.benchmarks import rmb

    names = {RMB.title, *rmb.SETS.values(), *rmb.GOALS.values(), *RMB.goals}
    names |= {name for section in RMB.sections for name in (section.key, section.title)}
    package = Path(rmb.__file__).parents[1] / "report"
    files = [path for path in package.rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    assert {path.name for path in files} >= {"__init__.py", "load.py", "view.py", "report.html.j2"}
    for path in files:
        source = path.read_text(encoding="utf-8")
        assert not [name for name in names if name in source], path


def test_templates_ship_as_package_data():
    """The HTML templates load from the installed package, so its package data must list them."""
    import fnmatch
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert any(dependency.startswith("jinja2") for dependency in project["project"]["dependencies"])
    patterns = project["tool"]["setuptools"]["package-data"]["rmb_judge"]
    package = Path(__file__).resolve().parents[1] / "rmb_judge"
    templates = [path.relative_to(package).as_posix() for path in (package / "report" / "templates").iterdir()]
    assert templates and all(any(fnmatch.fnmatch(t, pattern) for pattern in patterns) for t in templates)


# ---------------------------------------------------------------- Markdown and terminal


def markdown_rows(text: str) -> list[list[str]]:
    """Every table line (all groups; the header and separator of the first group come first)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = lines[:2]
    rows = [line for line in lines[2:] if line not in header]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in header + rows]


def markdown_headings(text: str) -> list[str]:
    """The group headings, without the published table's and the closing list of view commands."""
    return [line[3:] for line in text.splitlines()
            if line.startswith("## ") and "Published" not in line and line != "## Browse the records"]


def test_markdown_table_rows_and_values(runs3, tmp_path):
    text = render_markdown(load_runs(folders(tmp_path)))
    header, separator, *rows = markdown_rows(text)
    rows = [row for row in rows if row[0]]  # the chance rows have no rank
    assert header[:8] == ["#", "Judge", "Settings", "Help BoN", "Help Pair", "Harm BoN", "Harm Pair", "Overall"]
    assert header[-3:] == ["1st pick", "Consistency", "Unanimous"]
    assert separator[0] == "---:" and separator[1] == "---"
    order = listed(runs3)
    for rank, (row, summary) in enumerate(zip(rows, order), 1):
        cells = dict(zip(header, row))
        assert cells["#"] == str(rank) and cells["Judge"] == summary["judge"]
        for key, title in zip(SCORE_KEYS, header[3:8]):
            score = summary["scores"][key]
            assert cells[title] == ("—" if score is None else f"{score:.3f}")
        assert cells["n"] == str(sum(s["n"] for s in summary["sections"].values()))
    by_judge = {(r[1], r[2]): dict(zip(header, r)) for r in rows}
    assert by_judge[("mock", "rmb · fixed · k=1")]["Status"] == "complete · simulated"
    ablation = by_judge[("openai:gpt-4o-mini", "arena-hard · both · k=3 T=0.7 · limit=20")]
    assert (ablation["Status"], ablation["Cost"], ablation["Unanimous"]) == ("partial: stopped: budget", "$1.50",
                                                                              "0.930")
    assert by_judge[("openai:gpt-4o-mini", "rmb · random · k=1")]["Cost"] == "$0.4213"
    assert markdown_headings(text) == [
        "Complete runs · full selection · " + f"{sum(s['n'] for s in runs3['full']['scenarios']):,} records",
        "Partial runs · stopped early, scored on the records they finished · not ranked against complete runs",
    ]
    complete_part = text[: text.index("## Partial")]
    chance = dict(zip(header, markdown_rows(complete_part)[-1]))
    assert (chance["Judge"], chance["Help BoN"], chance["Help Pair"], chance["Harm BoN"], chance["Overall"]) == (
        "chance level", "0.215", "0.500", "0.220", f"{(0.5 + 0.5 + 0.215 + 0.22) / 4:.3f}",
    )
    partial_chance = dict(zip(header, markdown_rows(text)[-1]))
    assert (partial_chance["Help BoN"], partial_chance["Overall"]) == ("—", "0.500")  # pairwise only
    assert "Published" not in text


def test_markdown_shows_per_run_chance_when_runs_disagree(tmp_path):
    paths = dataset_paths()
    settings = {"template": "rmb", "order": "random", "samples": 1}
    write_run(tmp_path / "a", "openai:gpt-4o", paths, 1, settings=settings)
    write_run(tmp_path / "b", "anthropic:claude-3-5-haiku", paths, 2, settings=settings,
              chance={**CHANCE, "bon_helpfulness": 0.25})
    header, _, *rows = markdown_rows(render_markdown(load_runs([tmp_path / "a", tmp_path / "b"])))
    assert header[3] == "Help BoN (chance)" and len(rows) == 2
    cells = {row[1]: row[3] for row in rows}
    assert cells["anthropic:claude-3-5-haiku"].endswith(" (0.250)")
    assert cells["openai:gpt-4o"].endswith(" (0.215)")


def test_markdown_escapes_what_would_turn_into_formatting(tmp_path):
    paths = [p for p in dataset_paths() if "/Chat/" in p]
    write_run(tmp_path / "chat", "openai:gpt_4o|x", paths, 1, settings={"scenarios": ["*Chat*"]}, records=300)
    text = render_markdown(load_runs([tmp_path / "chat"]))
    assert "| openai:gpt\\_4o\\|x |" in text and "scenarios=\\*Chat\\*" in text
    assert markdown_headings(text) == ["Complete runs · scenarios \\*Chat\\* · 300 records"]


def test_markdown_published_rows(runs3, tmp_path):
    text = render_markdown(load_runs(folders(tmp_path)), published=True)
    section = text[text.index("## Published"):]
    header, _, *rows = markdown_rows(section)
    assert header == ["Model", "Type", "Help BoN", "Help Pair", "Harm BoN", "Harm Pair", "Overall"]
    assert ["GPT-4o-2024-05-13", "generative", "0.639", "0.815", "0.682", "0.814", "0.738"] in rows
    assert len(rows) == len(RMB.published().rows) and "Source:" in section


def test_terminal_table(runs3, tmp_path):
    console = Console(record=True, width=200)
    render_terminal(load_runs(folders(tmp_path)), console, published=True)
    text = console.export_text()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 200
    for rank, summary in enumerate(listed(runs3), 1):
        first = next(i for i, line in enumerate(lines) if line.startswith(f"│ {rank} │"))
        assert summary["judge"] in lines[first] and f"{summary['scores']['overall']:.3f}" in lines[first]
        settings = summary["settings"]
        assert f"{settings['template']} · {settings['order']} · k={settings['samples']}" in lines[first + 1]
        status = "complete" if summary["complete"] else "partial"
        assert status in lines[first] and ("simulated" in lines[first + 1]) == summary["simulated"]
    assert lines.index(next(line for line in lines if line.startswith("Partial runs"))) > lines.index(
        next(line for line in lines if line.startswith("│ 2 │")))
    assert any("chance level" in line and "0.215" in line and "0.220" in line for line in lines)
    assert any("GPT-4o-2024-05-13" in line and "0.738" in line for line in lines)
    assert "2410.09893" in text


LONG_JUDGES = ("anthropic:claude-3-5-haiku-20241022", "openai:ft:gpt-4o-mini-2024-07-18:acme-research::9xYz1234")


@pytest.fixture
def varied(tmp_path: Path) -> list:
    """Runs with every kind of cell: long judge names, per-run chance, partial, suspect, extras."""
    paths = dataset_paths()
    write_run(tmp_path / "a", LONG_JUDGES[0], paths, 1, settings={"template": "arena-hard", "order": "both",
              "samples": 5, "temperature": 0.7}, records=1700, results_cost=123.456789,
              position={"first_pick_rate": 0.52, "consistency": 0.8}, agreement={"unanimous_rate": 0.91})
    write_run(tmp_path / "b", LONG_JUDGES[1], paths, 2, settings={}, records=1700, results_cost=0.0125,
              chance={**CHANCE, "bon_helpfulness": 0.25})
    write_run(tmp_path / "c", "mock", paths[:7], 3, settings={}, records=1700, complete=False, simulated=True)
    write_run(tmp_path / "d", "openai:gpt-4o", paths, 4, settings={"limit": 5}, records=475, suspect=True,
              warnings=["35 of 35 verdicts unparsed."], results_cost=None, cost=None)
    return load_runs([tmp_path / name for name in "abcd"])


@pytest.mark.parametrize("width", [80, 200])
def test_piped_terminal_output_fits_and_keeps_every_number_whole(varied, width):
    text = terminal(varied, width, published=True)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    assert "…" not in text
    words = set(text.split())
    for run in varied:
        for key in SCORE_KEYS:
            assert run.scores[key] is None or f"{run.scores[key]:.3f}" in words
        chance = run.chance_for("overall")
        assert chance is None or f"({chance:.3f})" in words
        assert str(run.n) in words
    for cost in ("$123.46", "$0.0125", "$0.0000", "—"):
        assert cost in words
    for value in ("0.520", "0.800", "0.910"):  # 1st pick, consistency, unanimous
        assert value in words
    for judge in LONG_JUDGES:  # folded over lines of its column, never cut
        assert judge in _column_text(lines, judge[:8])
    assert any(line.startswith("SUSPECT runs") for line in lines)
    assert any(line.startswith("Partial runs") for line in lines)


def _column_text(lines: list[str], start: str) -> str:
    """The judge column's text from the row whose judge cell starts with `start`, joined across its lines."""
    first = next(i for i, line in enumerate(lines) if "".join(line.split("│")[2:3]).strip().startswith(start))
    pieces = []
    for line in lines[first:]:
        cells = line.split("│")
        if len(cells) < 3 or (pieces and cells[1].strip()):
            break
        pieces.append(cells[2].strip())
    return "".join(pieces)


def test_terminal_width_follows_columns_when_piped(varied, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    console = Console(file=out)  # as the CLI builds it; stdout is not a terminal here
    assert console.width == 100
    render_terminal(varied, console)
    assert max(map(len, out.getvalue().splitlines())) <= 100


def test_the_run_command_renders_its_single_run(tmp_path):
    """`rmb-judge run` ends with render_terminal(load_runs([OUT]), Console()) for the run it just finished."""
    write_run(tmp_path / "out", "mock", dataset_paths(), 1, settings={"limit": 2}, records=190, simulated=True,
              suspect=False, warnings=[], results_cost=0.0)
    text = terminal(load_runs([tmp_path / "out"]), 80)
    assert text.splitlines()[1] == "Complete runs · first 2 records per scenario · 190 records"
    assert max(map(len, text.splitlines())) <= 80 and "simulated" in text


# ---------------------------------------------------------------- older runs and the shipped data


def test_contract_only_summary_renders_with_dashes(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps({
        "judge": "openai:gpt-4o-mini", "complete": True,
        "scores": {"pairwise_helpfulness": 0.7, "pairwise_harmlessness": 0.6,
                   "bon_helpfulness": None, "bon_harmlessness": None, "overall": 0.65},
        "scenarios": [{"category_path": "Pairwise_set/Helpfulness/Chat/Discussion", "n": 20, "accuracy": 0.7}],
        "usage": {"requests": 0, "cache_hits": 0, "retries": 0, "failed": 2, "unparsed": 1,
                  "input_tokens": 0, "output_tokens": 0, "cost_usd": None},
    }), encoding="utf-8")
    runs = load_runs([tmp_path / "old"])
    markdown = render_markdown(runs)
    header, _, row = markdown_rows(markdown)
    cells = dict(zip(header, row))
    assert cells["Settings"] == "old" and cells["Cost"] == "—" and cells["Failed"] == "2" and cells["n"] == "20"
    assert (cells["Help Pair"], cells["Help BoN"]) == ("0.700", "—") and "Consistency" not in header
    assert cells["Status"] == "complete"
    assert markdown_headings(markdown) == ["Complete runs · selection not recorded (older summary) · 20 records"]
    page = Elements(render_html(runs))
    assert [c["data-accuracy"] for c in page.having("rect", "hm-cell")] == ["0.700"]
    # its scenario names no section: it is shown under its whole path, apart from any section's
    texts = [e["text"] for e in page.all if e["tag"] == "text"]
    assert texts[texts.index("Section not recorded") + 1] == "Pairwise_set/Helpfulness/Chat/Discussion"
    assert not page.having("line", "chance")
    assert "0.650" in terminal(runs, 80)


def test_older_summaries_without_selection_settings_group_by_their_scenarios(tmp_path):
    paths = dataset_paths()
    for name, seed in (("a", 1), ("b", 2)):
        write_run(tmp_path / name, f"openai:model-{name}", paths, seed, settings=None)
    write_run(tmp_path / "c", "openai:model-c", paths[:40], 3, settings=None)
    headings = markdown_headings(render_markdown(load_runs([tmp_path / "c", tmp_path / "a", tmp_path / "b"])))
    assert len(headings) == 2 and headings[0].startswith("Complete runs · selection not recorded")
    assert headings[1].startswith("Another selection · selection not recorded")


def test_published_rows_are_consistent():
    data = RMB.published()
    assert "2410.09893" in data.source and "Table 3" in data.source
    sections = ("bon_helpfulness", "pairwise_helpfulness", "bon_harmlessness", "pairwise_harmlessness")
    for row in data.rows:
        assert row["type"] in ("generative", "discriminative")
        # The paper's overall is the mean of the four subsets, rounded to 3 places: a check on transcription.
        assert row["overall"] == pytest.approx(sum(row[key] for key in sections) / 4, abs=6e-4), row["model"]


def test_narrow_terminal_splits_scores_from_run_details(runs3, tmp_path):
    text = terminal(load_runs(folders(tmp_path)), 110)
    assert max(map(len, text.splitlines())) <= 110
    for rank, summary in enumerate(listed(runs3), 1):
        assert f"{summary['scores']['overall']:.3f}" in text
        n = sum(s["n"] for s in summary["sections"].values())
        # the second table of each group: rank, then n, failures, cost and bias
        assert any(re.match(rf"│ {rank} │ +{n} │", line) for line in text.splitlines())


def test_each_downloaded_chart_names_the_runs_it_draws(tmp_path):
    """A chart downloaded for a paper must say which colour is which run on its own: every run
    the bars, the cost chart and the reliability diagram draw has an entry in the SVG's own
    legend (its title whole in the tooltip, its text cut to the chart's width), in its colour."""
    calibration = {"comparisons": 40, "brier": {"value": 0.15}, "ece": {"value": 0.04}, "auroc": {"value": 0.8},
                   "bins": [{"low": 0.5 + b / 20, "high": 0.55 + b / 20, "n": 4, "confidence": 0.52 + b / 20,
                             "accuracy": 0.5 + b / 22} for b in range(10)]}
    for name, cost, overall in (("a", 0.5, 0.7), ("b", 2.0, 0.75), ("c", 9.0, 0.8)):
        cost_run(tmp_path, name, f"openai:a-judge-with-a-rather-long-name-{name}-2024-08-06", cost, overall)
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        summary["calibration"] = calibration
        (tmp_path / name / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    shown = load_runs([tmp_path / name for name in "abc"])
    page = Elements(render_html(shown))
    downloads = {a["download"]: a["href"] for a in page.all if a["tag"] == "a" and "download" in a}
    titles = {row.rank: row.title for row in board(shown).rows}
    for chart, drawn in (("scores-by-section", ("rect", "bar")), ("cost-vs-accuracy", ("circle", "point")),
                         ("calibration", ("path", "curve"))):
        svg = base64.b64decode(downloads[f"rmb-{chart}.svg"].split(",", 1)[1]).decode()
        parsed = Elements(svg)
        runs = {int(e["data-run"]): e["stroke"] if e.get("fill") in (None, "none") else e["fill"]
                for e in parsed.having(*drawn)}
        starts = [i for i, e in enumerate(parsed.all) if e["tag"] == "g" and e.get("class") == "key"]
        keys = [(next(e for e in parsed.all[i:] if e["tag"] == "title")["text"],  # the whole title
                 next(e for e in parsed.all[i:] if e["tag"] == "text"),  # as drawn
                 next(e for e in parsed.all[i:] if e["tag"] in ("rect", "line"))) for i in starts]
        assert set(runs) == set(titles), chart
        for rank, colour in runs.items():
            tip, text, mark = next(key for key in keys if key[0].startswith(titles[rank]))  # (the diagram adds ECE)
            assert tip.startswith(text["text"].rstrip("…")) and colour in (mark.get("fill"), mark.get("stroke"))
            assert float(text["x"]) + 6.4 * len(text["text"]) <= float(parsed.all[0]["width"]), (chart, text)


def test_a_lone_run_of_the_largest_selection_does_not_hide_the_cost_chart(tmp_path):
    """A --precision run of the whole data set ranks first, alone; the three judges run on
    --limit 5 beside it are the choice the cost chart is for: it draws them, and says which
    runs it draws."""
    write_run(tmp_path / "precise", "openai:gpt-4o-mini", dataset_paths()[:4], 1, settings={"precision": 0.02},
              records=18329, cost=0.6, results_cost=0.6)
    for name, cost in (("a", 0.5), ("b", 2.0), ("c", 9.0)):
        write_run(tmp_path / name, f"openai:{name}", dataset_paths()[:4], 2, settings={"limit": 5}, records=475,
                  cost=cost, results_cost=cost)
    shown = load_runs([tmp_path / name for name in ("precise", "a", "b", "c")])
    page = Elements(render_html(shown))
    ranks = {row.run.judge: row.rank for row in board(shown).rows}
    assert ranks["openai:gpt-4o-mini"] == 1
    assert {int(c["data-run"]) for c in page.having("circle", "point")} == {ranks[f"openai:{n}"] for n in "abc"}
    assert any("first 5 records per scenario" in p["text"] for p in page.having("p", "note")
               if "cost" in p["text"])
