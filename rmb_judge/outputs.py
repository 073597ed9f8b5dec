"""The run folder: `summary.json`, `samples.jsonl` and `manifest.json`.

A run takes the folder before anything else happens: it must be a folder it can write, and
no other run may be writing it (a lock file held for the whole run); a run of another judge
or other settings in it is not overwritten unless the user says `--replace`. Files are
written to unique temporary names and renamed, so a reader (or a crash) never sees half a
file and two writers never share a temporary file; they get the permissions the umask gives.
A run that ends without writing anything (it failed before its first answer) leaves no
trace: the folders and the lock file it made are removed again.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import secrets
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from .benchmark import SCORE, Benchmark
from .endpoints import normalize
from .errors import RmbJudgeError, UsageError
from .judgments import SLOTS, Judged, Pair, Ranking, RecordScore
from .retry import redact
from .summary import LOCK, Settings

RESULT_PACKAGES = ("tokenizers",)  # versions that shape results but come through another package
UNSAVED = "unsaved-answers.jsonl"  # answers a full disk kept out of the cache; the next run adds them


class RunFolder:
    """`--out`, taken for one run: checked, locked, and written atomically."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {path}: is a file, not a folder")
        self._made: list[Path] = [folder for folder in (path, *path.parents) if not folder.exists()]
        self._made_lock = not (path / LOCK).exists()
        self._wrote = False
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._lock: TextIO | None = (path / LOCK).open("a+", encoding="utf-8")
        except OSError as exc:
            self._made_lock = False
            self._remove_unused()
            raise UsageError(f"--out {path}: cannot write there ({exc.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "another process"
            self._lock.close()
            self._lock = None
            self._made, self._made_lock = [], False  # the other run's
            raise UsageError(
                f"--out {path}: another rmb-judge run ({holder}) is writing this folder; "
                "wait for it or choose another --out"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"pid {os.getpid()}")
        self._lock.flush()

    def check(self, judge: str, settings: Settings, replace: bool = False, benchmark: str = "rmb") -> None:
        """A folder holding another judge's, benchmark's or other settings' run is not
        overwritten unless `replace`; a resumed run (the same judge and settings) is welcome."""
        manifest = self.path / "manifest.json"
        if replace or not manifest.is_file():
            return
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))
            before = previous.get("settings") or {}
            other_judge = previous.get("judge")
            other_benchmark = previous.get("benchmark", "rmb")
        except (OSError, ValueError, AttributeError):
            return  # unreadable: nothing to protect
        now = settings.identity()
        if isinstance(before.get("endpoints"), list):  # as recorded today (an older version kept http://h:p)
            bare = _api_path(judge)
            before = {**before, "endpoints": sorted(normalize(str(e), bare) for e in before["endpoints"])}
        differ = [k for k, v in now.items() if k in before and before[k] != v]
        if other_judge != judge or other_benchmark != benchmark or differ:
            what = (f"of another judge ({other_judge})" if other_judge != judge
                    else f"of another benchmark ({other_benchmark})" if other_benchmark != benchmark
                    else "with other settings (" + "; ".join(f"{k}: {before[k]!r} there, {now[k]!r} now"
                                                             for k in differ) + ")")
            raise UsageError(
                f"--out {self.path}: holds a run {what}; choose another --out, "
                "or give --replace to overwrite it"
            )

    def close(self) -> None:
        if self._lock is not None:
            if not self._wrote:
                self._remove_unused()  # (the lock file while it is still held)
            self._lock.close()
            self._lock = None

    def _remove_unused(self) -> None:
        """Remove the lock file and the folders this run made, where nothing else is in them."""
        if self._made_lock:
            (self.path / LOCK).unlink(missing_ok=True)
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:  # something else is there now
                return

    def write_json(self, name: str, data: Any) -> None:
        self._write(name, [json.dumps(data, indent=2, ensure_ascii=False) + "\n"])

    def write_lines(self, name: str, lines: Iterable[dict[str, Any]]) -> None:
        self._write(name, (json.dumps(line, ensure_ascii=False) + "\n" for line in lines))

    def _write(self, name: str, chunks: Iterable[str]) -> None:
        target = self.path / name
        self._wrote = True
        tmp = self.path / f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            # O_EXCL: a name no other writer holds; 0o666: the umask decides, as for any file written
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.writelines(chunks)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise RmbJudgeError(f"{target}: cannot write ({exc.strerror or exc})") from None


