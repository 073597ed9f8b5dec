"""Can an `hf:` model be had? Asked once, in a second, before anything heavy happens: before
bin/rmb-judge installs torch for it, and before transformers tries the Hugging Face Hub (whose
client retries an unreachable hub for half a minute, a line per try, before giving up).

A local folder can always be had. A hub id can be had from the hub cache, or downloaded if the
hub answers at all (any HTTP answer: a private or gated model is the loader's to judge, with
the user's token). A hub that cannot be reached leaves the cache: the model then loads with
HF_HUB_OFFLINE=1, or, not being cached, fails in one line.

Standard library only: bin/rmb-judge runs this file with the system Python before any
virtualenv holds the project (`python3 rmb_judge/hub.py MODEL`, exit 3 and one line on
stderr when the model cannot be had).
"""

from __future__ import annotations

import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HUB_ID = re.compile(r"^[\w-][\w.-]*(/[\w-][\w.-]*)?$")  # org/name; not ./x or ~/x
HUB_TIMEOUT = 5.0  # seconds for the hub to answer at all
EXIT_UNAVAILABLE = 3  # cli.EXIT_FATAL: an unknown model or an unreachable endpoint


def availability(name: str, timeout: float = HUB_TIMEOUT) -> tuple[str | None, bool]:
    """(why `hf:name` cannot be had, or None; whether it must load from the hub cache alone,
    with HF_HUB_OFFLINE=1, since the hub cannot be reached)."""
    if Path(name).expanduser().exists():
        return None, False
    if not HUB_ID.match(name):
        return f"hf:{name}: model folder not found", False
    cached = _cached(name)
    if _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE"):
        if cached:
            return None, False
        return (f"hf:{name}: not a local folder, and HF_HUB_OFFLINE=1 forbids downloading it (it is not in "
                f"the hub cache {hub_cache()}); give a local folder, or unset HF_HUB_OFFLINE"), False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    reason = _unreachable(f"{endpoint}/api/models/{urllib.parse.quote(name)}", timeout)
    if reason is None:
        return None, False
    if cached:
        return None, True
    return (f"hf:{name}: cannot reach {endpoint} to download it ({reason}), and it is not in the hub cache "
            f"{hub_cache()}; give a local folder, or download it where the hub can be reached"), False


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded models (its own rules, without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _cached(name: str) -> bool:
    snapshots = hub_cache() / f"models--{name.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _truthy(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in ("1", "on", "yes", "true")


def _unreachable(url: str, timeout: float) -> str | None:
    """Why `url` cannot be reached (no HTTP answer at all), or None when it answered."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except urllib.error.URLError as error:
        return str(getattr(error.reason, "strerror", None) or error.reason)
    except (TimeoutError, OSError) as error:
        return str(error) or type(error).__name__


def main(argv: list[str]) -> int:
    problem, _ = availability(argv[0])
    if problem:
        print(f"rmb-judge: {problem}; nothing was installed", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
