"""The `view` page and the HTML report in a real browser: headless Chromium driven by selenium
through Debian's chromedriver (the same version as the browser, so nothing is downloaded).
Filtering, a deep link, two runs side by side where they disagree, no console errors; then
screenshots at 800 and 1280 px, checked for page-level horizontal scrolling and for content cut
off at the window's edge or inside a chart.

A machine without Chromium fails these tests, naming what to install (CI installs it:
.ci/run); RMB_SKIP_BROWSER=1 skips them instead, for a machine that cannot have a browser.
RMB_SCREENSHOTS=DIR keeps the screenshots there (else in the test's temporary folder)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import pytest
from fake_api import FAKE_KEY, FakeAPI, Reply
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_jury import outcomes
from test_report import dataset_paths, write_run
from test_verdict_probs import probability_judge
from view_runs import JUDGE_A, JUDGE_B, SELECTION, answers_of, key, record_id, serving

from rmb_judge import cli, jury
from rmb_judge.report import load_runs, render_html

pytestmark = pytest.mark.xdist_group("view")  # one worker builds the judged runs once for both view modules

WIDTHS = (800, 1280)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  # without these Chromium dials out at start, and a closed network refuses it
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> WebDriver:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        message = "no chromium and chromedriver on PATH (Debian: apt-get install -y chromium chromium-driver)"
        if os.environ.get("RMB_SKIP_BROWSER") == "1":
            pytest.skip(f"{message}; RMB_SKIP_BROWSER=1")
        pytest.fail(f"{message}; RMB_SKIP_BROWSER=1 skips the browser tests instead", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def no_console_errors(browser):
    """Whatever a test does, the page logs no error (a failed request, a script error)."""
    browser.get_log("browser")  # what earlier tests left
    yield
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


@pytest.fixture(scope="module")
def url(judged_runs):
    with serving(judged_runs.a, judged_runs.b, cwd=judged_runs.root) as address:
        yield address


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("RMB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def window(browser: WebDriver, width: int, height: int = 900) -> None:
    """The page laid out exactly `width` CSS pixels wide (headless window sizes include no frame)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def until(browser: WebDriver, condition, what: str):
    """Wait for `condition`; an element the page replaced while it was read (a list repainted)
    is read again on the next try."""
    return WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda driver: condition(driver), message=what)


def listed(browser: WebDriver) -> list[str]:
    """The listed records' ids, read in one step (the list may be repainted meanwhile)."""
    return browser.execute_script("return Array.from(document.querySelectorAll('#list a'), a => a.dataset.id)")


def shows(browser: WebDriver, expected: set[str]) -> None:
    until(browser, lambda d: set(listed(d)) == expected and d.find_element(By.ID, "count").text != "Loading…",
          f"the list to hold {sorted(expected)}")


def words(text: str) -> str:
    return " ".join(text.split())


def test_filtering_narrows_the_list_and_keeps_it_in_the_url(browser, url, judged_runs):
    runs = judged_runs
    window(browser, 1280)
    browser.get(url)
    every = {record_id(r) for r in runs.records}
    shows(browser, every)
    assert browser.find_element(By.ID, "count").text == f"{len(every)} records"
    Select(browser.find_element(By.ID, "f-outcome")).select_by_value("wrong")
    wrong = {record_id(r) for r in runs.records if runs.kind[key(r)] == "wrong"}
    shows(browser, wrong)
    assert browser.find_element(By.ID, "count").text == f"{len(wrong)} of {len(every)} records"
    assert "outcome=wrong" in browser.current_url
    browser.refresh()  # the URL holds the filters
    shows(browser, wrong)
    assert Select(browser.find_element(By.ID, "f-outcome")).first_selected_option.get_attribute("value") == "wrong"

    Select(browser.find_element(By.ID, "f-outcome")).select_by_value("")
    scenario = runs.records[0].subset
    Select(browser.find_element(By.ID, "f-scenario")).select_by_value(scenario)
    shows(browser, {record_id(r) for r in runs.records if r.subset == scenario})
    browser.find_element(By.ID, "clear").click()
    shows(browser, every)
    record = runs.records[0]
    word = max((w for w in record.chosen[0].text.split() if w.isalpha()), key=len)
    browser.find_element(By.ID, "search").send_keys(word.upper())
    texts = {record_id(r): "\n".join([m.content for m in r.conversation] + [r.chosen[0].text]
                                     + [o.text for o in r.rejected]).lower() for r in runs.records}
    shows(browser, {r for r, text in texts.items() if word.lower() in text})
    assert urllib.parse.quote(word.upper()) in browser.current_url


