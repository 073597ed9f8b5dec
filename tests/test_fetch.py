"""`rmb-judge data fetch` against a loopback aiohttp server laid out like the upstream repo."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from rich.console import Console

from rmb_judge.errors import DataError, UsageError
from rmb_judge.fetch import fetch, fetch_sync, load_manifest
from rmb_judge.records import read_file

DATA = Path(__file__).resolve().parents[2] / "shared" / "rmb" / "RMB_dataset"
SUBSET = [  # small files, two with spaces in their names
    "BoN_set/Helpfulness/Reasoning/Pattern Recognition.json",
    "BoN_set/Helpfulness/Rewrite/Paraphrasing.json",
    "Pairwise_set/Harmlessness/S1.json",
]
UNHASHED = "Pairwise_set/Harmlessness/S11.json"  # absent from the local copy, no sha256 known


@dataclass
class Server:
    base_url: str
    root: Path  # the served RMB_dataset/ folder
    requests: list[str]

    def serve(self, path: str, data: bytes | None = None) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((DATA / path).read_bytes() if data is None else data)


@pytest.fixture
async def server(tmp_path: Path):
    root = tmp_path / "site" / "RMB_dataset"
    root.mkdir(parents=True)
    requests: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler):
        requests.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_static("/", root.parent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield Server(f"http://{host}:{port}/", root, requests)
    await runner.cleanup()


def quiet() -> Console:
    return Console(file=io.StringIO())


def leftovers(dest: Path) -> list[Path]:
    return list(dest.rglob("*.part"))


def test_manifest_matches_the_verified_copy_and_the_upstream_layout():
    manifest = load_manifest()
    paths = [e.path for e in manifest.files]
    assert len(paths) == 98 == len(set(paths))
    assert sum(p.startswith("BoN_set/") for p in paths) == 49
    assert sum(p.startswith("Pairwise_set/") for p in paths) == 49
    local = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.json")}
    unhashed = {e.path for e in manifest.files if e.sha256 is None}
    assert unhashed == set(paths) - local == {
        "Pairwise_set/Harmlessness/S11.json",
        "Pairwise_set/Helpfulness/Brainstorming/Idea Development.json",
        "Pairwise_set/Helpfulness/Generation/Creative Writing.json",
    }
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

    result = await fetch(dest, base_url=server.base_url, console=quiet(), only=SUBSET)

    assert sorted(result.downloaded) == sorted(SUBSET) and result.skipped == []
    for path in SUBSET:
        assert (dest / path).read_bytes() == (DATA / path).read_bytes()
    assert result.bytes_downloaded == sum((DATA / p).stat().st_size for p in SUBSET)
    assert result.records == sum(len(list(read_file(DATA, DATA / p))) for p in SUBSET)
    assert len(server.requests) == 3 and leftovers(dest) == []

    again = await fetch(dest, base_url=server.base_url, console=quiet(), only=SUBSET)
    assert again.downloaded == [] and sorted(again.skipped) == sorted(SUBSET)
    assert len(server.requests) == 3
    assert again.records == result.records

    (dest / SUBSET[1]).write_bytes(b"[]")  # damaged locally: fetched again, the rest skipped
    third = await fetch(dest, base_url=server.base_url, console=quiet(), only=SUBSET)
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
        await fetch(dest, base_url=server.base_url, console=quiet(), only=SUBSET)

    assert not (dest / SUBSET[0]).exists()
    assert leftovers(dest) == []


async def test_an_http_error_names_the_file(server: Server, tmp_path: Path):
    error = r"^Pairwise_set/Harmlessness/S11\.json: download failed: HTTP 404"
    with pytest.raises(DataError, match=error):
        await fetch(tmp_path, base_url=server.base_url, console=quiet(), only=[UNHASHED])
    assert leftovers(tmp_path) == []


async def test_a_file_without_hash_is_verified_by_parsing(server: Server, tmp_path: Path):
    good = (DATA / "Pairwise_set/Harmlessness/S1.json").read_bytes()
    server.serve(UNHASHED, good)
    result = await fetch(tmp_path, base_url=server.base_url, console=quiet(), only=[UNHASHED])
    assert result.downloaded == [UNHASHED]
    assert result.records == len(list(read_file(DATA, DATA / "Pairwise_set/Harmlessness/S1.json")))

    server.serve(UNHASHED, b'[{"pair_uid": "x"}]')
    (tmp_path / UNHASHED).unlink()
    error = r"S11\.json: downloaded file is not RMB data: record 0: missing field"
    with pytest.raises(DataError, match=error):
        await fetch(tmp_path, base_url=server.base_url, console=quiet(), only=[UNHASHED])
    assert not (tmp_path / UNHASHED).exists() and leftovers(tmp_path) == []


def test_only_selects_by_pattern_and_bad_arguments_fail_early(tmp_path: Path):
    manifest = load_manifest()
    assert len(manifest.select(["BoN_set/*"])) == 49
    assert [e.path for e in manifest.select([SUBSET[0]])] == [SUBSET[0]]
    with pytest.raises(DataError, match="matches 'Pairwise_set/Nope/\\*'"):
        fetch_sync(tmp_path, only=["Pairwise_set/Nope/*"])
    with pytest.raises(UsageError, match="--base-url must be an http"):
        fetch_sync(tmp_path, base_url="mirror.example/rmb")
