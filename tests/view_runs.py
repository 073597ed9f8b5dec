"""Two real run folders for the `rmb-judge view` tests, judged through the fake OpenAI server.

Judge A (`openai:gpt-4o-mini`) answers each pair of answers one way: right, wrong, tie
(`[[C]]`), unparsed, refused, or failed (a 400 the provider gives for a too-long prompt); a
record's outcome is the first of OUTCOME_ORDER among its comparisons' (the rule `view` states). Judge B (`openai:gpt-4o`, `--order both`) always
picks the answer shown first, so both orders disagree and every record is a tie. So the
outcome of each record under each judge, and where the two disagree, are known in advance,
and the server's log holds every prompt judge A was sent and what it answered.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RMB
from fake_api import FAKE_KEY, FakeAPI, Fault, Reply, Wire, first_pick, prompt_text

from rmb_judge import cli, records
from rmb_judge.providers.mock import extract_pair

SCENARIOS = ("*Harmlessness/S1", "*Chat/Discussion", "*Harmlessness/multi")
SELECTION = ["--limit", "2", *(arg for glob in SCENARIOS for arg in ("--scenarios", glob))]
KINDS = ("right", "wrong", "tie", "unparsed", "refused", "failed")
OUTCOME_ORDER = ("failed", "refused", "unparsed", "wrong", "tie", "right")  # a record takes the first of its comparisons'
JUDGE_A, JUDGE_B = "openai:gpt-4o-mini", "openai:gpt-4o"


@dataclass
class ViewRuns:
    data: Path
    root: Path  # holds the run folders and the cache, at ./cache as `run` puts it by default
    a: Path
    b: Path
    records: list[records.Record]
    kind: dict[tuple[str, str], str]  # judge A's outcome of each record
    sent: list[list[dict[str, str]]]  # the messages of every request judge A sent
    replies: dict[str, str]  # prompt text -> what the server answered judge A (not for failed ones)
    first: dict[tuple[str, str], set[str]]  # where judge A was shown the preferred answer (records sharing no pair)

    def item(self, record: records.Record) -> dict[str, Any]:
        """The record as its data file holds it, read independently of rmb-judge."""
        items = json.loads((self.data / record.file).read_text(encoding="utf-8"))
        return items[record.index]


def key(record: records.Record) -> tuple[str, str]:
    return (record.subset, record.uid)


def make_runs(root: Path, data_root: Path) -> ViewRuns:
    selection = records.Selection(limit=2, scenarios=list(SCENARIOS))
    chosen = RMB.load(data_root, selection).records
    # A Best-of-N record and a pairwise one may compare the same two answers on the same prompt:
    # one request, one answer. So each answer pair gets its way of answering, pairwise records'
    # pairs first, and a record's outcome is the first of OUTCOME_ORDER among its comparisons'.
    best_of: dict[frozenset[str], str] = {}
    for record in sorted(chosen, key=lambda r: r.kind != "pairwise"):
        for other in record.rejected:
            pair = frozenset((record.chosen[0].text.strip(), other.text.strip()))
            assert best_of.setdefault(pair, record.chosen[0].text.strip()) == record.chosen[0].text.strip()
    said = {pair: KINDS[number % len(KINDS)] for number, pair in enumerate(best_of)}
    kind = {}
    for record in chosen:
        kinds = {said[frozenset((record.chosen[0].text.strip(), other.text.strip()))] for other in record.rejected}
        kind[key(record)] = next(k for k in OUTCOME_ORDER if k in kinds)
    assert set(kind.values()) == set(KINDS)
    pairs = Counter(frozenset((r.chosen[0].text.strip(), o.text.strip())) for r in chosen for o in r.rejected)
    alone = {frozenset((r.chosen[0].text.strip(), o.text.strip())): key(r) for r in chosen for o in r.rejected}
    alone = {pair: record for pair, record in alone.items() if pairs[pair] == 1}
    replies: dict[str, str] = {}
    first: dict[tuple[str, str], set[str]] = {}

    def judge_a(body: dict[str, Any], wire: Wire) -> Reply | Fault:
        prompt = prompt_text(body, wire)
        pair = extract_pair(prompt)
        assert pair is not None
        shown = frozenset(text.strip() for text in pair)
        best = best_of[shown]
        if shown in alone:  # (a prompt whose pair two records share may have been either's)
            first.setdefault(alone[shown], set()).add("A" if pair[0].strip() == best else "B")
        way = said[shown]
        if way == "failed":
            return Fault.http(400, message="This model's maximum context length is 128000 tokens.")
        text = {
            "refused": "I'm sorry, but I can't help with that.",
            "unparsed": "Both answers have their merits.",
            "tie": "They are equally good. [[C]]",
        }.get(way)
        if text is None:
            best_shown = "A" if pair[0].strip() == best else "B"
            verdict = best_shown if way == "right" else "AB"[best_shown == "A"]
            text = f"Assistant {verdict} answers the question better. [[{verdict}]]"
        replies[prompt] = text
        return Reply(text)

    cache = root / "cache"
    with pytest.MonkeyPatch.context() as patch, FakeAPI(judge_a).run_in_thread() as api:
        patch.setenv("OPENAI_API_KEY", FAKE_KEY)
        for out, judge, extra in (("a", JUDGE_A, []), ("b", JUDGE_B, ["--order", "both"])):
            if out == "b":
                api.responder = first_pick
            cli.main(["run", "--judge", judge, "--data", str(data_root), *SELECTION, "--out", str(root / out),
                      "--cache", str(cache), "--no-progress", "--max-retries", "1", "--base-url", api.openai_url,
                      *extra])
        sent = [call.body["messages"] for call in api.calls("openai") if call.body["model"] == JUDGE_A.split(":")[1]]
    assert (root / "a" / "samples.jsonl").is_file() and (root / "b" / "samples.jsonl").is_file()
    solitary = {key(r) for r in chosen if all(pairs[frozenset((r.chosen[0].text.strip(), o.text.strip()))] == 1
                                               for o in r.rejected)}
    first = {record: seen for record, seen in first.items() if record in solitary}
    return ViewRuns(data_root, root, root / "a", root / "b", chosen, kind, sent, replies, first)


@contextmanager
def serving(*runs: Path, cwd: Path, extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Iterator[str]:
    """`rmb-judge view RUNS --port 0 --no-browser`, started as a user starts it; yields its URL and
    stops it with Ctrl-C (SIGINT), which must end it cleanly."""
    process = subprocess.Popen([sys.executable, "-m", "rmb_judge.cli", "view", *map(str, runs), "--port", "0",
                                "--no-browser", *extra], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not found:
        process.kill()
        raise AssertionError(f"view did not start: {line}{process.communicate()[1]}")
    try:
        yield found.group(0)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0 and "stopped" in err, err


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1


def get(url: str, path: str, **query: Any) -> Any:
    """The server's JSON for `path` with `query`."""
    address = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    with _OPENER.open(address, timeout=30) as response:
        return json.load(response)


def listed(url: str, **query: Any) -> list[str]:
    """Every record id the list holds under `query`, page by page."""
    ids, offset = [], 0
    while True:
        page = get(url, "/api/records", offset=offset, limit=5, **query)
        ids += [item["id"] for item in page["items"]]
        offset += 5
        if offset >= page["total"]:
            assert len(ids) == page["total"]
            return ids


def answers_of(item: dict) -> list[tuple[str, dict]]:
    """A data file record's answers with the labels the page gives them."""
    if "chosen" in item:
        return [("chosen", item["chosen"]), ("rejected", item["reject"])]
    return [("best", item["bon_best"]), *((f"loser {n}", a) for n, a in enumerate(item["loser_list"], 1))]


def record_id(record: records.Record) -> str:
    return f"{record.subset}::{record.uid}"
