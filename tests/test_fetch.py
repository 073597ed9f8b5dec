"""`rmb-judge data fetch` against a loopback aiohttp server laid out like the upstream repo."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from conftest import DATA, RMB  # $RMB_TEST_DATA, else the shared copy
from local_site import serving
from rich.console import Console

from rmb_judge import cli
from rmb_judge.errors import DataError, UsageError
from rmb_judge.fetch import fetch, fetch_sync

SUBSET = [  # small files, two with spaces in their names
    "BoN_set/Helpfulness/Reasoning/Pattern Recognition.json",
    "BoN_set/Helpfulness/Rewrite/Paraphrasing.json",
    "Pairwise_set/Harmlessness/S1.json",
]
UNHASHED = "Pairwise_set/Harmlessness/S11.json"  # absent from the local copy, no sha256 known
ENDLESS_BOUND = 64 << 20  # bytes an endless file sends at most
ABSENT_FROM_SHARED_COPY = {  # PROVENANCE.md: over 4 MiB each, left out; no sha256 known
    UNHASHED,
    "Pairwise_set/Helpfulness/Brainstorming/Idea Development.json",
    "Pairwise_set/Helpfulness/Generation/Creative Writing.json",
}


@dataclass
class Server:
    base_url: str
    root: Path  # the served RMB_dataset/ folder
    requests: list[str]
    cut: set[str] = field(default_factory=set)  # sent half way, then the connection drops
    stall: set[str] = field(default_factory=set)  # sent half way, then held until released
    endless: set[str] = field(default_factory=set)  # sent over and over, without a length, until the client stops
    sent: dict[str, int] = field(default_factory=dict)  # bytes written of each endless file
    released: threading.Event = field(default_factory=threading.Event)

    def serve(self, path: str, data: bytes | None = None) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((DATA / path).read_bytes() if data is None else data)

    async def half(self, request: web.Request, path: str) -> web.StreamResponse:
        data = (self.root / path).read_bytes()
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        while path in self.stall and not self.released.is_set():
            await asyncio.sleep(0.02)
        assert request.transport is not None
        request.transport.close()
        return response

    async def forever(self, request: web.Request, path: str) -> web.StreamResponse:
        """A mirror gone wrong: the file again and again, chunked, never ending (bounded here
        at ENDLESS_BOUND so a client that never stops fails the test instead of filling the disk)."""
        data = (self.root / path).read_bytes()
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.sent[path] = 0
        try:
            while self.sent[path] < ENDLESS_BOUND:
                await response.write(data)
                self.sent[path] += len(data)
        except (ConnectionError, RuntimeError):
            return response  # the client hung up
        assert request.transport is not None
        request.transport.close()
        return response


@pytest.fixture
def server(tmp_path: Path):
    """Served from its own thread, so sync tests (fetch_sync, Ctrl-C) can use it too."""
    root = tmp_path / "site" / "RMB_dataset"
    root.mkdir(parents=True)
    served = Server("", root, [])

    @web.middleware
    async def record(request: web.Request, handler):
        served.requests.append(request.path)
        path = request.path.removeprefix("/RMB_dataset/")
        if path in served.cut | served.stall:
            return await served.half(request, path)
        if path in served.endless:
            return await served.forever(request, path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_static("/", root.parent)
    with serving(app) as url:
        served.base_url = f"{url}/"
        yield served
        served.released.set()


def quiet() -> Console:
    return Console(file=io.StringIO())


def leftovers(dest: Path) -> list[Path]:
    """Staging folders and empty folders: what a fetch must never leave."""
    return sorted(
        p for p in dest.rglob("*")
        if p.name.startswith(".") or (p.is_dir() and not any(p.iterdir()))
    )


def staged(dest: Path) -> list[Path]:
    """Files being downloaded: under a hidden staging folder in `dest`."""
    return [p for p in dest.glob(".*/**/*") if p.is_file()] if dest.is_dir() else []


async def until(condition: Callable[[], object], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_manifest_matches_the_verified_copy_and_the_upstream_layout():
    manifest = RMB.manifest()
    paths = [e.path for e in manifest.files]
    assert len(paths) == 98 == len(set(paths))
    assert sum(p.startswith("BoN_set/") for p in paths) == 49
    assert sum(p.startswith("Pairwise_set/") for p in paths) == 49
    local = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.json")}
    unhashed = {e.path for e in manifest.files if e.sha256 is None}
    assert set(paths) - local <= unhashed == ABSENT_FROM_SHARED_COPY
    for entry in manifest.files:
        if entry.sha256 is not None:
            data = (DATA / entry.path).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (entry.size, entry.sha256)
    assert manifest.url(manifest.files[0]).startswith(
        "https://raw.githubusercontent.com/Zhou-Zoey/RMB-Reward-Model-Benchmark/"
        "2be3180857f2190b7ffa929d43190835627f1f4d/RMB_dataset/"
    )
    entry = next(e for e in manifest.files if e.path == SUBSET[0])
    assert manifest.url(entry, "http://host:1/mirror/").endswith(
        "/mirror/RMB_dataset/BoN_set/Helpfulness/Reasoning/Pattern%20Recognition.json"
    )


async def test_fetch_downloads_verifies_and_skips_what_is_in_place(server: Server, tmp_path: Path):
    for path in SUBSET:
        server.serve(path)
    dest = tmp_path / "dest"

    result = await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=SUBSET)

    assert sorted(result.downloaded) == sorted(SUBSET) and result.skipped == []
    for path in SUBSET:
        assert (dest / path).read_bytes() == (DATA / path).read_bytes()
    assert result.bytes_downloaded == sum((DATA / p).stat().st_size for p in SUBSET)
    assert result.records == sum(len(list(RMB.read_file(DATA, DATA / p))) for p in SUBSET)
    assert len(server.requests) == 3 and leftovers(dest) == []

    again = await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=SUBSET)
    assert again.downloaded == [] and sorted(again.skipped) == sorted(SUBSET)
    assert len(server.requests) == 3
    assert again.records == result.records

    (dest / SUBSET[1]).write_bytes(b"[]")  # damaged locally: fetched again, the rest skipped
    third = await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=SUBSET)
    assert third.downloaded == [SUBSET[1]] and len(server.requests) == 4
    assert (dest / SUBSET[1]).read_bytes() == (DATA / SUBSET[1]).read_bytes()


async def test_a_corrupted_file_is_rejected_by_name_and_leaves_nothing(
    server: Server, tmp_path: Path
):
    for path in SUBSET:
        server.serve(path)
    original = (DATA / SUBSET[0]).read_bytes()
    server.serve(SUBSET[0], original.replace(b"a", b"e", 1))  # same size, other content
    dest = tmp_path / "dest"

    with pytest.raises(DataError, match="Pattern Recognition.json: downloaded file does not match"):
        await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=SUBSET)

    assert not (dest / SUBSET[0]).exists()
    assert leftovers(dest) == []


async def test_an_http_error_names_the_file_and_a_failed_first_fetch_leaves_no_folder(
    server: Server, tmp_path: Path
):
    dest = tmp_path / "new" / "RMB_dataset"
    error = r"^Pairwise_set/Harmlessness/S11\.json: download failed: HTTP 404"
    with pytest.raises(DataError, match=error):
        await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=[UNHASHED])
    assert not (tmp_path / "new").exists()  # not an empty folder `data validate` calls OK
    with pytest.raises(DataError, match="RMB data folder not found"):
        RMB.load(dest)


async def test_a_file_without_hash_is_verified_by_parsing(server: Server, tmp_path: Path):
    dest = tmp_path / "dest"
    good = (DATA / "Pairwise_set/Harmlessness/S1.json").read_bytes()
    server.serve(UNHASHED, good)
    result = await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=[UNHASHED])
    assert result.downloaded == [UNHASHED]
    assert result.records == len(list(RMB.read_file(DATA, DATA / "Pairwise_set/Harmlessness/S1.json")))

    server.serve(UNHASHED, b'[{"pair_uid": "x"}]')
    (dest / UNHASHED).unlink()
    error = r"S11\.json: downloaded file is not RMB data: record 0: missing field"
    with pytest.raises(DataError, match=error):
        await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=[UNHASHED])
    assert not (dest / UNHASHED).exists()
    assert leftovers(dest) == [(dest / UNHASHED).parent]  # emptied above, not by the fetch


async def test_a_download_failing_mid_way_keeps_verified_files_and_no_empty_folder(
    server: Server, tmp_path: Path
):
    for path in SUBSET:
        server.serve(path)
    server.cut.add(SUBSET[2])  # the only Pairwise_set/ file: its folders must not appear
    dest = tmp_path / "dest"
    (dest / "Pairwise_set" / "Helpfulness").mkdir(parents=True)  # there before: stays

    with pytest.raises(DataError, match=r"^Pairwise_set/Harmlessness/S1\.json: download failed"):
        await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=SUBSET)

    assert not (dest / "Pairwise_set" / "Harmlessness").exists()
    assert leftovers(dest) == [dest / "Pairwise_set" / "Helpfulness"]
    for path in dest.rglob("*.json"):  # what did land (the first failure stops the rest) is whole
        assert path.read_bytes() == (DATA / path.relative_to(dest)).read_bytes()

    server.cut.clear()
    result = await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=SUBSET)
    assert SUBSET[2] in result.downloaded and len(result.downloaded + result.skipped) == 3
    for path in SUBSET:
        assert (dest / path).read_bytes() == (DATA / path).read_bytes()
    assert leftovers(dest) == [dest / "Pairwise_set" / "Helpfulness"]


async def test_cancelling_mid_download_leaves_nothing(server: Server, tmp_path: Path):
    server.serve(SUBSET[2])
    server.stall.add(SUBSET[2])
    dest = tmp_path / "dest"
    task = asyncio.create_task(
        fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=[SUBSET[2]])
    )
    await until(lambda: staged(dest))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dest.exists()


@pytest.mark.parametrize("path", [SUBSET[2], UNHASHED], ids=["size-known", "size-unknown"])
async def test_a_mirror_sending_without_end_is_cut_off(path, server: Server, tmp_path: Path, monkeypatch):
    """Past the manifest's size (or, for a file whose size is not known, the limit on any
    file) the download stops, is discarded, and leaves nothing."""
    server.serve(path, (DATA / SUBSET[2]).read_bytes())
    server.endless.add(path)
    dest = tmp_path / "dest"
    size = (DATA / SUBSET[2]).stat().st_size
    monkeypatch.setattr("rmb_judge.fetch.UNKNOWN_SIZE_LIMIT", 4 * size)  # (64 MiB: too slow for a test)
    limit = size if path == SUBSET[2] else 4 * size
    with pytest.raises(DataError, match=rf"^{re.escape(path)}: the server sent more than {limit:,} bytes"):
        await fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=[path])
    await until(lambda: path in server.sent)
    assert server.sent[path] < ENDLESS_BOUND // 4  # (the rest: in the sockets' buffers when it stopped reading)
    assert not dest.exists()


@pytest.mark.parametrize("base_url", ["http://mirror-user:pw-s3cret@{host}/", "http://{host}/?key=key-s3cret",
                                      "http://{host}/mirror#key-s3cret"])
def test_a_base_url_holding_a_secret_is_refused_without_showing_it(base_url, server: Server, tmp_path: Path, capsys):
    """A user name, password, query or fragment is refused in one line that does not repeat it
    (a query also used to end up before the file's path)."""
    url = base_url.format(host=server.base_url.removeprefix("http://").rstrip("/"))
    assert cli.main(["data", "fetch", "--base-url", url, "--data", str(tmp_path / "d"), "--only", SUBSET[0]]) == 2
    err = capsys.readouterr().err
    assert "--base-url" in err and "no credentials or query string (the files' paths go after it)" in err
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1
    assert server.requests == [] and not (tmp_path / "d").exists()


def test_sigterm_mid_download_leaves_nothing(server: Server, tmp_path: Path):
    """SIGTERM is handled as Ctrl-C is: the staging folder goes, exit 130."""
    server.serve(SUBSET[2])
    server.stall.add(SUBSET[2])
    dest = tmp_path / "dest"
    proc = subprocess.Popen([sys.executable, "-m", "rmb_judge.cli", "data", "fetch", "--base-url", server.base_url,
                             "--data", str(dest), "--only", SUBSET[2]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not staged(dest):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 130
    assert not dest.exists()


def test_ctrl_c_mid_download_leaves_nothing(server: Server, tmp_path: Path):
    server.serve(SUBSET[2])
    server.stall.add(SUBSET[2])
    dest = tmp_path / "dest"
    dest.mkdir()  # there before: stays, empty

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 10
        while not staged(dest) and time.monotonic() < deadline:
            time.sleep(0.01)
        if staged(dest):
            os.kill(os.getpid(), signal.SIGINT)
        else:  # never got going: let it finish, and the test fail, rather than hang
            server.released.set()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        fetch_sync(RMB, dest, base_url=server.base_url, console=quiet(), only=[SUBSET[2]])
    assert list(dest.iterdir()) == []


async def test_two_fetches_into_one_folder_at_once(server: Server, tmp_path: Path):
    for path in SUBSET:
        server.serve(path)
    dest = tmp_path / "dest"
    first, second = await asyncio.gather(*(
        fetch(RMB, dest, base_url=server.base_url, console=quiet(), only=SUBSET) for _ in range(2)
    ))
    assert first.records == second.records > 0
    for path in SUBSET:
        assert (dest / path).read_bytes() == (DATA / path).read_bytes()
    assert leftovers(dest) == []


def test_missing_files_names_what_a_copy_lacks(tmp_path: Path):
    manifest = [e.path for e in RMB.manifest().files]
    local = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.json")}
    lacking = RMB.manifest().missing(DATA)
    # the shared copy lacks the three files PROVENANCE.md names (a full copy: none)
    assert lacking == [p for p in manifest if p not in local]
    assert set(lacking) <= ABSENT_FROM_SHARED_COPY
    assert RMB.manifest().missing(tmp_path) == manifest

    for path in SUBSET:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"[]")  # present is enough: validate parses
    (tmp_path / "BoN_set" / "extra.json").write_bytes(b"[]")
    assert RMB.manifest().missing(tmp_path) == [p for p in manifest if p not in SUBSET]


def test_only_selects_by_pattern_and_bad_arguments_fail_early(tmp_path: Path):
    manifest = RMB.manifest()
    assert len(manifest.select(["BoN_set/*"])) == 49
    assert [e.path for e in manifest.select([SUBSET[0]])] == [SUBSET[0]]
    with pytest.raises(DataError, match="matches 'Pairwise_set/Nope/\\*'"):
        fetch_sync(RMB, tmp_path, only=["Pairwise_set/Nope/*"])
    with pytest.raises(UsageError, match="--base-url mirror.example/rmb: must be an http"):
        fetch_sync(RMB, tmp_path, base_url="mirror.example/rmb")
