"""The smaller commands as a user types them: data info/validate/fetch, the manifest,
and the live view."""

import hashlib
import json
import threading
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from conftest import RMB, make_config, present_files
from rich.console import Console

from rmb_judge import cli, records
from rmb_judge.display import LiveView, RunProgress
from rmb_judge.judges import parse_spec
from rmb_judge.session import run


def test_data_info_and_validate(data_root, capsys):
    assert cli.main(["data", "validate", "--data", str(data_root)]) == 0
    present = present_files()
    records = sum(len(json.loads((data_root / path).read_text())) for path in present)
    assert f"{len(present)} of {len(RMB.manifest().files)} scenario files, {records} records" in capsys.readouterr().out
    assert cli.main(["data", "info", "--data", str(data_root)]) == 0
    out = capsys.readouterr().out
    in_section = Counter(path.split("/")[1] + path.split("/")[0] for path in present for _ in
                         json.loads((data_root / path).read_text()))
    assert "Pairwise_set/Helpfulness/Chat/Discussion" in out
    assert str(in_section["HelpfulnessPairwise_set"]) in out and str(in_section["HarmlessnessBoN_set"]) in out


def test_data_validate_names_the_bad_record(data_root, tmp_path, capsys):
    bad = tmp_path / "RMB_dataset" / "BoN_set" / "Helpfulness" / "Chat"
    bad.mkdir(parents=True)
    items = json.loads((data_root / "BoN_set/Helpfulness/Chat/Discussion.json").read_text())
    items[3]["loser_list"] = "oops"
    (bad / "Discussion.json").write_text(json.dumps(items))
    assert cli.main(["data", "validate", "--data", str(tmp_path / "RMB_dataset")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rmb-judge: BoN_set/Helpfulness/Chat/Discussion.json: record 3:") and "\n" not in err


def test_data_fetch_from_a_mirror(data_root, tmp_path, capsys):
    handler = partial(SimpleHTTPRequestHandler, directory=str(data_root.parent))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "got"
        args = ["data", "fetch", "--data", str(dest), "--base-url", f"http://127.0.0.1:{server.server_port}/",
                "--only", "BoN_set/Helpfulness/Chat/*"]
        assert cli.main(args) == 0
        assert "3 files downloaded" in capsys.readouterr().out
        assert cli.main(args) == 0
        assert "0 files downloaded, 3 already present" in capsys.readouterr().out
    finally:
        server.shutdown()
    got = RMB.load(dest)
    assert len(got.records) == len(RMB.load(data_root, records.Selection(sets=["bon"], scenarios=["*Helpfulness/Chat/*"])).records)


def test_manifest_says_how_to_reproduce(data_root, tmp_path):
    argv = ["rmb-judge", "run", "--base-url", "http://user:s3cret-token@vllm.local:8000/v1", "sk-live-abcdef123456"]
    run(make_config(judge=parse_spec("mock"), data=data_root, out=tmp_path / "o", cache=tmp_path / "c",
                  selection=records.Selection(limit=1, scenarios=["*Code*"]), argv=argv))
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["judge"] == "mock"
    assert manifest["command"] == ["rmb-judge", "run", "--base-url", "http://vllm.local:8000/v1", "sk-[redacted]"]
    for path in (tmp_path / "o").iterdir():
        assert b"s3cret-token" not in path.read_bytes() and b"abcdef123456" not in path.read_bytes()
    assert len(manifest["settings"]["template_sha256"]) == 64
    assert set(manifest["packages"]) >= {"rmb-judge", "openai", "anthropic"}
    files = manifest["data"]["files"]
    assert "BoN_set/Helpfulness/Code/Documentation.json" in files
    for name, digest in files.items():
        assert digest == hashlib.sha256((data_root / name).read_bytes()).hexdigest()


def test_live_view_shows_sections_and_engine_numbers(data_root):
    progress = RunProgress("openai:gpt-x", False, metrics=lambda: {"in flight": "7", "429s": "2"})
    dataset = RMB.load(data_root, records.Selection(sets=("bon",), sections=("harmlessness",), limit=5))
    progress.expect([s.key for s in RMB.sections], dataset.records[:10])
    for record, score in zip(dataset.records[:4], (1.0, 1.0, 0.0, 1.0), strict=True):
        progress.record(record, score)
    console = Console(record=True, width=160)
    console.print(LiveView(progress))
    text = console.export_text()
    assert "bon_harmlessness" in text and "4/10" in text and "75.0%" in text
    assert "in flight: 7" in text and "429s: 2" in text and "pairwise_helpfulness" not in text
    mock = RunProgress("mock", True)
    console.print(LiveView(mock))
    assert "SIMULATED" in console.export_text()


def test_abbreviated_flags_are_refused(data_root, tmp_path, capsys):
    import pytest
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--judge", "mock", "--data", str(data_root), "--out", str(tmp_path), "--max-len", "10"])
    assert exit_.value.code == 2 and "--max-len" in capsys.readouterr().err


def test_cli_basics(data_root, tmp_path, capsys):
    import pytest

    from rmb_judge import __version__
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"rmb-judge {__version__}"
    with pytest.raises(SystemExit):
        cli.main(["data", "fetch", "--help"])
    fetch_help = capsys.readouterr().out
    assert "--only" in fetch_help and "--judge" not in fetch_help and "validate" not in fetch_help
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    run_help = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "130"):
        assert f"\n  {code}" in run_help
    # a typo in --cache creates nothing
    assert cli.main(["cache", "stats", "--cache", str(tmp_path / "TYPO")]) == 2
    assert "no cache here" in capsys.readouterr().err and not (tmp_path / "TYPO").exists()


def test_run_json_prints_the_summary_alone(data_root, tmp_path, capsys):
    code = cli.main(["run", "--judge", "mock", "--data", str(data_root), "--limit", "1", "--scenarios", "*Code*",
                     "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--json"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out) == json.loads((tmp_path / "o" / "summary.json").read_text())


def test_prune_dry_run_deletes_nothing(data_root, tmp_path, capsys):
    run(make_config(judge=parse_spec("mock"), data=data_root, out=tmp_path / "o", cache=tmp_path / "c",
                  selection=records.Selection(limit=1, scenarios=["*Chat*"])))
    assert cli.main(["cache", "prune", "--cache", str(tmp_path / "c"), "--model", "mock", "--dry-run"]) == 0
    would = int(capsys.readouterr().out.split()[2])
    assert would > 0
    assert cli.main(["cache", "prune", "--cache", str(tmp_path / "c"), "--model", "mock"]) == 0
    assert f"removed {would} rows" in capsys.readouterr().out


def test_batch_against_an_endpoint_without_a_batch_api(data_root, tmp_path, capsys, monkeypatch):
    """vLLM and most OpenAI-compatible servers have no Files/Batches API: say so plainly."""
    from fake_api import FAKE_KEY, FakeAPI
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeAPI(batches=False).run_in_thread() as api:
        code = cli.main(["run", "--judge", "openai:served-model", "--data", str(data_root), "--limit", "1",
                         "--scenarios", "*Code*", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                         "--batch", "--base-url", api.openai_url, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3 and err == (f"rmb-judge: --batch: {api.openai_url} has no batch API (HTTP 404 when "
                                 "creating a batch); run without --batch")
