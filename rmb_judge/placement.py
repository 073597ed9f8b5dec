"""Where a local reward model's weights go: a whole copy per device, or one copy sharded
over a group of GPUs (`--devices cuda:0+cuda:1`) through accelerate's device map.

A comma separates replicas, a plus joins the GPUs of one replica: `cuda:0,cuda:1` is two
copies, `cuda:0+cuda:1` one copy over two GPUs, `cuda:0+cuda:1,cuda:2+cuda:3` two copies of
two GPUs each. The placement is planned on an empty (meta) model from the config, so a
model that cannot fit is an error before any weights are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch

from .errors import UsageError

Group = tuple[str, ...]  # the devices holding one model copy
# Share of a GPU's free memory the weights may fill when we choose the placement ourselves;
# the rest holds activations of a batch.
FIT_SHARE = 0.85
LAYER = re.compile(r"^(.*\.)?layers?\.(\d+)$|^(.*\.)?h\.(\d+)$")


def parse_groups(entries: Sequence[str]) -> list[Group]:
    """`["cuda:0+cuda:1", "cuda:2+cuda:3"]` -> two groups; each name checked, one line per error."""
    groups = [tuple(part.strip() for part in entry.split("+")) for entry in entries]
    if groups == [("cpu",)]:
        return groups
    for entry, group in zip(entries, groups, strict=True):
        for device in group:
            if not device:
                raise UsageError(f"--devices: {entry!r} has an empty device name (write cuda:0+cuda:1)")
            if not device.startswith("cuda"):
                raise UsageError(
                    f"--devices: {device!r}: give either cpu alone or CUDA devices (cuda:0,cuda:1 for "
                    "a copy on each, cuda:0+cuda:1 for one copy sharded over both)"
                )
    named = [device for group in groups for device in group]
    if any(len(group) > 1 for group in groups):
        require_accelerate()
    count = torch.cuda.device_count()
    for device in named:
        try:
            parsed = torch.device(device)
        except RuntimeError:
            raise UsageError(f"--devices: {device!r} is not a device name") from None
        if (parsed.index or 0) >= count:
            raise UsageError(f"--devices: {device} is not available ({count} GPUs)")
    canonical = [str(torch.device(d)) if torch.device(d).index is not None else "cuda:0" for d in named]
    if len(set(canonical)) != len(canonical):
        raise UsageError(f"--devices: {','.join(entries)} names a device twice")
    return groups


def require_accelerate() -> None:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise UsageError(
            "--devices: sharding one model over several GPUs needs the accelerate package "
            "(pip install accelerate)"
        ) from None


def auto_groups(devices: Sequence[str], fits: Callable[[Group], bool]) -> list[Group] | None:
    """Devices in groups of consecutive GPUs, as many copies as fit: the fewest GPUs that
    hold the model (`fits`) set the number of copies, and each copy then takes an equal
    share of the GPUs (more room for activations). One device each when the model fits on
    one; None when all of them together cannot hold it."""

    def split(size: int) -> list[Group]:
        return [tuple(devices[i : i + size]) for i in range(0, len(devices) - size + 1, size)]

    for size in range(1, len(devices) + 1):
        if all(fits(group) for group in split(size)):
            wider = split(len(devices) // len(split(size)))
            return wider if all(fits(group) for group in wider) else split(size)
    return None


def empty_model(config, trust_remote_code: bool) -> torch.nn.Module:
    """The classifier's modules on the meta device: sizes and layer classes, no memory."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForSequenceClassification

    with init_empty_weights():
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)


def weight_bytes(model: torch.nn.Module, dtype: torch.dtype) -> int:
    from accelerate.utils import compute_module_sizes

    return int(compute_module_sizes(model, dtype=dtype)[""])


def plan_placement(
    model: torch.nn.Module, memory: Mapping[int, int], dtype: torch.dtype
) -> dict[str, int]:
    """accelerate's balanced device map of `model` over GPU indices with `memory` bytes each.

    Whole decoder layers stay on one device; a model that does not fit is a UsageError.
    """
    from accelerate.utils import get_balanced_memory, infer_auto_device_map

    no_split = list(getattr(model, "_no_split_modules", None) or [])
    balanced = get_balanced_memory(model, max_memory=dict(memory), no_split_module_classes=no_split, dtype=dtype)
    device_map = infer_auto_device_map(model, max_memory=balanced, no_split_module_classes=no_split, dtype=dtype)
    if any(not isinstance(place, int) for place in device_map.values()):
        need = weight_bytes(model, dtype)
        group = "+".join(f"cuda:{i}" for i in memory)
        raise UsageError(
            f"about {need / 2**30:.1f} GiB of {str(dtype).removeprefix('torch.')} weights do not fit "
            f"on {group} ({sum(memory.values()) / 2**30:.1f} GiB usable); add GPUs to the group"
        )
    return device_map


def describe_placement(device_map: Mapping[str, int | str]) -> str:
    """One line: which modules each device holds, decoder layers as ranges
    ("cuda:0: embed_tokens, layers 0-15; cuda:1: layers 16-31, norm, score")."""
    parts = []
    for device in dict.fromkeys(device_map.values()):
        names: list[str] = []
        layers: list[int] = []
        for module, place in device_map.items():
            if place != device:
                continue
            match = LAYER.match(module)
            if match:
                layers.append(int(match.group(2) or match.group(4)))
                if "\0layers" not in names:
                    names.append("\0layers")
            else:
                names.append(module.rsplit(".", 1)[-1] or module)
        shown = [_layer_ranges(layers) if name == "\0layers" else name for name in names]
        label = f"cuda:{device}" if isinstance(device, int) else device
        parts.append(f"{label}: {', '.join(shown)}")
    return "; ".join(parts)


def _layer_ranges(layers: list[int]) -> str:
    ranges: list[list[int]] = []
    for index in sorted(layers):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    word = "layer" if len(layers) == 1 else "layers"
    return f"{word} " + ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)
