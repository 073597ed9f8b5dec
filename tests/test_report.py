"""`rmb-judge report`: loading run folders and the terminal, Markdown and HTML renderings."""

from __future__ import annotations

import colorsys
import json
import os
import random
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from rmb_judge.errors import DataError, RmbJudgeError
from rmb_judge.report import (
    ABSENT,
    SCORE_KEYS,
    load_runs,
    published_leaderboard,
    render_html,
    render_markdown,
    render_terminal,
)

DATA = Path(os.environ.get("RMB_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared/rmb/RMB_dataset")
CHANCE = {
    "pairwise_helpfulness": 0.5,
    "pairwise_harmlessness": 0.5,
    "bon_helpfulness": 0.215,
    "bon_harmlessness": 0.22,
}


def dataset_paths() -> list[str]:
    """Every scenario's category_path in the real data copy (46 pairwise + 49 Best-of-N files)."""
    paths = sorted(path.relative_to(DATA).with_suffix("").as_posix() for path in DATA.rglob("*.json"))
    assert len(paths) == 95, f"expected the RMB data copy at {DATA}"
    return paths


def section_of(path: str) -> str:
    set_dir, section_dir = path.split("/")[:2]
    return ("pairwise" if set_dir == "Pairwise_set" else "bon") + "_" + section_dir.lower()


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
) -> dict:
    """A summary.json as `rmb-judge run` writes it, with scores that follow from its scenarios."""
    rng = random.Random(seed)
    scenarios, sections = [], {}
    for path in paths:
        n = rng.randint(8, 30)
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
    scores["overall"] = sum(present) / len(present)
    summary = {
        "judge": judge, "simulated": simulated, "complete": complete, "settings": settings,
        "scores": scores,
        "chance": None if chance is None else {key: chance[key] for key in sections},
        "sections": sections, "scenarios": scenarios, "position": position, "agreement": agreement,
        "usage": {"requests": 10, "cache_hits": 0, "retries": 0, "failed": 0, "unparsed": 0, "refused": 0,
                  "input_tokens": 1000, "output_tokens": 100, "cost_usd": cost},
    }
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (folder / "samples.jsonl").write_text("", encoding="utf-8")
    (folder / "manifest.json").write_text("{}", encoding="utf-8")
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


def ranked(runs3: dict[str, dict]) -> list[dict]:
    return sorted(runs3.values(), key=lambda summary: -summary["scores"]["overall"])


def folders(tmp_path: Path) -> list[Path]:
    return [tmp_path / "gpt-full", tmp_path / "gpt-ablation", tmp_path / "mock"]


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
    assert len(full.scenarios) == 95 and full.cost_usd == 0.4213


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


def test_runs_with_the_same_judge_and_settings_stay_distinct(tmp_path):
    paths = dataset_paths()[:3]
    settings = {"template": "rmb", "order": "random", "samples": 1}
    write_run(tmp_path / "a", "openai:gpt-4o", paths, 1, settings=settings)
    write_run(tmp_path / "b", "openai:gpt-4o", paths, 2, settings=settings)
    labels = [run.label for run in load_runs([tmp_path / "a", tmp_path / "b"])]
    assert labels == ["rmb · random · k=1 · a", "rmb · random · k=1 · b"]


# ---------------------------------------------------------------- HTML


def test_html_heatmap_has_one_cell_per_scenario_and_run(runs3, tmp_path):
    page = Elements(render_html(load_runs(folders(tmp_path))))
    order = ranked(runs3)
    cells = page.having("rect", "hm-cell")
    assert len(cells) == 95 * 3
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
    assert sum(1 for c in cells if c["fill"] == ABSENT) == 95 - len(runs3["ablation"]["scenarios"])
    present.sort()
    hues = [hue(fill) for _, fill in present]
    # Hue rises with accuracy (8-bit rounding of the RGB channels wobbles it by under 1 degree).
    assert all(a <= b + 0.003 for a, b in zip(hues, hues[1:])), "colour must rise with accuracy"
    assert hues[0] < 0.05 < 0.3 < hues[-1]  # red at the bottom, green at the top


def test_html_heatmap_groups_scenarios_with_short_labels(runs3, tmp_path):
    page = Elements(render_html(load_runs(folders(tmp_path))))
    texts = [e["text"] for e in page.all if e["tag"] == "text"]
    headers = [t for t in texts if " · " in t and not t.startswith("#")]
    assert headers == ["Pairwise · Helpfulness", "Pairwise · Harmlessness", "Best-of-N · Helpfulness",
                       "Best-of-N · Harmlessness"]
    assert "Chat/Discussion" in texts and "S11" in texts
    assert not any(t.startswith(("Pairwise_set", "BoN_set")) for t in texts)
    # Scenarios in a group sort naturally: S2 before S10.
    bon_harm = texts[texts.index("Best-of-N · Harmlessness"):]
    assert bon_harm.index("S2") < bon_harm.index("S10")