def test_a_deep_link_opens_its_record_with_what_the_judge_saw_and_said(browser, url, judged_runs):
    runs = judged_runs
    record = next(r for r in runs.records if r.kind == "pairwise" and runs.kind[key(r)] == "wrong")
    item = runs.item(record)
    window(browser, 1280)
    browser.get(f"{url}r/{urllib.parse.quote(record.subset)}/{urllib.parse.quote(record.uid)}")
    until(browser, lambda d: f"#{record.uid}" in d.find_element(By.CSS_SELECTOR, "#record h2").text, "the record")
    page = browser.find_element(By.ID, "record")
    assert words(page.find_element(By.CSS_SELECTOR, ".conversation .text").text) == words(
        item["conversation_input"][-1]["content"])
    answers = page.find_elements(By.CSS_SELECTOR, ".answer")
    for shown, (label, answer) in zip(answers, answers_of(item), strict=True):
        assert shown.find_element(By.CSS_SELECTOR, ".label").text == label
        assert words(shown.find_element(By.CSS_SELECTOR, ".text").text) == words(answer["answer"])
    judge_a = page.find_elements(By.CSS_SELECTOR, ".judgment")[0]
    raw = judge_a.find_element(By.CSS_SELECTOR, "pre.raw").text
    assert raw in runs.replies.values() and raw.endswith("]]")
    assert "wrong" in judge_a.find_element(By.CSS_SELECTOR, "h4 .badge").text
    prompt = judge_a.find_element(By.CSS_SELECTOR, "details.prompt")
    prompt.find_element(By.TAG_NAME, "summary").click()
    sent = words(" ".join(p.text for p in prompt.find_elements(By.TAG_NAME, "pre")))
    assert words(record.chosen[0].text) in sent and words(record.rejected[0].text) in sent

    other = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#list a")
                 if a.get_attribute("data-id") != record_id(record))
    other.click()
    until(browser, lambda d: "/r/" in d.current_url and record.uid not in d.current_url, "the other record's URL")
    browser.back()
    until(browser, lambda d: f"#{record.uid}" in d.find_element(By.CSS_SELECTOR, "#record h2").text,
          "the deep-linked record again")


def test_two_runs_side_by_side_where_they_disagree(browser, url, judged_runs):
    runs = judged_runs
    differ = {record_id(r) for r in runs.records if runs.kind[key(r)] != "tie"}
    window(browser, 1280)
    browser.get(url)
    shows(browser, {record_id(r) for r in runs.records})
    box = browser.find_element(By.ID, "f-disagree")
    assert f"({len(differ)})" in browser.find_element(By.ID, "disagree-label").text
    box.click()
    shows(browser, differ)
    assert "disagree=1" in browser.current_url
    first = browser.find_element(By.CSS_SELECTOR, "#list a")
    badges = [b.text for b in first.find_elements(By.CSS_SELECTOR, ".badge")]
    assert len(badges) == 2 and badges[1] == "2 tie" and badges[0] != "1 tie"
    first.click()
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".judgments.side-by-side .judgment")) == 2,
          "both judges' columns")
    left, right = browser.find_elements(By.CSS_SELECTOR, ".judgments.side-by-side .judgment")
    assert left.location["y"] == right.location["y"] and left.location["x"] < right.location["x"]
    assert "tie" in right.find_element(By.CSS_SELECTOR, "h4 .badge").text


