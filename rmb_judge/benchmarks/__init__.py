"""The benchmarks rmb-judge measures judges on, one module each (see `benchmark.py` for what a
benchmark provides). RMB is the first; a second is a module here, its data manifest beside
it, and an entry below."""

from __future__ import annotations

import functools

from ..benchmark import Benchmark
from ..errors import UsageError

DEFAULT = "rmb"


@functools.cache
def get(name: str = DEFAULT) -> Benchmark:
    if name == "rmb":
        from .rmb import RMB

        return RMB()
    raise UsageError(f"unknown benchmark {name!r} (known: rmb)")
