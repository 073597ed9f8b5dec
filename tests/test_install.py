"""What `pip install .` gives, and what bin/rmb-judge installs.

A wheel of the project is built and installed into a fresh virtualenv (its dependencies
come from this interpreter's site-packages through a .pth file: nothing is downloaded), then
the installed tool runs from a folder outside the source tree: the shipped templates must
come from the wheel's package data. The core install profile of bin/_venv.sh is resolved
with `pip install --dry-run` to show that API and mock judges never pull torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
HEAVY = {"torch", "transformers", "tokenizers", "safetensors", "huggingface-hub"}


def source_dir(package: str) -> Path:
    """Where a listed package's files are in the source tree (package-dir, else its name)."""
    mapped = SETUPTOOLS.get("package-dir", {}).get(package)
    return ROOT / (mapped if mapped is not None else package.replace(".", "/"))


def shipped_files() -> set[str]:
    """Every file the wheel must hold, as its path in the wheel: all that lies in the listed
    packages' folders (modules, and data such as templates: a data file no package-data glob
    names would be left out of the wheel, and of `pip install .`)."""
    wanted: set[str] = set()
    for package in SETUPTOOLS["packages"]:
        src = source_dir(package)
        for path in src.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                wanted.add(f"{package.replace('.', '/')}/{path.relative_to(src).as_posix()}")
    return wanted


