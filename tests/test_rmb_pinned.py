"""RMB results pinned bit for bit: the request keys and reward keys a run caches under, and
the summary.json and samples.jsonl it writes, for small generative and scalar runs. Recorded
before rmb-judge was rebuilt to hold several benchmarks (issue 16): users' caches must keep
answering RMB runs, and RMB numbers must not move. Fields added since are listed in ADDED
and left out of the comparison; every field recorded then must keep its value.

`RMB_PIN_WRITE=1` rewrites the pinned files (only when a change is meant: say so in the commit)."""

import json
import os
import sqlite3
from pathlib import Path

import pytest
from fake_api import FAKE_KEY
from tiny_models import build_tiny_reward_model

from rmb_judge import cli

PINNED = Path(__file__).parent / "data" / "rmb_pinned"
SCENARIOS = ["*/Helpfulness/Chat/Discussion", "*/Harmlessness/S1", "*/Harmlessness/multi"]
# summary.json and samples.jsonl fields that may differ between two identical runs
VOLATILE = {("data", "root"), ("usage", "answers_per_second"), ("settings", "model_identity")}
# fields written since the pin (issue 16: design16 §5, §8), each new and none replacing one
ADDED_SAMPLE_FIELDS = {"benchmark", "subset"}
ADDED_SETTINGS = {"options"}  # summary.json settings
ADDED_SCENARIO_FIELDS = {"subset"}  # summary.json scenarios


def _write_or_compare(name: str, found: object) -> None:
    path = PINNED / name
    if os.environ.get("RMB_PIN_WRITE"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert found == expected, name


def _summary(out: Path, local: str, shown: str) -> dict:
    """summary.json with `local` (a URL or path of this test's own) written as `shown`."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8").replace(local, shown))
    for block, key in VOLATILE:
        summary.get(block, {}).pop(key, None)
    if not os.environ.get("RMB_PIN_WRITE"):
        assert summary["settings"].get("options") == {}
        assert all(s["subset"] == s["category_path"] for s in summary["scenarios"])
    for key in ADDED_SETTINGS:
        summary["settings"].pop(key, None)
    for scenario in summary["scenarios"]:
        for key in ADDED_SCENARIO_FIELDS:
            scenario.pop(key, None)
    return summary


def _samples(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    if not os.environ.get("RMB_PIN_WRITE"):
        assert all(line["benchmark"] == "rmb" and line["subset"] == line["category_path"] for line in lines)
    return [{k: v for k, v in line.items() if k not in ADDED_SAMPLE_FIELDS} for line in lines]


def _keys(cache: Path, query: str) -> list[list]:
    with sqlite3.connect(cache / "rmb-judge.sqlite3") as db:
        return sorted(list(row) for row in db.execute(query))


def _run(data_root: Path, tmp_path: Path, name: str, *flags: str) -> Path:
    out = tmp_path / name
    args = ["run", "--data", str(data_root), "--limit", "3", "--out", str(out), "--cache", str(tmp_path / "cache"),
            "--no-progress", *flags]
    for glob in SCENARIOS:
        args += ["--scenarios", glob]
    assert cli.main(args) == 0
    return out


RUNS = {  # name -> flags
    "random": ["--order", "random"],
    "both": ["--order", "both", "--template", "rmb-criteria"],
    "pointwise": ["--template", "pointwise", "--samples", "2", "--temperature", "0.5"],
}


@pytest.mark.parametrize("name", RUNS)
def test_generative_rmb_run_is_pinned(name, data_root, tmp_path, fake_api_thread, monkeypatch):
    """openai: judge through the fake server: every request key (with its sample and
    template hash), the summary and every samples line as recorded."""
    for variable, value in fake_api_thread.env().items():
        monkeypatch.setenv(variable, value)
    assert fake_api_thread.env()["OPENAI_API_KEY"] == FAKE_KEY
    out = _run(data_root, tmp_path, "out", "--judge", "openai:gpt-4o-mini", *RUNS[name])
    _write_or_compare(f"openai-{name}-keys.json",
                      _keys(tmp_path / "cache", "SELECT key, sample, template_sha256 FROM responses"))
    _write_or_compare(f"openai-{name}-summary.json", _summary(out, fake_api_thread.url, "http://fake-server"))
    _write_or_compare(f"openai-{name}-samples.json", _samples(out))


def test_scalar_rmb_run_is_pinned(data_root, tmp_path):
    """hf: judge (a tiny reward model built offline): every reward key (the rendered text's
    SHA-256), the summary and every samples line as recorded."""
    model = build_tiny_reward_model(tmp_path / "rm", seed=3, max_position_embeddings=4096)
    out = _run(data_root, tmp_path, "out", "--judge", f"hf:{model}")
    _write_or_compare("hf-keys.json", [key for key, in _keys(tmp_path / "cache", "SELECT text_sha256 FROM rewards")])
    _write_or_compare("hf-summary.json", _summary(out, str(model), "/tiny-rm"))
    samples = _samples(out)
    for line in samples:  # rewards to 6 significant digits: CPU kernels may move the last bits
        line["raw"] = [float(f"{r:.6g}") for r in line["raw"]]
    _write_or_compare("hf-samples.json", samples)
