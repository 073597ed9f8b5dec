"""The benchmarks rmb-judge measures judges on, one module each (see `benchmark.py` for what a
benchmark provides). Every module of this package is imported when the registry is first
asked, and registers its benchmark class with `@register`; nothing outside this package
names one. RMB is the default."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from ..benchmark import Benchmark
from ..errors import UsageError

DEFAULT = "rmb"
_CLASSES: dict[str, type[Benchmark]] = {}


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make the benchmark known by its `name`."""
    if _CLASSES.get(cls.name, cls) is not cls:
        raise RuntimeError(f"two benchmarks named {cls.name!r}: {_CLASSES[cls.name].__module__}, {cls.__module__}")
    _CLASSES[cls.name] = cls
    return cls


@functools.cache
def _discover() -> None:
    """Import every module of this package (each registers its benchmark), once."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def names() -> tuple[str, ...]:
    """Every benchmark's name, the default first."""
    _discover()
    return tuple(sorted(_CLASSES, key=lambda name: (name != DEFAULT, name)))


@functools.cache
def get(name: str = DEFAULT) -> Benchmark:
    _discover()
    found = _CLASSES.get(name)
    if found is None:
        raise UsageError(f"unknown benchmark {name!r} (known: {', '.join(names())})")
    return found()


def every() -> list[Benchmark]:
    return [get(name) for name in names()]
