import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("RMB_TEST_DATA", ROOT.parent / "shared" / "rmb" / "RMB_dataset"))


# JudgeBench's data files: $JUDGEBENCH_TEST_DATA, else beside RMB's in the shared copy
JUDGEBENCH_DATA = Path(os.environ.get("JUDGEBENCH_TEST_DATA", DATA.parent.parent / "judgebench" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "Pairwise_set").is_dir():
        pytest.fail(f"RMB test data not found at {DATA} (set RMB_TEST_DATA)")
    return DATA


@pytest.fixture(scope="session")
def judgebench_data() -> Path:
    if not any(JUDGEBENCH_DATA.glob("dataset=judgebench,*.jsonl")):
        pytest.fail(f"JudgeBench test data not found at {JUDGEBENCH_DATA} (set JUDGEBENCH_TEST_DATA)")
    return JUDGEBENCH_DATA


from fake_api import fake_api, fake_api_thread  # noqa: E402,F401  (fixtures)


def make_config(**kw):
    """A RunConfig from the flat keywords tests find convenient: each goes to the Task or
    the Execution that has it (a judge may be given as its spec string)."""
    from dataclasses import fields

    from rmb_judge.config import Execution, RunConfig, Task
    from rmb_judge.judges import parse_spec

    if isinstance(kw.get("judge"), str):
        kw["judge"] = parse_spec(kw["judge"])
    for name in ("base_urls", "equivalent_endpoints", "argv"):
        if name in kw:
            kw[name] = tuple(kw[name])
    task_fields = {f.name for f in fields(Task)}
    task = Task(**{k: v for k, v in kw.items() if k in task_fields})
    return RunConfig(task, Execution(**{k: v for k, v in kw.items() if k not in task_fields}))


from rmb_judge.benchmarks import get as _benchmark  # noqa: E402

RMB = _benchmark("rmb")  # the benchmark the tests load data through


def present_files() -> list[str]:
    """The manifest's files this data copy holds: 95 in the shared copy, 98 after `data fetch`.
    Tests count from these so they hold on either."""
    lacking = set(RMB.manifest().missing(DATA))
    return [e.path for e in RMB.manifest().files if e.path not in lacking]


@pytest.fixture(scope="session")
def judged_runs(tmp_path_factory, data_root):
    """Two run folders judged through the fake server, for the `view` tests (tests/view_runs.py).
    Their tests share one xdist group, so a worker builds these once."""
    from view_runs import make_runs

    return make_runs(tmp_path_factory.mktemp("judged"), data_root)
