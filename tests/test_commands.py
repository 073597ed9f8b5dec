"""The smaller commands as a user types them: data info/validate/fetch, the manifest,
and the live view."""

import argparse
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
import tomllib
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import RMB, make_config, present_files
from rich.console import Console

from rmb_judge import cli, records
from rmb_judge.display import LiveView, RunProgress
from rmb_judge.judges import parse_spec
from rmb_judge.session import run


def test_data_info_and_validate(data_root, capsys):
    assert cli.main(["data", "validate", "--data", str(data_root)]) == 0
    in_file = {path: len(json.loads((data_root / path).read_text())) for path in present_files()}  # read once
    records = sum(in_file.values())
    assert f"{len(in_file)} of {len(RMB.manifest().files)} scenario files, {records} records" in capsys.readouterr().out
    assert cli.main(["data", "info", "--data", str(data_root)]) == 0
    out = capsys.readouterr().out
    in_section = Counter()
    for path, n in in_file.items():
        in_section[path.split("/")[1] + path.split("/")[0]] += n
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


def test_a_repeated_uid_is_a_bad_record(data_root, tmp_path, capsys):
    """Two records with one uid in a scenario would be one record to compare, --precision and
    the samples: validate names the second, and a run refuses the file."""
    bad = tmp_path / "RMB_dataset" / "Pairwise_set" / "Helpfulness" / "Chat"
    bad.mkdir(parents=True)
    items = json.loads((data_root / "Pairwise_set/Helpfulness/Chat/Discussion.json").read_text())
    items[5]["pair_uid"] = items[2]["pair_uid"]
    (bad / "Discussion.json").write_text(json.dumps(items))
    assert cli.main(["data", "validate", "--data", str(tmp_path / "RMB_dataset")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rmb-judge: Pairwise_set/Helpfulness/Chat/Discussion.json: record 5: pair_uid") \
        and "record 2" in err and "\n" not in err
    assert cli.main(["run", "--judge", "mock", "--data", str(tmp_path / "RMB_dataset"), "--out", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache"), "--no-progress"]) == 2
    assert "record 5: pair_uid" in capsys.readouterr().err and not (tmp_path / "out" / "summary.json").exists()


def test_a_run_that_fails_before_its_first_answer_leaves_no_folder(data_root, tmp_path, capsys):
    """Nothing answered, nothing written: the --out folders the run made are gone again (an
    empty one broke `report runs/*`); a folder that was there before stays as it was."""
    args = ["run", "--judge", "openai:gpt-4o-mini", "--offline", "--data", str(data_root), "--limit", "1",
            "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert cli.main([*args, "--out", str(tmp_path / "runs" / "new")]) == cli.EXIT_OFFLINE_MISS
    assert not (tmp_path / "runs").exists()
    (tmp_path / "kept").mkdir()
    assert cli.main([*args, "--out", str(tmp_path / "kept")]) == cli.EXIT_OFFLINE_MISS
    assert list((tmp_path / "kept").iterdir()) == []
    assert "--offline" in capsys.readouterr().err


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
    # every package a judge runs on (core and judge extras, as pyproject.toml lists them), and tokenizers
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["local"],
              *project["optional-dependencies"]["google"]]
    names = {re.match(r"[\w.-]+", requirement).group(0) for requirement in wanted}
    assert "google-genai" in names and set(manifest["packages"]) >= names | {"rmb-judge", "tokenizers"}
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


# ---------------------------------------------------------------- pipes and files


@pytest.fixture(scope="module")
def mock_run(data_root, tmp_path_factory):
    """A small mock run's folder and its cache."""
    root = tmp_path_factory.mktemp("mock_run")
    run(make_config(judge=parse_spec("mock"), data=data_root, out=root / "run", cache=root / "cache",
                    selection=records.Selection(limit=4, scenarios=["*Chat*"])))
    return root


def test_report_writes_its_files_when_stdout_closes_early(mock_run, tmp_path):
    """`report --html X | head`: X is written whatever happens to stdout, and no traceback."""
    page = tmp_path / "board.html"
    done = subprocess.run(f"{sys.executable} -m rmb_judge.cli report {mock_run / 'run'} --html {page} "
                          f"--markdown {tmp_path / 'board.md'} | head -n 0", shell=True, capture_output=True,
                          text=True, timeout=60)
    assert page.read_text().startswith("<!DOCTYPE html>") and (tmp_path / "board.md").read_text()
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


@pytest.mark.parametrize("command", ["report {run}", "compare {run} {run}", "cache stats --cache {cache}",
                                     "data info --data {data}"])
def test_a_closed_stdout_ends_a_command_as_a_closed_pipe_does(command, mock_run, data_root):
    """`rmb-judge ... | head`: exit 141 as for SIGPIPE, whether rich or print wrote the table;
    never 1, which says a run is incomplete."""
    line = command.format(run=mock_run / "run", cache=mock_run / "cache", data=data_root)
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m rmb_judge.cli {line} | head -n 0; "
                                         "exit ${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr


def test_output_dash_is_stdout(mock_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["cache", "export", "--cache", str(mock_run / "cache"), "--output", "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and not (tmp_path / "-").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_follow_the_umask(umask, data_root, tmp_path):
    before = os.umask(umask)
    try:
        run(make_config(judge=parse_spec("mock"), data=data_root, out=tmp_path / "o", cache=tmp_path / "c",
                        selection=records.Selection(limit=1, scenarios=["*Chat/Discussion"])))
    finally:
        os.umask(before)
    for name in ("summary.json", "samples.jsonl", "manifest.json"):
        assert stat.S_IMODE((tmp_path / "o" / name).stat().st_mode) == 0o666 & ~umask, name


def _parsers(parser, name="rmb-judge"):
    """Every command's parser, by its command line."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, inner in action.choices.items():
                yield from _parsers(inner, f"{name} {sub}")


def test_every_argument_of_every_command_is_described(capsys):
    for name, parser in _parsers(cli.build_parser()):
        for action in parser._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    text = capsys.readouterr().out
    assert "95% interval" in text and "%%" not in text


def test_report_and_data_info_print_json(mock_run, data_root, capsys):
    summary = json.loads((mock_run / "run" / "summary.json").read_text())
    assert cli.main(["report", str(mock_run / "run"), "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    (shown,) = board["runs"]
    assert shown["judge"] == "mock" and shown["path"] == str(mock_run / "run") and shown["rank"] == 1
    assert shown["scores"] == {k: summary["scores"][k] for k in shown["scores"]} and "overall" in shown["scores"]
    assert shown["intervals"]["overall"] == summary["intervals"]["overall"] and shown["simulated"] is True
    assert cli.main(["data", "info", "--data", str(data_root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    dataset = RMB.load(data_root)
    assert sum(info["scenarios"].values()) == len(dataset.records) == sum(s["records"] for s in info["sections"].values())
    assert info["sections"]["bon_helpfulness"]["comparisons"] == sum(
        len(r.rejected) for r in dataset.records if r.section == "bon_helpfulness")
    assert info["files_read"] == len(present_files()) and info["upstream_files"] == len(RMB.manifest().files)


def test_a_p_value_below_a_thousandth_reads_p_below(mock_run, data_root, tmp_path, capsys, monkeypatch):
    from fake_api import FAKE_KEY, FakeAPI, label_judge

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    dataset = RMB.load(data_root, records.Selection(scenarios=["*Chat*"]))
    with FakeAPI(label_judge(dataset.records)).run_in_thread() as api:
        run(make_config(judge="openai:gpt-4o-mini", data=data_root, out=tmp_path / "label", cache=tmp_path / "cache",
                        base_urls=[api.openai_url], selection=records.Selection(limit=4, scenarios=["*Chat*"])))
    assert cli.main(["compare", str(tmp_path / "label"), str(mock_run / "run")]) == 0
    out = capsys.readouterr().out
    assert "p < 0.001)" in out and "p = <" not in out


def test_a_budget_stop_says_it_stopped_before_passing_it(data_root, tmp_path, capsys, monkeypatch):
    """--max-cost stops before a request that could pass it: "reached" misread a stop at a
    third of the budget."""
    from fake_api import FAKE_KEY, FakeAPI

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeAPI().run_in_thread() as api:
        code = cli.main(["run", "--judge", "openai:gpt-4o-mini", "--base-url", api.openai_url, "--data", str(data_root),
                         "--scenarios", "*Chat*", "--limit", "2", "--out", str(tmp_path / "o"), "--cache",
                         str(tmp_path / "c"), "--no-progress", "--max-cost", "0.003",
                         "--price", "published"])
    err = capsys.readouterr().err
    spent = json.loads((tmp_path / "o" / "summary.json").read_text())["usage"]["cost_usd"]
    assert code == cli.EXIT_BUDGET and "reached" not in err
    assert f"stopped before the next request could pass --max-cost $0.003 (spent ${spent:.4f})" in err


def test_data_fetch_that_cannot_reach_its_host_points_at_data(tmp_path, capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    assert cli.main(["data", "fetch", "--data", str(tmp_path / "d"), "--base-url", mirror,
                     "--only", "BoN_set/Harmlessness/S1.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot reach 127.0.0.1" in err and "--data DIR" in err and "RMB_DATA" in err


def test_data_given_the_folder_above_the_dataset(data_root, tmp_path, capsys):
    """--data pointing at the folder that holds RMB_dataset/ (a clone of the upstream repo)
    reads the dataset inside; a folder holding it one level further down names it."""
    (tmp_path / "clone").mkdir()
    (tmp_path / "clone" / "RMB_dataset").symlink_to(data_root)
    assert cli.main(["data", "info", "--data", str(tmp_path / "clone"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["root"] == str(tmp_path / "clone" / "RMB_dataset") and info["files_read"] == len(present_files())
    assert cli.main(["run", "--judge", "mock", "--data", str(tmp_path / "clone"), "--limit", "1", "--scenarios",
                     "*Chat/Discussion", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["data"]["root"] == str(tmp_path / "clone" / "RMB_dataset")
    (tmp_path / "above" / "other").mkdir(parents=True)
    (tmp_path / "above" / "other" / "data").symlink_to(data_root)
    assert cli.main(["data", "info", "--data", str(tmp_path / "above")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an RMB_dataset folder" in err and f"{tmp_path / 'above' / 'other' / 'data'} holds one" in err