def test_html_bar_chart_has_a_bar_per_run_and_section_with_chance_lines(runs3, tmp_path):
    page = Elements(render_html(load_runs(folders(tmp_path))))
    order = ranked(runs3)
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
    assert len(bars) == 5 + 3 + 5  # the ablation has no Best-of-N sections
    heights = {(b["data-run"], b["data-section"]): float(b["height"]) for b in bars}
    for key, score in expected.items():
        assert heights[key] == pytest.approx(260 * score, abs=0.1)
    lines = {(c["data-run"], c["data-section"]): float(c["data-chance"]) for c in page.having("line", "chance")}
    rank_of_ablation = str(order.index(runs3["ablation"]) + 1)
    assert lines[(rank_of_ablation, "pairwise_helpfulness")] == 0.5
    assert lines[(rank_of_ablation, "overall")] == 0.5
    assert lines[("1", "bon_helpfulness")] == 0.215
    assert lines[("1", "overall")] == pytest.approx((0.5 + 0.5 + 0.215 + 0.22) / 4, abs=5e-4)


def test_html_is_one_self_contained_file(runs3, tmp_path):
    text = render_html(load_runs(folders(tmp_path)), published=True)
    assert "<script" not in text and "@import" not in text and "url(" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert text.count("<style>") == 1 and text.count("<svg") == 2
    page = Elements(text)
    published = page.having("table", "published")
    assert published and "GPT-4o-2024-05-13" in text and "2410.09893" in text
    assert {t["text"] for t in page.having("span", "tag")} == {"complete", "partial", "simulated"}


# ---------------------------------------------------------------- Markdown and terminal


def markdown_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_markdown_table_rows_and_values(runs3, tmp_path):
    text = render_markdown(load_runs(folders(tmp_path)))
    header, separator, *rows = markdown_rows(text)
    assert header[:8] == ["#", "Judge", "Settings", "Help BoN", "Help Pair", "Harm BoN", "Harm Pair", "Overall"]
    assert header[-3:] == ["1st pick", "Consistency", "Unanimous"]
    assert separator[0] == "---:" and separator[1] == "---"
    order = ranked(runs3)
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
    assert (ablation["Status"], ablation["Cost"], ablation["Unanimous"]) == ("partial", "$1.50", "0.930")
    assert by_judge[("openai:gpt-4o-mini", "rmb · random · k=1")]["Cost"] == "$0.4213"
    chance = dict(zip(header, rows[-1]))
    assert (chance["Judge"], chance["Help BoN"], chance["Help Pair"], chance["Harm BoN"]) == (
        "chance level", "0.215", "0.500", "0.220",
    )
    assert chance["Overall"] == "—"  # the pairwise-only ablation has a different overall chance
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


def test_markdown_published_rows(runs3, tmp_path):
    text = render_markdown(load_runs(folders(tmp_path)), published=True)
    section = text[text.index("## Published"):]
    header, _, *rows = markdown_rows(section)
    assert header == ["Model", "Type", "Help BoN", "Help Pair", "Harm BoN", "Harm Pair", "Overall"]
    assert ["GPT-4o-2024-05-13", "generative", "0.639", "0.815", "0.682", "0.814", "0.738"] in rows
    assert len(rows) == len(published_leaderboard()["rows"]) and "Source:" in section


def test_terminal_table(runs3, tmp_path):
    console = Console(record=True, width=200)
    render_terminal(load_runs(folders(tmp_path)), console, published=True)
    text = console.export_text()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 200
    for rank, summary in enumerate(ranked(runs3), 1):
        first = next(i for i, line in enumerate(lines) if line.startswith(f"│ {rank} │"))
        assert summary["judge"] in lines[first] and f"{summary['scores']['overall']:.3f}" in lines[first]
        settings = summary["settings"]
        assert f"{settings['template']} · {settings['order']} · k={settings['samples']}" in lines[first + 1]
        status = "complete" if summary["complete"] else "partial"
        assert status in lines[first] and ("simulated" in lines[first + 1]) == summary["simulated"]
    assert any("chance level" in line and "0.215" in line and "0.220" in line for line in lines)
    assert any("GPT-4o-2024-05-13" in line and "0.738" in line for line in lines)
    assert "2410.09893" in text


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
    header, _, row = markdown_rows(render_markdown(runs))
    cells = dict(zip(header, row))
    assert cells["Settings"] == "old" and cells["Cost"] == "—" and cells["Failed"] == "2" and cells["n"] == "20"
    assert (cells["Help Pair"], cells["Help BoN"]) == ("0.700", "—") and "Consistency" not in header
    page = Elements(render_html(runs))
    assert [c["data-accuracy"] for c in page.having("rect", "hm-cell")] == ["0.700"]
    assert not page.having("line", "chance")
    render_terminal(runs, Console(record=True, width=200))


def test_published_rows_are_consistent():
    data = published_leaderboard()
    assert "2410.09893" in data["source"] and "Table 3" in data["source"]
    sections = ("bon_helpfulness", "pairwise_helpfulness", "bon_harmlessness", "pairwise_harmlessness")
    for row in data["rows"]:
        assert row["type"] in ("generative", "discriminative")
        # The paper's overall is the mean of the four subsets, rounded to 3 places: a check on transcription.
        assert row["overall"] == pytest.approx(sum(row[key] for key in sections) / 4, abs=6e-4), row["model"]


def test_narrow_terminal_splits_scores_from_run_details(runs3, tmp_path):
    console = Console(record=True, width=110)
    render_terminal(load_runs(folders(tmp_path)), console)
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 110
    scores, details = text.split("Run details")
    for rank, summary in enumerate(ranked(runs3), 1):
        assert f"{summary['scores']['overall']:.3f}" in scores
        n = sum(s["n"] for s in summary["sections"].values())
        assert any(line.startswith(f"│ {rank} │") and f" {n} " in line for line in details.splitlines())
