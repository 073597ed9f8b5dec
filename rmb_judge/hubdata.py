"""`data fetch` of a benchmark whose data is a Hugging Face hub dataset (its manifest names the
repo, `Manifest.hub`), through `huggingface_hub` (the `hub` extra; `HF_ENDPOINT` honoured).

A hub revision's commit sha cannot be known without asking the hub. Where the manifest pins
none (`commit` empty), the first fetch asks once which commit the manifest's `revision` (a
branch) is at, downloads every file at exactly that commit, and writes the commit and each
file's size and SHA-256 into the data folder's own lock file (`LOCK`): trust on first use.
Every later fetch into that folder downloads at the locked commit and checks each file against
the lock, and so does every run (`check_lock`); a run's manifest.json records both.
`--revision SHA` pins the commit explicitly. Files are downloaded into a staging folder inside
the destination and moved into place once verified, as fetch.py does for HTTP sources.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataError, UsageError

if TYPE_CHECKING:
    from .benchmark import Benchmark, FileEntry, Manifest

LOCK = "rmb-judge.lock.json"  # in the data folder: the commit its files are of, and their SHA-256s
COMMIT = re.compile(r"[0-9a-f]{40}")


def read_lock(root: Path) -> dict[str, Any] | None:
    """The data folder's lock file, or None when it has none; DataError if it cannot be read."""
    path = Path(root) / LOCK
    if not path.is_file():
        return None
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(lock, dict) and COMMIT.fullmatch(str(lock.get("commit")))
                and isinstance(lock.get("files"), dict)):
            raise ValueError("expected repo, commit and files")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a lock file of `rmb-judge data fetch` ({exc}); remove it and fetch "
                        "again") from None
    return lock


def check_lock(root: Path, digests: dict[str, str]) -> dict[str, str]:
    """Check the files read (relative path -> SHA-256) against the folder's lock file; the
    source a run's manifest records ({} without a lock: a copy given with --data)."""
    lock = read_lock(root)
    if lock is None:
        return {}
    for path, digest in digests.items():
        locked = lock["files"].get(path, {}).get("sha256")
        if locked is not None and locked != digest:
            raise DataError(f"{Path(root) / path}: does not match the lock file {LOCK} of its folder (sha256 "
                            f"{digest[:12]}…, locked {locked[:12]}… at commit {lock['commit'][:12]}); fetch it again "
                            "into a new folder")
    return {"repo": str(lock.get("repo", "")), "commit": lock["commit"], "lock": LOCK}


@dataclass
class Fetched:
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in place and matching the lock
    bytes_downloaded: int = 0


def fetch_hub(benchmark: Benchmark, manifest: Manifest, dest: Path, entries: list[FileEntry],
              revision: str | None, sha256: Callable[[Path], str],
              check_records: Callable[[Benchmark, Path, Path, FileEntry], None]) -> Fetched:
    """Download `entries` of the hub dataset at one commit into `dest`, verified (see the module
    docstring; fetch.py's `sha256` of a file and its `check_records` that a file parses)."""
    result = Fetched()
    if revision is not None and not COMMIT.fullmatch(revision):
        raise UsageError(f"--revision {revision!r}: a commit sha (40 hex digits) of {manifest.hub}")
    lock = read_lock(dest)
    pinned = revision or manifest.commit or (lock["commit"] if lock else None)
    if lock is not None and pinned != lock["commit"]:
        raise UsageError(f"{dest}: holds commit {lock['commit'][:12]} of {manifest.hub} (its {LOCK}); fetch commit "
                         f"{pinned} into another folder")
    endpoint = os.environ.get("HF_ENDPOINT") or None
    commit = pinned or _resolve(manifest, endpoint)
    files: dict[str, dict[str, Any]] = dict(lock["files"]) if lock else {}
    missing = []
    for entry in entries:
        known = entry.sha256 or files.get(entry.path, {}).get("sha256")
        path = dest / entry.path
        if known is not None and path.is_file() and sha256(path) == known:
            result.skipped.append(entry.path)
        else:
            missing.append(entry)
    if not missing:
        return result
    created = _made(dest)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", suffix=".partial", dir=dest))
    try:
        for entry in missing:
            got = Path(_download(manifest, entry, commit, staging, endpoint)).resolve()
            digest, size = sha256(got), got.stat().st_size
            expected = entry.sha256 or files.get(entry.path, {}).get("sha256")
            if expected is not None and digest != expected:
                where = "the manifest" if entry.sha256 else f"the lock file {LOCK} (commit {commit[:12]})"
                raise DataError(f"{entry.path}: downloaded file does not match {where} ({size} bytes, sha256 "
                                f"{digest[:12]}…; expected sha256 {expected[:12]}…); discarded")
            part = staging / "verified" / entry.path
            part.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(got, part)
            check_records(benchmark, staging / "verified", part, entry)
            target = dest / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)
            files[entry.path] = {"size": size, "sha256": digest}
            result.downloaded.append(entry.path)
            result.bytes_downloaded += size
            _write_lock(dest, {"repo": manifest.hub, "commit": commit, "files": files})
    except OSError as exc:
        raise DataError(f"{dest}: cannot save the download: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
    return result


def _resolve(manifest: Manifest, endpoint: str | None) -> str:
    """The commit the manifest's revision (a branch) is at now, asked of the hub once."""
    from huggingface_hub import HfApi

    try:
        sha = HfApi(endpoint=endpoint).dataset_info(manifest.hub, revision=manifest.revision or "main").sha
    except Exception as exc:  # (huggingface_hub's errors are many: HTTP, offline mode, network)
        raise DataError(_unreachable(manifest, exc)) from None
    if not COMMIT.fullmatch(str(sha)):
        raise DataError(f"{manifest.hub}: the hub named no commit for revision {manifest.revision!r} ({sha!r})")
    return str(sha)


def _download(manifest: Manifest, entry: FileEntry, commit: str, staging: Path, endpoint: str | None) -> str:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(manifest.hub, entry.path, repo_type="dataset", revision=commit,
                               cache_dir=staging / "hub", endpoint=endpoint)
    except Exception as exc:
        raise DataError(f"{entry.path}: download failed: {_unreachable(manifest, exc)}") from None


def _unreachable(manifest: Manifest, exc: Exception) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return (f"cannot get {manifest.hub} from the hub ({type(exc).__name__}: {reason[:300]}); with a copy at hand, "
            "give --data DIR instead (HF_ENDPOINT names a mirror; HF_HUB_OFFLINE=1 forbids any download)")


def _write_lock(dest: Path, lock: dict[str, Any]) -> None:
    part = dest / f".{LOCK}.partial"
    part.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(part, dest / LOCK)


def _made(path: Path) -> list[Path]:
    """Create `path` and its missing parents; return those created, deepest first."""
    created = [folder for folder in (path, *path.parents) if not folder.is_dir()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{path}: cannot create the data folder: {exc}") from None
    return created