def test_one_run_offers_no_run_choice_and_no_disagreements(browser, judged_runs):
    with serving(judged_runs.a, cwd=judged_runs.root) as address:
        window(browser, 1280)
        browser.get(address)
        shows(browser, {record_id(r) for r in judged_runs.records})
        assert not browser.find_element(By.ID, "f-disagree").is_displayed()
        assert not browser.find_element(By.ID, "f-run").is_displayed()
        assert not browser.find_element(By.ID, "pager").is_displayed()  # one page
        assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#list .badge")][:1] == [
            judged_runs.kind[key(judged_runs.records[0])]]  # no run number on a lone run's badges


PROBS_JUDGE = "openai:gpt-4.1-mini"


@pytest.fixture(scope="module")
def panel(tmp_path_factory, judged_runs) -> tuple[Path, Path]:
    """A --verdict-probs run of the judged records (the fake server gives token logprobs), and
    the jury of it and the two judged runs."""
    root = tmp_path_factory.mktemp("panel")
    with pytest.MonkeyPatch.context() as patch, FakeAPI(probability_judge()).run_in_thread() as api:
        patch.setenv("OPENAI_API_KEY", FAKE_KEY)
        assert cli.main(["run", "--judge", PROBS_JUDGE, "--data", str(judged_runs.data), *SELECTION, "--out",
                         str(root / "probs"), "--cache", str(root / "cache"), "--no-progress", "--base-url",
                         api.openai_url, "--verdict-probs"]) == 0
    jury.build([judged_runs.a, judged_runs.b, root / "probs"], root / "jury")
    return root / "probs", root / "jury"


@pytest.mark.parametrize("width", WIDTHS)
def test_a_runs_behaviour_calibration_and_probabilities_and_a_jury_of_its_members(
        browser, panel, judged_runs, shots, width):
    """The page's overview gives each run's scores, behaviour and calibration (the reliability
    diagram drawn); a record shows the verdict probabilities of each presentation, named by the
    answers shown, and a jury's column its members' verdicts (read independently from their
    samples.jsonl), not a prompt or a reward model's note."""
    probs, panel_jury = panel
    members = (judged_runs.a, judged_runs.b, probs)
    with serving(probs, panel_jury, judged_runs.a, judged_runs.b, cwd=judged_runs.root) as address:
        window(browser, width)
        browser.get(address)
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.overview")) == 4, "the runs' overview")
        first, second = browser.find_elements(By.CSS_SELECTOR, "section.overview")[:2]
        calibration = json.loads((probs / "summary.json").read_text())["calibration"]
        assert f"Brier {calibration['brier']['value']:.3f}" in first.text
        assert f"AUROC {calibration['auroc']['value']:.3f}" in first.text and "picks the longer answer" in first.text
        image = first.find_element(By.CSS_SELECTOR, "figure.reliability img")
        until(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image),
              "the reliability diagram")
        assert "A jury (majority) of 3: " in second.text
        assert all(judge in second.text for judge in (JUDGE_A, JUDGE_B, PROBS_JUDGE))
        assert "reward model" not in browser.find_element(By.TAG_NAME, "body").text
        check_and_shoot(browser, width, shots / f"view-overview-{width}.png", full_page=width < 900)

        said = [outcomes(folder) for folder in members]
        record = next(r for r in judged_runs.records if r.kind == "pairwise"
                      and len({s[(r.subset, r.uid, None)] for s in said}) > 1)
        browser.get(f"{address}r/{urllib.parse.quote(record.subset)}/{urllib.parse.quote(record.uid)}")
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".judgment")) == 4, "the record's judgments")
        probs_column, jury_column = browser.find_elements(By.CSS_SELECTOR, ".judgment")[:2]
        line = next(json.loads(text) for text in (probs / "samples.jsonl").read_text().splitlines()
                    if (json.loads(text)["category_path"], json.loads(text)["uid"]) == key(record))
        first_shown, second_shown = ("chosen", "rejected") if line["order"] == "AB" else ("rejected", "chosen")
        p = line["probs"]
        assert words(probs_column.find_element(By.CSS_SELECTOR, ".probs").text) == (
            f"Verdict probabilities: {first_shown} {p['A']:.3f} · {second_shown} {p['B']:.3f} · tie {p['tie']:.3f}")
        answer = {"win": "the chosen answer", "loss": "the rejected answer", "tie": "tie", None: "no verdict"}
        assert [li.text for li in jury_column.find_elements(By.CSS_SELECTOR, "ul.members li")] == [
            f"{judge} (run {number}, beside): {answer[s[(record.subset, record.uid, None)]]}"
            for judge, number, s in zip((JUDGE_A, JUDGE_B, PROBS_JUDGE), (3, 4, 1), said)]
        assert not jury_column.find_elements(By.CSS_SELECTOR, "details.prompt")
        assert "Shown as A" not in jury_column.text


