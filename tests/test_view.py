"""`rmb-judge view`, started as a user starts it, asked over HTTP what the page asks: every record
with its texts, the prompts the judge was sent and what it answered (checked against the fake
server's own log and the data files read independently), the filters, search, sort, pages and
disagreements (against outcomes known in advance), and that it sends no request and writes
nothing. The page itself is driven in a real browser in test_view_browser.py."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
from importlib import resources
from pathlib import Path

import pytest
from fake_api import FakeAPI
from view_runs import JUDGE_A, JUDGE_B, KINDS, answers_of, get, key, listed, record_id, serving

from rmb_judge import cli
from rmb_judge.explorer.index import build
from rmb_judge.outputs import RunFolder

pytestmark = pytest.mark.xdist_group("view")  # one worker builds the judged runs once for both view modules


@pytest.fixture(scope="module")
def url(judged_runs):
    with serving(judged_runs.a, judged_runs.b, cwd=judged_runs.root) as address:
        yield address


def test_each_record_shows_its_texts_and_what_each_judge_was_sent_and_said(judged_runs, url):
    runs = judged_runs
    meta = get(url, "/api/meta")
    assert meta["records"] == len(runs.records)
    assert [r["judge"] for r in meta["runs"]] == [JUDGE_A, JUDGE_B]
    sent = {json.dumps(messages, sort_keys=True) for messages in runs.sent}
    for record in runs.records:
        item = runs.item(record)
        shown = get(url, "/api/record", id=record_id(record))
        assert shown["conversation"] == [{"role": m["role"], "content": m["content"]}
                                         for m in item["conversation_input"]]
        assert [(a["label"], a["model"], a["text"], a["length"]) for a in shown["answers"]] == [
            (label, a["llm_name"], a["answer"], len(a["answer"])) for label, a in answers_of(item)]
        a_run, b_run = shown["runs"]
        assert (a_run["outcome"], b_run["outcome"]) == (runs.kind[key(record)], "tie")
        assert [c["title"] for c in a_run["comparisons"]] == [
            f"{answers_of(item)[0][0]} vs {label}" for label, _ in answers_of(item)[1:]]
        for comparison in a_run["comparisons"]:
            (presentation,) = comparison["presentations"]
            (prompt,) = presentation["prompts"]
            assert json.dumps(prompt, sort_keys=True) in sent  # exactly what the server was sent
            said = runs.replies.get("\n\n".join(m["content"] for m in prompt))  # None: it answered a 400
            assert presentation["raw"] == said and (presentation["error"] is None) == (said is not None)
        for comparison in b_run["comparisons"]:  # --order both, a judge that always picks the first
            assert [(p["order"], p["verdict"]) for p in comparison["presentations"]] == [("AB", "A"), ("BA", "A")]
            shown_first = [p["shown"][0] for p in comparison["presentations"]]
            assert shown_first == [comparison["title"].split(" vs ")[0], comparison["title"].split(" vs ")[1]]
            assert comparison["outcome"] == "tie"


def test_filters_search_sort_and_pages(judged_runs, url):
    runs = judged_runs
    every = listed(url)
    assert sorted(every) == sorted(record_id(r) for r in runs.records)
    ids = {key(r): record_id(r) for r in runs.records}
    for kind in KINDS:  # judge A's outcomes (run 0), then judge B's
        assert set(listed(url, outcome=kind)) == {ids[k] for k, said in runs.kind.items() if said == kind}
    assert set(listed(url, run=1, outcome="tie")) == set(every) and not listed(url, run=1, outcome="right")
    for position in ("A", "B"):  # where judge A was shown the preferred answer
        found = set(listed(url, position=position))
        assert {ids[k] for k, seen in runs.first.items() if seen == {position}} <= found
        assert not {ids[k] for k, seen in runs.first.items() if seen != {position}} & found
    assert set(listed(url, run=1, position="both")) == set(every)

    first = runs.records[0]
    assert set(listed(url, scenario=first.subset)) == {
        record_id(r) for r in runs.records if r.subset == first.subset}
    assert set(listed(url, section=first.section)) == {record_id(r) for r in runs.records if r.section == first.section}
    turns = {record_id(r): sum(m["role"] == "user" for m in runs.item(r)["conversation_input"]) for r in runs.records}
    multi = {record for record, n in turns.items() if n > 1}
    assert multi and set(listed(url, turns="multi")) == multi and set(listed(url, turns="single")) == set(every) - multi
    models = {record_id(r): {a["llm_name"] for _, a in answers_of(runs.item(r))} for r in runs.records}
    model = sorted(models[record_id(first)])[0]
    assert set(listed(url, model=model)) == {record for record, names in models.items() if model in names}

    texts = {record_id(r): "\n".join([m["content"] for m in runs.item(r)["conversation_input"]]
                                     + [a["answer"] for _, a in answers_of(runs.item(r))]).lower()
             for r in runs.records}
    words = [max((w for w in texts[record].split() if w.isalpha()), key=len) for record in every[:2]]
    for query, wanted in ((words[0].upper(), [words[0]]), (" ".join(words), words)):  # any case; every word
        assert set(listed(url, text=query)) == {r for r, text in texts.items() if all(w in text for w in wanted)}
    assert listed(url, text='"[[a]]"')  # judge outputs are searched too

    total = {record_id(r): sum(len(a["answer"]) for _, a in answers_of(runs.item(r))) for r in runs.records}
    longest = [total[r] for r in listed(url, sort="longest")]
    assert longest == sorted(total.values(), reverse=True) and [total[r] for r in listed(url, sort="shortest")] == sorted(
        total.values())
    page = get(url, "/api/records", offset=2, limit=3)
    assert page["total"] == len(every) and [item["id"] for item in page["items"]] == every[2:5]


def test_the_records_where_the_runs_disagree(judged_runs, url):
    runs = judged_runs
    differ = {record_id(r) for r in runs.records if runs.kind[key(r)] != "tie"}  # judge B ties everywhere
    assert get(url, "/api/meta")["disagreements"] == len(differ)
    assert set(listed(url, disagree=1)) == differ
    assert set(listed(url, disagree=1, outcome="failed")) == {
        record_id(r) for r in runs.records if runs.kind[key(r)] == "failed"}


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `root`: size, modification time and SHA-256."""
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns,
                                          hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_view_sends_no_request_and_writes_nothing(judged_runs):
    """Started where the runs' cache is the default one (./cache), with a judge's API configured:
    after every record and a search, the server saw no request and no file changed."""
    runs = judged_runs
    before = snapshot(runs.root)
    assert any(name.startswith("cache/") for name in before)
    with FakeAPI().run_in_thread() as api:
        with serving(runs.a, runs.b, cwd=runs.root, env={**os.environ, **api.env()}) as address:
            for record in runs.records:
                get(address, "/api/record", id=record_id(record))
            listed(address, text="the")
        assert api.requests == []
    assert snapshot(runs.root) == before


