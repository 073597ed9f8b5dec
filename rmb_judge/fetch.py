"""`rmb-judge data fetch`: download a benchmark's official data at a pinned commit, verified.

The benchmark's shipped manifest (for RMB, `benchmarks/rmb_files.json`; JudgeBench's
`benchmarks/judgebench_files.json`) lists every upstream
file with its size and sha256, taken from a verified copy; a file without a hash (RMB has
three) is checked by parsing it as the benchmark's records instead. Files download into a hidden staging folder
inside the destination (same filesystem, unique per fetch) and each is moved into place, its
folder created, only once it passes; the staging folder goes on any failure, Ctrl-C or
SIGTERM. So an interrupted or rejected download never looks like data (not even as an empty
folder), two fetches into one folder do not meet, and a rerun skips every file already in
place. A file is read up to the manifest's size and no further: a mirror sending without end
fails that file instead of filling the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .benchmark import Benchmark, FileEntry, Manifest
from .endpoints import problem, strip_secrets
from .errors import DataError, UsageError

PARALLEL = 4  # files in flight at once: enough to fill a link, polite to the host
CHUNK = 1 << 16
# Bytes a file whose size the manifest does not know may take (RMB's largest known file is
# 3.7 MB; the three unknown ones are over 4 MiB): a mirror sending without end stops here.
UNKNOWN_SIZE_LIMIT = 64 << 20
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)


@dataclass
class FetchResult:
    dest: Path
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already present and verified
    bytes_downloaded: int = 0
    records: int = 0  # records parsed from all selected files


async def fetch(
    benchmark: Benchmark,
    dest: Path | None = None,
    base_url: str | None = None,
    console: Console | None = None,
    only: Sequence[str] | None = None,
    revision: str | None = None,
) -> FetchResult:
    """Download the selected files of `benchmark`'s dataset into `dest`, verify, parse (a hub
    dataset's through hubdata.py, at `revision` if given).

    Raises DataError naming the file on an HTTP or network error, a hash mismatch, a file
    larger than it may be, unparseable data or a failed write (files verified before it stay
    in place, nothing else is left behind), UsageError on a malformed base_url or one holding
    credentials, a query or a fragment (the file paths go after it; the error does not repeat them).
    """
    if base_url is not None and (reason := problem(base_url, "the files' paths go after it")):
        raise UsageError(f"--base-url {strip_secrets(base_url)}: {reason}")
    manifest = benchmark.manifest()
    result = FetchResult(Path(dest) if dest is not None else benchmark.default_data_dir())
    entries = manifest.select(only)
    if manifest.hub:
        if base_url is not None:
            raise UsageError(f"--base-url: {benchmark.title} comes from the Hugging Face hub ({manifest.hub}); set "
                             "HF_ENDPOINT for a mirror")
        from .hubdata import fetch_hub

        got = await asyncio.to_thread(fetch_hub, benchmark, manifest, result.dest, entries, revision, _sha256,
                                      _check_records)
        result.downloaded, result.skipped, result.bytes_downloaded = got.downloaded, got.skipped, got.bytes_downloaded
        result.records = await asyncio.to_thread(_count_records, benchmark, result.dest, entries)
        return result
    if revision is not None:
        raise UsageError(f"--revision: {benchmark.title}'s files are pinned by its manifest (commit "
                         f"{manifest.commit[:12]}); only a hub dataset takes a revision")
    present = await asyncio.to_thread(lambda: {e for e in entries if _in_place(benchmark, result.dest, e)})
    missing = [e for e in entries if e not in present]
    result.skipped = [e.path for e in entries if e in present]
    if missing:
        await _download_all(benchmark, manifest, missing, base_url, console, result)
    result.records = await asyncio.to_thread(_count_records, benchmark, result.dest, entries)
    return result


def fetch_sync(
    benchmark: Benchmark,
    dest: Path | None = None,
    base_url: str | None = None,
    console: Console | None = None,
    only: Sequence[str] | None = None,
    revision: str | None = None,
) -> FetchResult:
    """`fetch`, with SIGTERM taken as Ctrl-C is (KeyboardInterrupt, after cleaning up)."""
    return asyncio.run(_terminable(fetch(benchmark, dest, base_url, console, only, revision)))


async def _terminable(work: Awaitable[FetchResult]) -> FetchResult:
    """Run `work`; a SIGTERM cancels it (so its cleanup runs) and raises KeyboardInterrupt."""
    task = asyncio.ensure_future(work)
    if threading.current_thread() is not threading.main_thread():  # (signals reach the main thread only)
        return await task
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await task
    except asyncio.CancelledError:
        if terminated.is_set():
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _download_all(
    benchmark: Benchmark,
    manifest: Manifest,
    entries: Sequence[FileEntry],
    base_url: str | None,
    console: Console | None,
    result: FetchResult,
) -> None:
    """A few files at a time under one progress bar; the first failure stops the rest.

    Whatever happens, the staging folder goes, and so do the destination and parents this
    fetch created if no verified file landed in them.
    """
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    limit = asyncio.Semaphore(PARALLEL)
    created: list[Path] = []
    try:
        created = _make_folder(result.dest)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", suffix=".partial", dir=result.dest))
    except OSError as exc:
        _remove_empty(created)
        raise DataError(f"{result.dest}: cannot create the data folder: {exc}") from None
    try:
        with Progress(*columns, console=console) as progress:
            bar = _Bar(progress, manifest.cache_folder, len(entries), sum(e.size or 0 for e in entries))
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:

                async def one(entry: FileEntry) -> None:
                    async with limit:
                        url = manifest.url(entry, base_url)
                        size = await _download(
                            benchmark, session, url, staging, result.dest, entry, bar.advance
                        )
                    result.downloaded.append(entry.path)
                    result.bytes_downloaded += size
                    bar.file_done()

                tasks = [asyncio.create_task(one(e)) for e in entries]
                try:
                    await asyncio.gather(*tasks)
                finally:  # after a failure or a cancel, stop the others before cleaning up
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)


def _make_folder(path: Path) -> list[Path]:
    """Create `path` and its missing parents; return those created, deepest first."""
    created = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        created.append(folder)
    path.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: Sequence[Path]) -> None:
    """Undo `_make_folder` where nothing landed (a concurrent fetch's files keep theirs)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


class _Bar:
    """One byte-counting bar for all files; sizes the manifest lacks are added as learnt."""

    def __init__(self, progress: Progress, name: str, files: int, total: int) -> None:
        self.progress, self.name, self.files, self.done, self.total = progress, name, files, 0, total
        self.task = progress.add_task(self._description(), total=total)

    def _description(self) -> str:
        return f"{self.name} {self.done}/{self.files} files"

    def advance(self, n: int, unknown_size: int = 0) -> None:
        if unknown_size:
            self.total += unknown_size
            self.progress.update(self.task, total=self.total)
        self.progress.advance(self.task, n)

    def file_done(self) -> None:
        self.done += 1
        self.progress.update(self.task, description=self._description())


async def _download(
    benchmark: Benchmark,
    session: aiohttp.ClientSession,
    url: str,
    staging: Path,
    dest: Path,
    entry: FileEntry,
    advance: Callable[..., None],
) -> int:
    """Stream one file to its place under `staging`, at most its manifest size (or
    UNKNOWN_SIZE_LIMIT), verify it there, then move it into `dest`, creating its folder only
    now; return its size."""
    part = staging / entry.path
    digest, size = hashlib.sha256(), 0
    limit = UNKNOWN_SIZE_LIMIT if entry.size is None else entry.size
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        async with session.get(url) as response:
            if response.status != 200:
                status = f"HTTP {response.status} {response.reason}"
                raise DataError(f"{entry.path}: download failed: {status} ({url})")
            if entry.size is None and response.content_length:
                advance(0, unknown_size=response.content_length)
            with part.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        what = "the most a file of unknown size may have" if entry.size is None else "its size"
                        raise DataError(f"{entry.path}: the server sent more than {limit:,} bytes ({what} "
                                        f"in the manifest); discarded ({url})")
                    out.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
    except aiohttp.ClientConnectorError as exc:  # (offline, or a firewall)
        raise DataError(
            f"{entry.path}: download failed: cannot reach {exc.host} ({exc.os_error.strerror or exc.os_error}); "
            f"with a copy of {benchmark.manifest().folder}/ at hand, give --data DIR or set "
            f"{benchmark.data_variable} instead (or --base-url a mirror)"
        ) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        reason = strip_secrets(str(exc) or type(exc).__name__)  # (a redirect's URL may hold a token)
        raise DataError(f"{entry.path}: download failed: {reason} ({url})") from None
    except OSError as exc:
        raise DataError(f"{entry.path}: cannot save the download: {exc}") from None
    if entry.sha256 is None:
        await asyncio.to_thread(_check_records, benchmark, staging, part, entry)
    elif digest.hexdigest() != entry.sha256:
        raise DataError(
            f"{entry.path}: downloaded file does not match the manifest "
            f"({size} bytes, sha256 {digest.hexdigest()[:12]}…; expected {entry.size} bytes, "
            f"sha256 {entry.sha256[:12]}…); discarded"
        )
    target = dest / entry.path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
    except OSError as exc:
        raise DataError(f"{entry.path}: cannot move the download into place: {exc}") from None
    return size


def _in_place(benchmark: Benchmark, dest: Path, entry: FileEntry) -> bool:
    """Already downloaded and verified: the right hash, or records that parse when none is known."""
    path = dest / entry.path
    if not path.is_file():
        return False
    if entry.sha256 is None:
        try:
            _check_records(benchmark, dest, path, entry)
        except DataError:
            return False
        return True
    return path.stat().st_size == entry.size and _sha256(path) == entry.sha256


def _check_records(benchmark: Benchmark, root: Path, path: Path, entry: FileEntry) -> None:
    try:
        for _ in benchmark.read_file(root, path):
            pass
    except DataError as exc:
        detail = str(exc).removeprefix(f"{path.relative_to(root).as_posix()}: ")
        raise DataError(
            f"{entry.path}: downloaded file is not {benchmark.title} data: {detail}; discarded"
        ) from None


def _count_records(benchmark: Benchmark, dest: Path, entries: Sequence[FileEntry]) -> int:
    return sum(1 for e in entries for _ in benchmark.read_file(dest, dest / e.path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