PAYLOAD = ('<img src=x onerror="window.pwned=1"><script>window.pwned=1</script></pre><b id="bold">b</b>'
           '<svg onload="window.pwned=1"></svg>')


def test_html_and_script_in_the_records_and_runs_stay_text(browser, data_root, tmp_path):
    """Records hold harmful prompts, HTML and code, and judges answer with markup: every text the
    page shows (conversation, answers, models, the judge's output and probabilities, the
    prompt, a folder's and a jury's names) is text, never markup."""
    data = tmp_path / "RMB_dataset"
    scenario = "Pairwise_set/Helpfulness/Chat/Discussion.json"
    (data / scenario).parent.mkdir(parents=True)
    items = json.loads((data_root / scenario).read_text(encoding="utf-8"))[:2]
    for item in items:
        item["conversation_input"][0]["content"] += PAYLOAD
        item["chosen"]["answer"] += PAYLOAD
        item["reject"]["llm_name"] = PAYLOAD
    (data / scenario).write_text(json.dumps(items), encoding="utf-8")
    out = tmp_path / f"run {PAYLOAD.replace('/', '|')}"
    with pytest.MonkeyPatch.context() as patch, FakeAPI(probability_judge()).run_in_thread() as api:
        api.responder = lambda body, wire: Reply(PAYLOAD + " [[A]]", probs={"A": 0.75, "B": 0.2, "C": 0.05})
        patch.setenv("OPENAI_API_KEY", FAKE_KEY)
        assert cli.main(["run", "--judge", "openai:gpt-4o-mini", "--data", str(data), "--out", str(out), "--cache",
                         str(tmp_path / "cache"), "--no-progress", "--base-url", api.openai_url, "--verdict-probs"]) == 0
    shutil.copytree(out, tmp_path / "copy")
    jury.build([out, tmp_path / "copy"], tmp_path / f"jury {PAYLOAD.replace('/', '|')}")
    with serving(out, tmp_path / f"jury {PAYLOAD.replace('/', '|')}", tmp_path / "copy", cwd=tmp_path) as address:
        window(browser, 1280)
        browser.get(address)
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.overview")) == 3, "the overview")
        browser.get(f"{address}r/{urllib.parse.quote(scenario.removesuffix('.json'))}/{items[0]['pair_uid']}")
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".judgment")) == 3, "the record")
        for details in browser.find_elements(By.CSS_SELECTOR, "details.prompt"):
            browser.execute_script("arguments[0].open = true", details)
        record = browser.find_element(By.ID, "record")
        assert PAYLOAD in record.find_element(By.CSS_SELECTOR, ".conversation .text").text
        assert PAYLOAD in record.find_element(By.CSS_SELECTOR, ".answer.preferred .text").text
        assert PAYLOAD in record.find_element(By.CSS_SELECTOR, "pre.raw").text
        assert out.name in browser.find_element(By.ID, "runs").text
        found = browser.execute_script("""return {pwned: window.pwned === 1,
            markup: document.querySelectorAll('#bold, body img[src="x"], body svg[onload], body script').length}""")
        assert found == {"pwned": False, "markup": 0}


