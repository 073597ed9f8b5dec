"""The explorer's index: every judged record of the runs, built once at start, so the page's
filters, search and pages are answered from memory without reading a file again.

A run folder gives its summary (judge, settings), its manifest (the data files it judged and
their SHA-256, the template's) and its samples (one line per judged presentation). The
records themselves (conversation and answers) come from the data files, loaded through the
run's benchmark; a data file whose SHA-256 is not the one the run judged is named, and its
records are marked, never silently shown as what the judge saw. Nothing here writes a file,
opens the cache or sends a request: the prompt the judge saw is rendered again from the
run's template, whose SHA-256 is checked against the run's.

Outcomes, per record and run: `failed` (a request failed), `refused`, `unparsed` (no verdict
could be read), `wrong`, `tie`, `right`; a record takes the first of these that any of its
comparisons had, in that order (a best-of-N record is right only if every comparison is).
`unfinished`: a stopped run judged part of the record's comparisons.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import rendering, templates
from ..benchmark import Benchmark
from ..errors import DataError, RmbJudgeError
from ..judges import parse_spec
from ..judgments import Judgment, Pair, Presentation
from ..records import Record, Selection
from ..report.behaviour import lines as behaviour_lines
from ..report.html import natural
from ..report.load import Run, load_runs
from ..report.view import status_tags, with_interval
from ..summary import Settings, data_files, read_json, read_summary, sample_rows
from .adapters import adapter_for

OUTCOMES = ("failed", "refused", "unparsed", "wrong", "tie", "right", "unfinished")  # a record takes the first
POSITIONS = ("A", "B", "both")  # where the label-preferred answer was shown: first, second, in both places
POSITION_TITLES = {"A": "first (A)", "B": "second (B)", "both": "first and second"}
SORTS = {  # name -> what the page calls it
    "": "data order",
    "longest": "longest answers first",
    "shortest": "shortest answers first",
    "preferred-longer": "preferred answer longer than the others",
    "preferred-shorter": "preferred answer shorter than the others",
}
PREVIEW = 220  # characters of the last user message a list item shows
PAGE = 50  # list items per page, unless the page asks for fewer (at most MAX_PAGE)
MAX_PAGE = 200


@dataclass
class RunInfo:
    """One run folder as the page shows it."""

    number: int  # its place on the command line, from 0
    run: Run  # the report's view of the summary: judge, label, status
    settings: Settings
    samples: dict[tuple[str, str], list[dict[str, Any]]]  # (category_path, uid) -> its sample lines, in order
    files: dict[str, str] | None  # data file -> SHA-256 that the run judged (manifest.json)
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what the page must say about this run
    template: templates.Template | None = None  # to render the prompts again
    request: rendering.RequestSettings | None = None
    members: list[dict[str, Any]] | None = None  # a jury's: judge, path, and its number where it is shown too
    jury_rule: str | None = None

    @property
    def is_jury(self) -> bool:
        return self.members is not None

    def to_json(self) -> dict[str, Any]:
        run = self.run
        return {
            "number": self.number, "judge": run.judge, "label": run.label, "path": str(run.path),
            "benchmark": run.benchmark.name, "complete": run.complete, "suspect": run.suspect,
            "simulated": run.simulated, "records": len(self.samples), "notes": self.notes,
            "template": self.settings.template, "order": self.settings.order,
            "status": [f"{tag.name}: {tag.detail}" if tag.detail else tag.name for tag in status_tags(run)],
            "scores": [{"title": run.benchmark.score_title(key), "score": with_interval(value, run.intervals.get(key))}
                       for key, value in run.scores.items() if value is not None],
            "behaviour": behaviour_lines(run),
            "reliability": bool(run.calibration and run.calibration.bins),
            "jury": None if self.members is None else {"rule": self.jury_rule, "members": self.members},
        }


@dataclass
class Entry:
    """One record, with what every run made of it."""

    key: tuple[str, str]  # (category_path, uid): the record's stable name, in its URL
    benchmark: Benchmark
    record: Record | None  # None: its data file could not be read; the samples alone are shown
    section: str | None  # the benchmark section's key
    subset: str  # the scenario's name as listed
    labels: list[str]  # of the answers, the label-preferred first
    lengths: list[int]  # characters of each answer (empty without the record)
    models: list[str]  # of each answer
    turns: int  # user turns (0: unknown)
    preview: str
    outcomes: list[str | None]  # per run; None where the run did not judge it
    positions: list[str | None]  # per run, one of POSITIONS
    order: int = 0
    stale: set[int] = field(default_factory=set)  # runs that judged another version of its data file than is shown
    versions: set[str] = field(default_factory=set)  # SHA-256s of its data file the runs judged (manifests)

    @property
    def id(self) -> str:
        return f"{self.key[0]}::{self.key[1]}"

    @property
    def disagreement(self) -> bool:
        """Two or more runs judged the same version of it and came out differently."""
        return len(self.versions) <= 1 and len({o for o in self.outcomes if o is not None}) > 1

    @property
    def total_length(self) -> int:
        return sum(self.lengths)

    @property
    def length_gap(self) -> float:
        """The preferred answer's length minus the mean length of the others."""
        if len(self.lengths) < 2:
            return 0.0
        return self.lengths[0] - sum(self.lengths[1:]) / (len(self.lengths) - 1)

    def item(self) -> dict[str, Any]:
        """What a list item shows."""
        return {
            "id": self.id, "scenario": self.key[0], "uid": self.key[1], "subset": self.subset,
            "section": self.section, "preview": self.preview, "turns": self.turns,
            "outcomes": self.outcomes, "lengths": self.lengths, "labels": self.labels, "stale": bool(self.stale),
        }