def _api_path(judge: str) -> str:
    """Where the judge's API lives on a server given by its host alone (`Provider.api_path`)."""
    from .judges import parse_spec

    try:
        spec = parse_spec(judge)
    except RmbJudgeError:  # a jury: asked nothing
        return ""
    return "" if spec.scalar else spec.provider_class.api_path


def sample_line(benchmark: Benchmark, j: Judged, judgment_correct: float | None, record: RecordScore | None,
                simulated: bool, link: int | None = None) -> dict[str, Any]:
    """One presentation; `judgment_correct` and `record_correct` are the scores its judgment and
    its record got (null for a record a stopped run did not finish), which `compare` pairs
    across runs; `link`: its record's linked set in this run (records holding an answer to the
    same conversation, `scoring.linked`), which `compare` clusters on. The record's subset and
    the judgment's number come under the benchmark's names (RMB: category_path, loser_index),
    and the subset as `subset` too; a pair's answers' models as preferred_model and other_model;
    a record's values beyond its score (RM-Bench's hard, normal, easy) as `record_values`."""
    presentation = j.presentation
    judgment = presentation.judgment
    names = benchmark.sample_names(presentation)
    line: dict[str, Any] = {"simulated": simulated, benchmark.subset_field: names.pop(benchmark.subset_field),
                            "uid": judgment.record.uid, **names}
    line.update({
        "order": presentation.order,
        "verdict": j.verdict,
        "correct": j.correct,
        "comparison_correct": judgment_correct,
        "record_correct": None if record is None else record.score,
        "link": link,
        "raw": j.raw,
        "votes": list(j.votes) if len(j.votes) > 1 else None,
        "probs": None if j.probs is None else dict(zip(("A", "B", "tie"), j.probs, strict=True)),
        "cached": j.cached,
        "error": j.error,
        "refused": j.refused,
        "truncated": j.truncated,
    })
    if isinstance(judgment, Pair):
        line.update(preferred_model=judgment.preferred.model, other_model=judgment.other.model)
    else:  # a ranking's layout and the answer it picked (its index in the record, chosen first); a rating's
        line["models"] = [answer.model for answer in presentation.shown]
        if isinstance(judgment, Ranking):
            slot = SLOTS.find(str(j.verdict)) if isinstance(j.verdict, str) else -1
            line.update(layout=presentation.order,
                        picked=judgment.answers[int(presentation.order[slot])] if 0 <= slot < len(presentation.order)
                        else None)
        else:
            line["rating"] = j.verdict
    if record is not None and set(record.values) != {SCORE}:
        line["record_values"] = record.values
    line.update(benchmark=benchmark.name, subset=judgment.record.subset)
    return line


def packages() -> list[str]:
    """rmb-judge and what it runs on: its dependencies and its judges' extras, as its
    installed metadata lists them (not the test tools), and RESULT_PACKAGES."""
    try:
        required = metadata.requires("rmb-judge") or []
    except metadata.PackageNotFoundError:
        required = []
    names = [match.group(0) for r in required
             if 'extra == "test"' not in r and (match := re.match(r"[\w.-]+", r))]
    return list(dict.fromkeys(("rmb-judge", *names, *RESULT_PACKAGES)))


def manifest(
    judge: str,
    simulated: bool,
    settings: dict[str, Any],
    data_root: Path,
    files: dict[str, str],
    argv: list[str],
    endpoints: Iterable[str] = (),
    benchmark: str = "rmb",
    source: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What it takes to reproduce the run: spec, benchmark, settings, endpoints, versions, data
    hashes (and, where the copy says, the upstream revision it is of), command."""
    versions = {}
    for name in packages():
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "judge": judge,
        "benchmark": benchmark,
        "simulated": simulated,
        "settings": settings,
        "endpoints": [redact(e) for e in endpoints],
        "command": [redact(a) for a in argv],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "data": {
            "root": str(data_root),
            "files": files,
            **({"source": source} if source else {}),
        },
    }