def test_every_subpackage_is_listed():
    """pyproject.toml lists its packages (rmb_judge.prompts lives outside rmb_judge/, where
    discovery cannot see it), so a new subpackage must be added there by hand."""
    listed = set(SETUPTOOLS["packages"])
    found = {
        ".".join(d.relative_to(ROOT).parts)
        for d in [ROOT / "rmb_judge", *(ROOT / "rmb_judge").rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    }
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert source_dir("rmb_judge.prompts") == ROOT / "prompts"
    assert {p.name for p in (ROOT / "prompts").glob("*.toml")}, "no template in prompts/"


# what a clean clone lacks: built from the work tree itself, setuptools would also ship
# whatever an earlier build left in build/lib
NOT_SOURCE = {".git", ".venv", "build", "dist", "cache", "runs", "out", "RMB_dataset"}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "rmb-judge"
    shutil.copytree(ROOT, src, ignore=lambda folder, names: [
        n for n in names
        if (Path(folder) == ROOT and n in NOT_SOURCE) or n.endswith((".egg-info", "_cache")) or n == "__pycache__"
    ])
    out = tmp_path_factory.mktemp("wheel")
    # no build isolation: this environment's setuptools (the test extra) builds it offline
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, env=clean_env(),
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("rmb_judge-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv holding only the wheel; the dependencies are read from this
    interpreter's site-packages (a path in a .pth file: that folder's own .pth files,
    such as the editable install's finder, are not run)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120, env=clean_env())
    python = venv / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300, env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, env=clean_env()).stdout.strip()
    Path(site, "_rmb_judge_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def run(venv: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = clean_env() | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = shipped_files()
    assert {"rmb_judge/prompts/rmb.toml", "rmb_judge/benchmarks/rmb_files.json"} <= wanted
    assert not wanted - names, (f"missing from the wheel: {sorted(wanted - names)}: "
                                "add a package-data glob for them in pyproject.toml")
    beside = sorted(n for n in names if not (n.startswith("rmb_judge/") or n.split("/")[0].endswith(".dist-info")))
    assert not beside, f"the wheel installs more than the rmb_judge package: {beside}"


def test_installed_wheel_loads_templates_from_package_data(installed, tmp_path):
    probe = (
        "import json, rmb_judge, rmb_judge.prompts, rmb_judge.templates as t;"
        "print(json.dumps([rmb_judge.__file__, str(t.PROMPTS_DIR), t.available(), t.load('rmb').sha256]))"
    )
    done = run(installed, installed / "bin" / "python", "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    package, prompts, names, sha = json.loads(done.stdout)
    assert Path(package).is_relative_to(installed) and not Path(package).is_relative_to(ROOT)
    assert Path(prompts) == Path(package).parent / "prompts"
    assert names == sorted(p.stem for p in (ROOT / "prompts").glob("*.toml"))
    assert sha == hashlib.sha256((ROOT / "prompts" / "rmb.toml").read_bytes()).hexdigest()


def test_installed_tool_runs_and_reports(installed, data_root, tmp_path):
    tool = installed / "bin" / "rmb-judge"
    assert run(installed, tool, "--help", cwd=tmp_path).returncode == 0
    out = tmp_path / "out"
    done = run(installed, tool, "run", "--judge", "mock", "--data", data_root, "--limit", 1,
               "--scenarios", "*Code*", "--out", out, "--cache", tmp_path / "cache", "--no-progress",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["template"] == "rmb"
    assert settings["template_sha256"] == hashlib.sha256((ROOT / "prompts" / "rmb.toml").read_bytes()).hexdigest()
    report = run(installed, tool, "report", out, "--markdown", tmp_path / "r.md", "--html", tmp_path / "r.html",
                 cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "r.md").stat().st_size and (tmp_path / "r.html").stat().st_size
    view = subprocess.Popen([str(tool), "view", str(out), "--port", "0", "--no-browser"], cwd=tmp_path,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert view.stdout is not None
        url = view.stdout.readline().split()[2]  # "rmb-judge view: http://127.0.0.1:PORT/ (...)"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for path in ("", "static/app.js", "static/app.css"):  # the page comes from the wheel's package data
            with opener.open(url + path, timeout=30) as response:
                assert response.status == 200 and response.read()
    finally:
        view.send_signal(signal.SIGINT)
        assert view.wait(timeout=30) == 0


def test_core_profile_pulls_no_torch(tmp_path):
    """What bin/rmb-judge installs for API and mock judges, resolved as into an empty
    virtualenv: no torch, no transformers."""
    target = subprocess.run(["bash", "-c", 'set -euo pipefail; source bin/_venv.sh; rmb_venv_target core'],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation",
         "--quiet", "--report", str(tmp_path / "report.json"), "-e", target],
        capture_output=True, text=True, timeout=240, env=clean_env(),
    )
    if done.returncode != 0:
        reach = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "pip"],
                               capture_output=True, text=True, timeout=120, env=clean_env())
        if reach.returncode != 0:
            pytest.skip(f"pip cannot reach the package index to resolve the core install: {reach.stderr.strip()[-300:]}")
        pytest.fail(f"pip could not resolve the core install:\n{done.stderr}")
    resolved = {item["metadata"]["name"].lower().replace("_", "-")
                for item in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {"rmb-judge", "openai", "anthropic", "rich"} <= resolved
    assert not resolved & HEAVY, f"the core install pulls {sorted(resolved & HEAVY)}"
    assert not [n for n in resolved if n.startswith("nvidia-")]


def test_a_hub_model_that_cannot_be_had_fails_before_torch_is_installed(tmp_path):
    """bin/rmb-judge --judge hf:ID on a checkout without the local extra: an ID the hub cannot
    give is one line before the torch install starts (nothing installed, no .venv made)."""
    import socket

    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "bin", clone / "bin")
    (clone / "rmb_judge").mkdir()
    # what bin/rmb-judge reads before installing: the model check, and the extras the judge
    # kinds and benchmarks declare (read off their modules' source, not imported)
    for name in ("hub.py", "extras.py", "judges.py"):
        shutil.copy(ROOT / "rmb_judge" / name, clone / "rmb_judge" / name)
    for folder in ("providers", "benchmarks"):
        shutil.copytree(ROOT / "rmb_judge" / folder, clone / "rmb_judge" / folder)
    shutil.copy(ROOT / "pyproject.toml", clone / "pyproject.toml")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        hub = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {k: v for k, v in clean_env().items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_ENDPOINT": hub, "HF_HUB_CACHE": str(tmp_path / "hub"), "PYTHON": sys.executable}
    command = [str(clone / "bin" / "rmb-judge"), "run", "--judge", "hf:someorg/some-reward-model", "--out", "x"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and not (clone / ".venv").exists()
    assert done.stderr.splitlines() == [
        f"rmb-judge: hf:someorg/some-reward-model: cannot reach {hub} to download it (Connection refused), and "
        f"it is not in the hub cache {tmp_path / 'hub'}; give a local folder, or download it where the hub can be "
        "reached; nothing was installed"]
    done = subprocess.run(command, env=env | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "HF_HUB_OFFLINE=1 forbids downloading it" in done.stderr
    assert not (clone / ".venv").exists()


def test_the_extras_a_command_line_needs_are_read_without_installing_anything():
    """bin/rmb-judge learns the extras from rmb_judge/extras.py, run by a bare Python (no site
    packages): what it reads off the modules is what the judge kind and benchmark registries
    say, and a command line asks for its judge kind's extra and its benchmark's."""
    from rmb_judge import benchmarks, extras
    from rmb_judge.judges import kinds

    assert extras.judge_extras() == {prefix: kind.extra for prefix, kind in kinds().items()}
    assert extras.benchmark_extras() == {b.name: b.extra for b in benchmarks.every()}
    for argv, expected in (
        (["run", "--judge", "hf:org/rm", "--benchmark", "judgebench"], "local\norg/rm\n"),
        (["estimate", "--judge=google:gemini-2.5-flash"], "google\n\n"),
        (["run", "--judge", "mock", "--out", "x"], "\n\n"),
        (["run", "--judge", "openai:gpt-4o", "--", "--judge", "hf:x"], "\n\n"),
    ):
        done = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "rmb_judge" / "extras.py"), *argv],
                              capture_output=True, text=True, timeout=60, check=True)
        assert done.stdout == expected, argv