@dataclass(frozen=True)
class Query:
    """The page's filters; `run` is the run whose outcome and position the filters read."""

    run: int = 0
    section: str = ""
    scenario: str = ""
    outcome: str = ""
    position: str = ""
    turns: str = ""  # "single" | "multi"
    model: str = ""
    text: str = ""
    sort: str = ""
    disagree: bool = False


class Index:
    """Runs and their records, with the filters, search and pages the server answers from."""

    def __init__(self, runs: list[RunInfo], entries: list[Entry], data_notes: list[str]):
        self.runs = runs
        self.entries = entries
        self.by_id = {entry.id: entry for entry in entries}
        self.notes = data_notes
        self.select = lru_cache(maxsize=32)(self._select)  # paging asks for the same selection again
        self._texts: list[str] | None = None
        self._texts_lock = threading.Lock()

    def search_texts(self) -> list[str]:
        """Each entry's conversation, answers and judge outputs, lowercased: made on first need
        (the server makes them while the page shows its first records)."""
        with self._texts_lock:
            if self._texts is None:
                self._texts = [_search_text(entry, self.runs) for entry in self.entries]
            return self._texts

    # ------------------------------------------------------------ the list

    def _select(self, query: Query) -> tuple[Entry, ...]:
        run = query.run
        terms = [a or b for a, b in re.findall(r'"([^"]+)"|(\S+)', query.text.lower())]
        chosen = []
        texts = self.search_texts() if terms else itertools.repeat("")
        for entry, text in zip(self.entries, texts, strict=False):
            if query.disagree and not entry.disagreement:
                continue
            if (query.section and entry.section != query.section
                    or query.scenario and entry.key[0] != query.scenario
                    or query.outcome and entry.outcomes[run] != query.outcome
                    or query.position and entry.positions[run] != query.position
                    or query.turns and (entry.turns > 1) != (query.turns == "multi")
                    or query.model and query.model not in entry.models):
                continue
            if terms and not all(term in text for term in terms):
                continue
            chosen.append(entry)
        if query.sort == "longest":
            chosen.sort(key=lambda e: -e.total_length)
        elif query.sort == "shortest":
            chosen.sort(key=lambda e: e.total_length)
        elif query.sort == "preferred-longer":
            chosen.sort(key=lambda e: -e.length_gap)
        elif query.sort == "preferred-shorter":
            chosen.sort(key=lambda e: e.length_gap)
        return tuple(chosen)

    def page(self, query: Query, offset: int, limit: int) -> dict[str, Any]:
        chosen = self.select(query)
        offset = max(0, min(offset, len(chosen)))
        return {"total": len(chosen), "offset": offset,
                "items": [entry.item() for entry in chosen[offset : offset + max(1, min(limit, MAX_PAGE))]]}

    # ------------------------------------------------------------ what the page offers

    def meta(self) -> dict[str, Any]:
        """The runs, their notes, and every filter's values with how many records have each."""
        entries = self.entries
        sections = Counter(e.section for e in entries if e.section)
        titles = {s.key: s.title for e in entries[:1] for s in e.benchmark.sections}
        place = {key: n for n, key in enumerate(titles)}  # sections in the benchmark's order
        scenarios = Counter(e.key[0] for e in entries)
        subsets = {e.key[0]: (e.subset, e.section) for e in entries}
        models = Counter(model for e in entries for model in set(e.models) if model)
        turns = Counter("multi" if e.turns > 1 else "single" for e in entries if e.turns)

        def listed(counts: Counter, values: Iterable[str], title: Any = str) -> list[dict[str, Any]]:
            return [{"value": v, "title": title(v), "count": counts[v]} for v in values if counts[v]]

        per_run = []
        for run in self.runs:
            outcomes = Counter(e.outcomes[run.number] for e in entries if e.outcomes[run.number])
            positions = Counter(e.positions[run.number] for e in entries if e.positions[run.number])
            per_run.append({"outcome": listed(outcomes, OUTCOMES),
                            "position": listed(positions, POSITIONS, POSITION_TITLES.get)})
        return {
            "runs": [run.to_json() for run in self.runs],
            "notes": self.notes,
            "records": len(entries),
            "disagreements": sum(e.disagreement for e in entries) if len(self.runs) > 1 else None,
            "filters": {
                "section": listed(sections, sorted(sections, key=lambda k: place.get(k, len(place))),
                                  lambda k: titles.get(k, k)),
                "scenario": [
                    {**item, "section": subsets[item["value"]][1]}
                    for item in listed(scenarios, sorted(scenarios, key=lambda path: (
                        place.get(subsets[path][1] or "", len(place)), natural(subsets[path][0]))),
                        lambda path: subsets[path][0])
                ],
                "turns": listed(turns, ("single", "multi"), lambda t: f"{t}-turn"),
                "model": listed(models, sorted(models)),
                "sort": [{"value": k, "title": v} for k, v in SORTS.items()],
                "per_run": per_run,
            },
        }

    # ------------------------------------------------------------ one record

    def detail(self, record_id: str) -> dict[str, Any] | None:
        entry = self.by_id.get(record_id)
        if entry is None:
            return None
        record = entry.record
        result: dict[str, Any] = {
            **entry.item(),
            "section_title": next((s.title for s in entry.benchmark.sections if s.key == entry.section), entry.section),
            "models": entry.models,
            "conversation": [{"role": m.role, "content": m.content} for m in record.conversation] if record else None,
            "answers": [{"label": label, "model": answer.model, "text": answer.text, "length": len(answer.text)}
                        for label, answer in zip(entry.labels, record.answers, strict=True)]
            if record else None,
            "file": f"{record.file}, record {record.index}" if record else None,
            "notes": [],
            "runs": [],
        }
        if record is None:
            result["notes"].append("The data file holding this record could not be read (see the notes above): "
                                   "only what the runs recorded is shown.")
        for number in sorted(entry.stale):
            file = record.file if record else "its data file"
            result["notes"].append(f"Run {number + 1} judged another version of {file} (its SHA-256 differs): "
                                   "the texts shown are not what that judge saw.")
        for run in self.runs:
            lines = run.samples.get(entry.key)
            if lines is None:
                continue
            result["runs"].append({
                "number": run.number, "outcome": entry.outcomes[run.number],
                "score": lines[-1].get("record_correct"),
                "comparisons": self._comparisons(run, entry, lines),
            })
        return result

    def _comparisons(self, run: RunInfo, entry: Entry, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_comparison: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
        for line in lines:
            by_comparison[_number(line)].append(line)
        shown = []
        for loser_index, presentations in by_comparison.items():
            preferred, other = self._pair_labels(run, entry, loser_index)
            items = []
            for line in presentations:
                order = line.get("order", "AB")
                items.append({
                    "order": order,
                    "shown": [preferred, other] if order == "AB" else [other, preferred],
                    "prompts": self._prompts(run, entry.benchmark, entry.record, loser_index, order),
                    **{name: line.get(name) for name in ("verdict", "raw", "votes", "correct", "cached", "error",
                                                         "refused", "truncated", "probs")},
                    "members": _member_verdicts(run, line) if run.is_jury else None,
                })
            shown.append({
                "loser_index": loser_index, "title": f"{preferred} vs {other}",
                "outcome": _comparison_outcome(presentations),
                "score": presentations[0].get("comparison_correct"), "presentations": items,
            })
        return shown

    @staticmethod
    def _pair_labels(run: RunInfo, entry: Entry, position: int | None) -> tuple[str, str]:
        """The labels of a comparison's two answers: its pair's (the benchmark numbers its
        judgments), else the preferred answer against the `position`-th other one."""
        labels, record = entry.labels, entry.record
        pair = None if record is None else _judgment(run, entry.benchmark, record, position)
        if isinstance(pair, Pair) and record is not None and len(labels) == len(record.answers):
            return labels[pair.chosen], labels[len(record.chosen) + pair.rejected]
        preferred = labels[0] if labels else "preferred"
        return preferred, labels[1 + (position or 0)] if len(labels) > 1 + (position or 0) else "other"

    @staticmethod
    def _prompts(run: RunInfo, benchmark: Benchmark, record: Record | None, position: int | None, order: str,
                 ) -> list[list[dict[str, str]]]:
        """The messages the judge was sent for this presentation (two for a pointwise template; a
        follow-up turn's are the first request's, the reply and the follow-up text)."""
        if record is None or run.template is None or run.request is None:
            return []
        template = benchmark.template_for(record, run.template)
        judgment = _judgment(run, benchmark, record, position)
        if judgment is None:
            return []
        return [[{"role": role, "content": content} for role, content in request.messages]
                for _, request in rendering.requests_for(Presentation(judgment, order), template, run.request)]


# ---------------------------------------------------------------- building the index


def build(paths: list[Path], data: Path | None = None) -> Index:
    """The index of these run folders (see `read_runs` and `index`)."""
    return index(read_runs(paths), data)


def read_runs(paths: list[Path]) -> list[RunInfo]:
    """The run folders' summaries, manifests and samples: one clear error for a folder that is
    not a run or a samples line that is not a sample. A jury's members that are shown too are
    named by their number."""
    runs = [_run(number, run) for number, run in enumerate(load_runs(paths))]
    shown = {run.run.path.resolve(): run.number for run in runs}
    for info in runs:
        for member in info.members or ():
            member["run"] = shown.get(Path(member["path"]).resolve()) if member["path"] else None
    return runs


def index(runs: list[RunInfo], data: Path | None = None) -> Index:
    """The records of these runs, from the data files they judged (`data` replaces the folder
    their manifests name, for data that moved). What cannot be read becomes a note on the page."""
    datasets: dict[tuple[str, Path], tuple[dict[tuple[str, str], Record], dict[str, str], list[Record]]] = {}
    notes: list[str] = []
    for info in runs:
        benchmark = info.run.benchmark
        root = _data_root(info, benchmark, data)
        if (benchmark.name, root) not in datasets:
            datasets[(benchmark.name, root)] = _load(benchmark, root, [r for r in runs if r.run.benchmark is benchmark],
                                                     notes)
    entries: dict[tuple[str, str], Entry] = {}
    order = 0
    for info in runs:
        benchmark = info.run.benchmark
        records, digests, _ = datasets[(benchmark.name, _data_root(info, benchmark, data))]
        _check_files(info, digests, notes)
        sections = {s.category_path: s.section for s in info.run.scenarios}  # for records the data lacks
        for key, lines in info.samples.items():
            entry = entries.get(key)
            if entry is None:
                record = records.get(key)
                order += 1
                entry = _entry(key, benchmark, record, lines, len(runs), sections.get(key[0]))
                entry.order = order
                entries[key] = entry
            file = entry.record.file if entry.record else None
            if file and info.files is not None:
                if info.files.get(file) != digests.get(file):
                    entry.stale.add(info.number)
                if file in info.files:
                    entry.versions.add(info.files[file])
            entry.outcomes[info.number] = _record_outcome(lines)
            entry.positions[info.number] = _position(lines)
    ranked = {id(record): n for _, _, loaded in datasets.values() for n, record in enumerate(loaded)}
    ordered = sorted(entries.values(), key=lambda e: (e.record is None, ranked.get(id(e.record), 0), e.order))
    return Index(runs, ordered, notes)


def _run(number: int, run: Run) -> RunInfo:
    summary = read_summary(run.path)
    settings = summary.settings
    info = RunInfo(number, run, settings, _samples(run.path), _judged_files(run.path), _manifest(run.path))
    if info.files is None:
        info.notes.append("no manifest.json: the data files shown were not checked against the ones it judged")
    if run.jury:
        info.members, info.jury_rule = _members(info)
    elif settings.template:
        try:
            info.template = templates.load(_template_source(info))
            info.template.check_goals(run.benchmark.goals)
            judge = parse_spec(summary.judge)
        except RmbJudgeError as error:
            info.template = None
            info.notes.append(f"the prompts its judge saw cannot be shown: {error}")
        else:
            info.request = rendering.RequestSettings(judge.provider, judge.model, settings.max_tokens or 0,
                                               settings.temperature)
            if settings.template_sha256 and info.template.sha256 != settings.template_sha256:
                info.notes.append(
                    f"its template {settings.template!r} has changed since the run (SHA-256 "
                    f"{settings.template_sha256[:12]}... then, {info.template.sha256[:12]}... now): the prompts "
                    "shown are rendered from today's text, not exactly what the judge saw")
    elif not run.simulated:
        info.notes.append("a reward model: each answer is scored on its own, so there is no judge prompt to show")
    if run.suspect:
        info.notes.append("SUSPECT: " + (" ".join(run.warnings) or "too many comparisons unparsed or failed"))
    if not run.complete:
        info.notes.append("partial run: it stopped before judging every record" +
                          (f" ({run.stopped_reason})" if run.stopped_reason else ""))
    if run.simulated:
        info.notes.append("simulated: the built-in mock judge; its verdicts say nothing about a model")
    return info


def _members(info: RunInfo) -> tuple[list[dict[str, Any]], str | None]:
    """A jury's members, as its manifest.json lists them (judge and folder), else as its
    summary does (judges only), and its rule."""
    listed = info.manifest.get("jury")
    if isinstance(listed, dict) and isinstance(listed.get("members"), list):
        members = [{"judge": str(m.get("judge", "")), "path": str(m.get("path", ""))}
                   for m in listed["members"] if isinstance(m, dict)]
        return members, str(listed.get("rule") or "") or None
    return [{"judge": judge, "path": ""} for judge in info.run.jury], None


def _judged_files(folder: Path) -> dict[str, str] | None:
    """The data files the run judged and their SHA-256 (manifest.json), or None without a manifest."""
    try:
        return data_files(folder)
    except FileNotFoundError:
        return None


def _manifest(folder: Path) -> dict[str, Any]:
    """manifest.json, or nothing where it cannot be read (an older or hand-made run folder)."""
    try:
        manifest = read_json(folder / "manifest.json")
    except (OSError, RmbJudgeError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _template_source(info: RunInfo) -> str:
    """What `--template` the run was given: a template file's path as typed (the summary keeps
    only its name), else the shipped template's name."""
    command = info.manifest.get("command")
    given = None
    if isinstance(command, list):
        for flag, value in itertools.pairwise(map(str, command)):
            if flag == "--template":
                given = value
        given = next((str(a).partition("=")[2] for a in command if str(a).startswith("--template=")), given)
    return given if given and given.endswith(".toml") else str(info.settings.template)


def _samples(folder: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """samples.jsonl grouped by record, in file order; one clear error for a line that is not a sample."""
    path = folder / "samples.jsonl"
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for number, row in sample_rows(path):
            try:
                key = (str(row.get("subset") or row["category_path"]), str(row["uid"]))
            except (KeyError, TypeError, AttributeError):
                raise DataError(f"{path}, line {number}: not a sample line of rmb-judge") from None
            grouped.setdefault(key, []).append(row)
    except FileNotFoundError:
        raise DataError(f"{folder}: no samples.jsonl in this folder (view shows the judged records it lists)") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    return grouped


def _data_root(info: RunInfo, benchmark: Benchmark, given: Path | None) -> Path:
    """--data, else the folder the run read (its manifest says), else the benchmark's default."""
    if given is not None:
        return given
    data = info.manifest.get("data")
    root = data.get("root") if isinstance(data, dict) else None
    if isinstance(root, str) and Path(root).is_dir():
        return Path(root)
    return benchmark.default_data_dir()


def _load(benchmark: Benchmark, root: Path, runs: list[RunInfo], notes: list[str],
          ) -> tuple[dict[tuple[str, str], Record], dict[str, str], list[Record]]:
    """The records these runs selected (their sets, sections and scenarios; every record of
    them, which covers any --limit, --sample or --precision subset), by (category_path, uid)."""
    settings = [info.settings for info in runs]
    takes = benchmark.selection_flags
    selection = Selection(
        sets=[kind for kind in benchmark.kinds if any(kind in (s.sets or benchmark.kinds) for s in settings)]
        if "--sets" in takes else None,
        sections=[goal for goal in benchmark.goals if any(goal in (s.sections or benchmark.goals) for s in settings)]
        if "--sections" in takes else None,
        scenarios=[] if any(not s.scenarios for s in settings) else sorted({p for s in settings for p in s.scenarios}),
        options=settings[0].options if settings else {},
    )
    try:
        dataset = benchmark.load(root, selection)
    except DataError as error:
        notes.append(f"The {benchmark.title} data could not be read ({error}): records are shown without their "
                     "conversation and answers; give --data DIR to point at the data folder.")
        return {}, {}, []
    return {(r.subset, r.uid): r for r in dataset.records}, dataset.sha256, dataset.records


def _check_files(info: RunInfo, digests: dict[str, str], notes: list[str]) -> None:
    """Name the data files that are missing or differ from the ones the run judged."""
    if info.files is None or not digests:
        return
    differ = sorted(f for f, sha in info.files.items() if f in digests and digests[f] != sha)
    missing = sorted(f for f in info.files if f not in digests)
    name = f"Run {info.number + 1} ({info.run.judge})"
    if differ:
        notes.append(f"{name}: {len(differ)} data files differ from the ones it judged (SHA-256 in its manifest.json): "
                     f"{', '.join(differ[:5])}{', ...' if len(differ) > 5 else ''}; their records are marked.")
    if missing:
        notes.append(f"{name}: {len(missing)} data files it judged are not in the data folder: "
                     f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}.")


def _entry(key: tuple[str, str], benchmark: Benchmark, record: Record | None, lines: list[dict[str, Any]],
           runs: int, section: str | None) -> Entry:
    adapter = adapter_for(benchmark)
    if record is not None:
        answers = record.answers
        last_user = next(m.content for m in reversed(record.conversation) if m.role == "user")
        return Entry(
            key, benchmark, record, record.section, adapter.subset(benchmark, key[0]), adapter.labels(record),
            [len(a.text) for a in answers], [a.model for a in answers], templates.user_turns(record.conversation),
            " ".join(last_user[: 2 * PREVIEW].split())[:PREVIEW], [None] * runs, [None] * runs,
        )
    # the samples alone: which answers were compared and by whom
    losers = sorted({p for line in lines if isinstance(p := _number(line), int)})
    kind = "bon" if losers else "pairwise"
    models = [str(lines[0].get("preferred_model") or "")]
    for index in range(len(losers) and max(losers) + 1 or 1):
        line = next((ln for ln in lines if (_number(ln) or 0) == index), {})
        models.append(str(line.get("other_model") or ""))
    return Entry(key, benchmark, None, section, adapter.subset(benchmark, key[0]),
                 adapter.answer_labels(kind, len(models) - 1), [], models, 0, "", [None] * runs, [None] * runs)


def _judgment(run: RunInfo, benchmark: Benchmark, record: Record, position: int | None) -> Judgment | None:
    """The record's judgment numbered `position`, as the run's template (or reward model) asks it."""
    mode = "scalar" if run.template is None else benchmark.template_for(record, run.template).kind
    try:
        return next((j for j in benchmark.judgments(record, mode) if j.position == position), None)
    except RmbJudgeError:  # a mode the benchmark does not judge in (a template it refuses)
        return None


def _number(line: dict[str, Any]) -> Any:
    """A sample line's judgment number (RMB's loser_index)."""
    return line.get("judgment", line.get("loser_index"))


def _search_text(entry: Entry, runs: list[RunInfo]) -> str:
    record = entry.record
    texts = [m.content for m in record.conversation] + [a.text for a in record.answers] \
        if record else []
    for run in runs:
        texts.extend(_texts([line.get("raw") for line in run.samples.get(entry.key, ())]))
    return "\n".join(texts).lower()


def _member_verdicts(run: RunInfo, line: dict[str, Any]) -> list[dict[str, Any]]:
    """A jury's presentation: each member's verdict relative to the label ("win": the preferred
    answer, "loss", "tie", None: none read), as the jury's samples.jsonl keeps them in `raw`."""
    raw = line.get("raw")
    said: dict[str, Any] = raw if isinstance(raw, dict) else {}
    members = run.members or [{"judge": judge, "path": "", "run": None} for judge in said]
    return [{**member, "verdict": said.get(member["judge"])} for member in members]


def _presentation_outcome(line: dict[str, Any]) -> str:
    if line.get("error"):
        return "failed"
    if line.get("refused"):
        return "refused"
    verdict = line.get("verdict")
    if verdict is None:
        return "unparsed"
    if verdict == "tie":
        return "tie"
    return "right" if verdict == ("A" if line.get("order", "AB") == "AB" else "B") else "wrong"


def _comparison_outcome(lines: list[dict[str, Any]]) -> str:
    """Failures first; then the comparison's score (`--order both`: a tie when the orders disagree)."""
    said = [_presentation_outcome(line) for line in lines]
    for outcome in ("failed", "refused", "unparsed"):
        if outcome in said:
            return outcome
    score = lines[0].get("comparison_correct")
    if score is None:  # an older samples.jsonl: from the verdicts
        return said[0] if len(set(said)) == 1 else "tie"
    if score == 1:
        return "right"
    if score == 0:
        return "tie" if all(outcome == "tie" for outcome in said) else "wrong"  # equal rewards: a tie that loses
    return "tie"


def _record_outcome(lines: list[dict[str, Any]]) -> str:
    if len(lines) == 1 and lines[0].get("record_correct", 0) is not None:  # one comparison in one order
        return _comparison_outcome(lines)
    by_comparison: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_comparison[_number(line)].append(line)
    said = {_comparison_outcome(group) for group in by_comparison.values()}
    worst = next(outcome for outcome in OUTCOMES if outcome in said)
    if worst in ("wrong", "tie", "right") and "record_correct" in lines[0] and lines[0]["record_correct"] is None:
        return "unfinished"
    return worst


def _position(lines: list[dict[str, Any]]) -> str:
    shown = {"A" if line.get("order", "AB") == "AB" else "B" for line in lines}
    return shown.pop() if len(shown) == 1 else "both"


def _texts(values: Iterable[Any]) -> Iterable[str]:
    """The strings inside judge outputs: a text, a list of votes, a pointwise {"A": ..., "B": ...}."""
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from _texts(value)
        elif isinstance(value, dict):
            yield from _texts(value.values())