def test_changed_data_files_templates_and_missing_data_are_named(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("RMB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))  # no data folder to fall back on
    data = tmp_path / "RMB_dataset"
    scenario = "Pairwise_set/Harmlessness/S1"
    (data / scenario).parent.mkdir(parents=True)
    shutil.copy(data_root / f"{scenario}.json", data / f"{scenario}.json")
    template = tmp_path / "mine.toml"
    template.write_bytes((resources.files("rmb_judge.prompts") / "rmb.toml").read_bytes())
    assert cli.main(["run", "--judge", "mock", "--data", str(data), "--limit", "3", "--template", str(template),
                     "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--no-progress"]) == 0
    first = f"{scenario}::{json.loads((data / f'{scenario}.json').read_text())[0]['pair_uid']}"
    shown = build([tmp_path / "run"]).detail(first)
    assert shown is not None and shown["runs"][0]["comparisons"][0]["presentations"][0]["prompts"]
    assert not shown["notes"]

    items = json.loads((data / f"{scenario}.json").read_text())
    items[0]["chosen"]["answer"] += " (edited)"
    (data / f"{scenario}.json").write_text(json.dumps(items))
    template.write_text(template.read_text() + "\n# edited\n")
    index = build([tmp_path / "run"])
    meta = index.meta()
    assert any(f"{scenario}.json" in note and "differ" in note for note in meta["notes"])
    assert any("has changed since the run" in note for note in meta["runs"][0]["notes"])
    shown = index.detail(first)
    assert shown is not None and shown["stale"] and any("another version" in note for note in shown["notes"])

    # runs that judged different versions of a file do not disagree on its records: they saw other texts
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "run", other)
    lines = [json.loads(line) for line in (other / "samples.jsonl").read_text().splitlines()]
    flipped = {"A": "B", "B": "A"}[lines[0]["verdict"]]
    lines[0].update(verdict=flipped, correct=1 - lines[0]["correct"], comparison_correct=1 - lines[0]["correct"],
                    record_correct=1 - lines[0]["correct"])
    (other / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert build([tmp_path / "run", other]).meta()["disagreements"] == 1  # the same version judged
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["data"]["files"][f"{scenario}.json"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert build([tmp_path / "run", other]).meta()["disagreements"] == 0

    data.rename(tmp_path / "moved")
    index = build([tmp_path / "run"])
    assert any("could not be read" in note and "--data" in note for note in index.meta()["notes"])
    shown = index.detail(first)
    assert shown is not None and shown["conversation"] is None and shown["runs"][0]["outcome"]
    shown = build([tmp_path / "run"], tmp_path / "moved").detail(first)
    assert shown is not None and shown["answers"][0]["text"].endswith("(edited)")


def test_bad_input_is_one_clear_line(judged_runs, tmp_path, capsys):
    def error(*args: str) -> str:
        assert cli.main(["view", *args, "--no-browser"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "no such run folder" in error(str(tmp_path / "nowhere"))
    copy = tmp_path / "copy"
    shutil.copytree(judged_runs.a, copy)
    (copy / "samples.jsonl").rename(copy / "elsewhere.jsonl")
    assert f"{copy}: no samples.jsonl" in error(str(copy))
    (copy / "samples.jsonl").write_text('{"uid": "1", "category_path": "x"}\n[1, 2]\n')
    assert f"{copy / 'samples.jsonl'}, line 2: not a sample line" in error(str(copy))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert f"--port {port}: already in use" in error(str(judged_runs.a), "--port", port)


def test_only_requests_to_this_machine_are_answered(url):
    """A page elsewhere pointing its own domain name at 127.0.0.1 must not read the records."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    for name, status in (("evil.example", 403), (f"localhost:{port}", 200), (f"127.0.0.1:{port}", 200)):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/api/meta", headers={"Host": name})
        assert connection.getresponse().status == status
        connection.close()


def test_a_run_folder_without_its_manifest_still_opens(judged_runs, tmp_path):
    """An older or hand-copied folder with summary.json and samples.jsonl but no manifest.json:
    its records are shown, and the page says their data files could not be checked."""
    copy = tmp_path / "copy"
    shutil.copytree(judged_runs.a, copy)
    (copy / "manifest.json").unlink()
    index = build([copy], judged_runs.data)
    assert any("manifest.json" in note and "not checked" in note for note in index.meta()["runs"][0]["notes"])
    record = judged_runs.records[0]
    shown = index.detail(record_id(record))
    assert shown is not None and shown["answers"][0]["text"] == record.chosen[0].text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["samples.jsonl", "manifest.json"])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_file_that_is_no_regular_file_is_refused_unread(name, special, judged_runs, tmp_path, capsys):
    """A FIFO blocks a reader forever and a link to /dev/zero is read until memory runs out:
    view refuses both before reading, as report and compare do."""
    copy = tmp_path / "copy"
    shutil.copytree(judged_runs.a, copy)
    (copy / name).unlink()
    if special == "fifo":
        os.mkfifo(copy / name)
    else:
        (copy / name).symlink_to(special)
    assert cli.main(["view", str(copy), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{copy / name}: not a regular file" in err


def test_a_run_still_writing_its_first_summary_is_named_as_such(tmp_path, capsys):
    """While a run's first invocation is under way its folder holds only its lock: view (as
    report and compare) says the summary comes when the run ends."""
    folder = RunFolder(tmp_path / "running")  # as `run` takes its --out folder
    try:
        assert cli.main(["view", str(tmp_path / "running"), "--no-browser"]) == 2
    finally:
        folder.close()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no summary.json yet" in err and "when it ends" in err
