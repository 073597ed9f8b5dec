"""The hosted judge providers, one module each. A module defines one `Provider` subclass
whose `name` is its spec prefix (`--judge NAME:MODEL`); dropping a new module here is all it
takes to add a provider (plus its wire format in the test suite's fake server). Modules are
found and imported only when a spec is resolved, and they import their SDKs only when a
request is about to be made.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from .base import Provider

NOT_PROVIDERS = {"base"}


@functools.cache
def registry() -> dict[str, type[Provider]]:
    """Every provider class by its spec prefix."""
    found: dict[str, type[Provider]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name in NOT_PROVIDERS:
            continue
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and issubclass(value, Provider) and value.__module__ == loaded.__name__:
                found[value.name] = value
    return found