OVERFLOW = """
const page = document.documentElement, width = page.clientWidth, cut = [];
const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
  (typeof e.className === "string" && e.className ? "." + e.className.trim().split(/\\s+/).join(".") : "") +
  " " + JSON.stringify((e.textContent || "").trim().slice(0, 40));
const boxed = (e) => {  // inside a box that scrolls (or clips) sideways: that box shows it
  for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
    if (p instanceof SVGElement) continue;
    if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(p).overflowX)) return true;
  }
  return false;
};
for (const e of document.body.querySelectorAll("*")) {
  const r = e.getBoundingClientRect();
  if (!r.width && !r.height) continue;
  if (!(e instanceof SVGElement) && !boxed(e) && (r.right > width + 1 || r.left < -1)) cut.push("past the edge: " + name(e));
  const overflow = getComputedStyle(e).overflowX;
  if (!(e instanceof SVGElement) && ["hidden", "clip"].includes(overflow) && e.scrollWidth > e.clientWidth + 1)
    cut.push("cut inside: " + name(e));
}
const block = (e) => {  // the box a text is laid out in: its nearest ancestor that is not inline
  while (e.parentElement && getComputedStyle(e).display.startsWith("inline") && e.tagName !== "TD") e = e.parentElement;
  return e;
};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {  // text running out of its box
  const range = document.createRange();
  range.selectNodeContents(node);
  const r = range.getBoundingClientRect(), parent = node.parentElement;
  if (!r.width || parent instanceof SVGElement || ["OPTION", "SELECT", "SCRIPT", "STYLE"].includes(parent.tagName)) continue;
  const box = block(parent), inside = box.getBoundingClientRect();
  const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
  if (!scrolls && (r.right > inside.right + 1 || r.left < inside.left - 1)) cut.push("text out of its box: " + name(box));
  else if (!boxed(box) && (r.right > width + 1 || r.left < -1)) cut.push("text past the edge: " + name(parent));
}
for (const svg of document.querySelectorAll("svg")) {  // a chart clips what leaves its own area
  const box = svg.getBoundingClientRect();
  for (const e of svg.querySelectorAll("text, rect, circle, path, line")) {
    const r = e.getBoundingClientRect();
    if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
      cut.push("outside its chart: " + name(e));
  }
}
const wide = [...document.body.querySelectorAll("*")].filter((e) => e.getBoundingClientRect().right > width + 1)
  .slice(0, 8).map((e) => name(e) + " " + Math.round(e.getBoundingClientRect().right));
return {scrollWidth: page.scrollWidth, clientWidth: width, height: page.scrollHeight, cut: cut, wide: wide};
"""


