import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("RMB_TEST_DATA", ROOT.parent / "shared" / "rmb" / "RMB_dataset"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "Pairwise_set").is_dir():
        pytest.fail(f"RMB test data not found at {DATA} (set RMB_TEST_DATA)")
    return DATA


from fake_api import fake_api, fake_api_thread  # noqa: E402,F401  (fixtures)