def check_and_shoot(browser: WebDriver, width: int, png: Path, full_page: bool) -> None:
    """No page-level horizontal scrolling and nothing cut off; then a screenshot (the whole page's
    height where it scrolls as one)."""
    found = browser.execute_script(OVERFLOW)
    assert found["scrollWidth"] <= found["clientWidth"] == width, (found["scrollWidth"], found["wide"], found["cut"])
    assert found["cut"] == [], found["cut"][:10]
    if full_page:
        window(browser, width, min(found["height"], 12000))
    browser.save_screenshot(str(png))
    window(browser, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_view_fits_the_window(browser, url, judged_runs, shots, width):
    runs = judged_runs
    longest = max(runs.records, key=lambda r: sum(len(a.text) for a in (r.chosen[0], *r.rejected)))
    window(browser, width)
    browser.get(f"{url}r/{urllib.parse.quote(longest.subset)}/{longest.uid}?disagree=1")
    until(browser, lambda d: f"#{longest.uid}" in d.find_element(By.CSS_SELECTOR, "#record h2").text, "the record")
    shows(browser, {record_id(r) for r in runs.records if runs.kind[key(r)] != "tie"})
    for details in browser.find_elements(By.CSS_SELECTOR, "details.prompt"):
        browser.execute_script("arguments[0].open = true", details)
    check_and_shoot(browser, width, shots / f"view-{width}.png", full_page=width < 900)


@pytest.fixture(scope="module")
def report(tmp_path_factory, judged_runs, panel) -> Path:
    """The report of a varied set of runs: long judge names and settings, every extra column,
    a partial and a suspect run, a --precision run, another selection, published rows, the two
    judged runs, a --verdict-probs run and the jury of the three (behaviour, calibration and the
    reliability diagram)."""
    root = tmp_path_factory.mktemp("report")
    paths = dataset_paths()
    position = {"first_pick_rate": 0.55, "first_pick_interval": [0.53, 0.57], "consistency": 0.81,
                "consistency_interval": [0.79, 0.83], "by_section": {}}
    agreement = {"samples": 3, "unanimous_rate": 0.93, "unanimous_interval": [0.91, 0.95]}
    judges = [("openai:gpt-4o-2024-08-06", 3.1416, 0.738), ("anthropic:claude-3-5-sonnet-20241022", 4.5, 0.706),
              ("google:gemini-2.5-flash-preview-05-20", 0.42, 0.69), ("openai:gpt-4o-mini-2024-07-18", 0.21, 0.65)]
    folders = []
    for number, (judge, cost, overall) in enumerate(judges):
        folders.append(root / f"run-{number}")
        summary = write_run(folders[-1], judge, paths, number, settings={"template": "rmb-criteria", "order": "both",
                                                                        "samples": 3, "temperature": 0.7},
                            records=18329, cost=cost, results_cost=cost, overall=overall, position=position,
                            agreement=agreement)
        summary["intervals"] = {key: [v - 0.012, v + 0.011] for key, v in summary["scores"].items() if v is not None}
        (folders[-1] / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    for name, extra in (("partial", {"complete": False, "stopped_reason": "budget"}),
                        ("suspect", {"suspect": True, "warnings": ["40% of verdicts unparsed."]})):
        folders.append(root / name)
        write_run(folders[-1], f"openai:o3-mini-{name}", paths, 9, settings={}, records=18329, **extra)
    folders.append(root / "five")
    write_run(folders[-1], "openai:gpt-4.1-nano", paths, 8, settings={"limit": 5}, records=475)
    folders.append(root / "precision")
    write_run(folders[-1], "openai:gpt-4o-mini-2024-07-18", paths, 7, settings={"precision": 0.02, "seed": 3},
              records=18329, cost=0.61, results_cost=0.61)
    page = root / "report.html"
    page.write_text(render_html(load_runs([*folders, judged_runs.a, judged_runs.b, *panel]), published=True),
                    encoding="utf-8")
    return page


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_fits_the_window(browser, report, shots, width):
    window(browser, width)
    browser.get(report.as_uri())
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.heatmap"), "the report")
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.board")) == 1
    # the tables reflow rather than scroll (at 800 px the counts, cost and bias go to a table of
    # their own); only the heatmap of these nine runs may scroll in its box, and not at 1280 px
    hidden = browser.execute_script("""return [...document.querySelectorAll('.scroll')]
        .filter((box) => box.scrollWidth > box.clientWidth)
        .map((box) => box.querySelector('table, svg').getAttribute('class'));""")
    assert hidden == ["heatmap"], hidden
    split = browser.find_element(By.CSS_SELECTOR, "table.leaderboard-details").is_displayed()
    assert split == (width < 1200)
    check_and_shoot(browser, width, shots / f"report-{width}.png", full_page=True)
