"""`hf:` at scale: packed batches against one-at-a-time forwards, the fallback to padded
batches where packing is unsupported, and models sharded over a group of devices (placed
by accelerate's device map; on this CPU-only machine the second "GPU" is disk offload,
which runs the same accelerate hooks that move activations between GPUs)."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import RMB
from tiny_models import build_tiny_reward_model, one_at_a_time
from transformers import AutoConfig, AutoModelForSequenceClassification

from rmb_judge import cli, placement
from rmb_judge.errors import UsageError
from rmb_judge.local_rm import LocalRewardModel, ScoreItem, _Replica, plan_batches, run_batches
from rmb_judge.records import Selection

SCENARIOS = ["*/Helpfulness/Chat/Discussion", "*/Harmlessness/multi"]
MAX_LENGTH = 384


@pytest.fixture(scope="module")
def items(data_root: Path) -> list[ScoreItem]:
    records = RMB.load(data_root, Selection(scenarios=SCENARIOS, limit=6)).records
    return list(dict.fromkeys(
        ScoreItem(tuple((m.role, m.content) for m in r.conversation), answer.text)
        for r in records
        for answer in (r.chosen[0], *r.rejected)
    ))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return {
        architecture: build_tiny_reward_model(
            tmp_path_factory.mktemp(architecture), seed=4, num_layers=4, architecture=architecture
        )
        for architecture in ("llama", "qwen2", "bert")
    }


def rows_seen(rm: LocalRewardModel) -> list[tuple[int, ...]]:
    """The input shapes the base model is called with (a forward hook, nothing replaced)."""
    rm.load()
    shapes: list[tuple[int, ...]] = []
    rm._replicas[0].model.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs.get("input_ids", *args[:1]).shape)),
        with_kwargs=True,
    )
    return shapes


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_packed_rewards_equal_one_at_a_time(models, items, architecture):
    path = models[architecture]
    rm = LocalRewardModel(str(path), max_length=MAX_LENGTH, batch_tokens=2048, packing="on")
    shapes = rows_seen(rm)
    rewards = rm.score(items)
    expected = one_at_a_time(path, items, MAX_LENGTH)

    assert rm.batching == "packed batches without padding (sdpa, block-diagonal mask)"
    assert max(abs(r.value - value) for r, (value, _) in zip(rewards, expected)) < 1e-5
    assert [r.tokens for r in rewards] == [min(n, MAX_LENGTH) for _, n in expected]
    # One row per batch, no padding: the rows hold exactly the real tokens, several texts each.
    assert all(rows == 1 for rows, _ in shapes)
    assert sum(width for _, width in shapes) == sum(r.tokens for r in rewards)
    assert len(shapes) < len(items) / 4 and max(width for _, width in shapes) <= 2048
    # The same texts in padded batches give the same rewards.
    padded = LocalRewardModel(str(path), max_length=MAX_LENGTH, batch_tokens=2048, packing="off")
    assert max(abs(a.value - b.value) for a, b in zip(rewards, padded.score(items))) < 1e-5
    assert padded.batching.startswith("length-bucketed padded batches (sdpa attention; packing turned off")


def test_fallback_to_padded_batches_is_chosen_and_said(models, items):
    # An encoder with its own head cannot be packed even when asked: padded, and the reason said.
    bert = LocalRewardModel(str(models["bert"]), max_length=MAX_LENGTH, batch_tokens=2048, packing="on")
    shapes = rows_seen(bert)
    rewards = bert.score(items[:40])
    expected = one_at_a_time(models["bert"], items[:40], MAX_LENGTH)
    assert bert.batching == (
        "length-bucketed padded batches (sdpa attention; BertForSequenceClassification has its own "
        "classification head)"
    )
    assert max(abs(r.value - value) for r, (value, _) in zip(rewards, expected)) < 1e-5
    assert any(rows > 1 for rows, _ in shapes)
    assert bert.placement_line() == "cpu holds the whole model"
    # By default a CPU packs nothing: SDPA's dense block-diagonal mask is no saving there.
    llama = LocalRewardModel(str(models["llama"]))
    llama.load()
    assert not llama._replicas[0].packed
    assert "packing needs flash-attention's varlen kernels" in llama.batching
    with pytest.raises(UsageError, match="packing must be auto, on or off"):
        LocalRewardModel(str(models["llama"]), packing="yes")


def test_run_says_how_the_model_is_placed_and_batched(models, data_root, tmp_path, capsys):
    args = ["run", "--judge", f"hf:{models['llama']}", "--data", str(data_root), "--limit", "1",
            "--scenarios", SCENARIOS[0], "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
            "--no-progress"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert f"hf:{models['llama']}: cpu holds the whole model\n" in err
    assert f"hf:{models['llama']}: length-bucketed padded batches (sdpa attention; packing needs" in err
    assert cli.main(args) == 0  # all cached: nothing loads, nothing said
    assert "holds the whole model" not in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(5))
def test_packed_plan_sums_real_tokens_under_the_budget(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 3000) for _ in range(rng.randint(1, 400))]
    batches = plan_batches(lengths, 4096, packed=True)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert [lengths[i] for batch in batches for i in batch] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) == 1 or sum(lengths[i] for i in batch) <= 4096
    for before, after in zip(batches, batches[1:]):  # greedy: the next one did not fit
        assert sum(lengths[i] for i in before) + lengths[after[0]] > 4096
    padded = plan_batches(lengths, 4096)
    assert len(batches) <= len(padded)


def test_packed_out_of_memory_halves_by_real_tokens(models, items, monkeypatch):
    rm = LocalRewardModel(str(models["llama"]), max_length=256, batch_tokens=4096, packing="on")
    baseline = [r.value for r in rm.score(items)]
    base = rm._replicas[0].model.base_model
    original = type(base).forward
    widths: list[int] = []

    def forward_with_small_memory(self, input_ids=None, **kwargs):
        if input_ids.numel() > 1500:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        widths.append(input_ids.shape[1])
        return original(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(type(base), "forward", forward_with_small_memory)
    rewards = [r.value for r in rm.score(items)]
    assert max(abs(a - b) for a, b in zip(rewards, baseline)) < 1e-5
    assert rm._replicas[0].token_limit is not None and rm._replicas[0].token_limit <= 2048
    assert all(width <= rm._replicas[0].token_limit for width in widths)


# -- device groups ------------------------------------------------------------------------


def one_line_usage_error(call, match: str) -> None:
    with pytest.raises(UsageError, match=match) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_bad_device_groups_are_one_line(models, monkeypatch):
    path = str(models["llama"])
    one_line_usage_error(lambda: LocalRewardModel(path, devices=["cuda:0+cuda:1"]), r"cuda:0 is not available \(0 GPUs\)")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # names checked against 4 GPUs
    cases = [
        (["cuda:0+"], "'cuda:0\\+' has an empty device name"),
        (["cpu+cuda:0"], "give either cpu alone or CUDA devices"),
        (["gpu0"], "'gpu0': give either cpu alone"),
        (["cuda:x"], "'cuda:x' is not a device name"),
        (["cuda:0+cuda:7"], r"cuda:7 is not available \(4 GPUs\)"),
        (["cuda:0+cuda:1", "cuda:1"], "names a device twice"),
        (["cuda", "cuda:0"], "names a device twice"),
    ]
    for devices, match in cases:
        one_line_usage_error(lambda devices=devices: LocalRewardModel(path, devices=devices), match)
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed
    one_line_usage_error(lambda: LocalRewardModel(path, devices=["cuda:0+cuda:1"]), "needs the accelerate package")
    # Replicas alone need no accelerate: the names pass (scoring would need the GPUs).
    assert LocalRewardModel(path, devices=["cuda:0", "cuda:1"]).groups == [("cuda:0",), ("cuda:1",)]


def test_cli_device_group_on_a_machine_without_gpus(models, data_root, tmp_path, capsys):
    code = cli.main(["run", "--judge", f"hf:{models['llama']}", "--devices", "cuda:0+cuda:1",
                     "--data", str(data_root), "--limit", "1", "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].endswith("--devices: cuda:0 is not available (0 GPUs)")


GiB = 2**30


def test_automatic_groups_when_the_model_does_not_fit_on_one():
    gpus = [f"cuda:{i}" for i in range(8)]

    def needing(gib: int):
        return lambda group: 80 * len(group) * placement.FIT_SHARE >= gib  # 80 GiB free each

    assert placement.auto_groups(gpus, needing(16)) == [(d,) for d in gpus]
    # 140 GiB (a 70B model in bf16) needs 3 of these GPUs: two copies, four GPUs each.
    assert placement.auto_groups(gpus, needing(140)) == [tuple(gpus[:4]), tuple(gpus[4:])]
    assert placement.auto_groups(gpus, needing(400)) == [tuple(gpus)]
    assert placement.auto_groups(gpus[:3], needing(100)) == [tuple(gpus[:3])]
    assert placement.auto_groups(gpus, needing(700)) is None


def test_placement_over_two_gpus_keeps_layers_whole_and_in_order(models):
    config = AutoConfig.from_pretrained(models["llama"])
    meta = placement.empty_model(config, trust_remote_code=False)
    need = placement.weight_bytes(meta, torch.bfloat16)
    params = sum(p.numel() for p in meta.parameters()) * 2  # bf16, plus small buffers (rotary)
    assert params <= need <= params + sum(b.numel() * b.element_size() for b in meta.buffers())
    device_map = placement.plan_placement(meta, {0: need, 1: need}, torch.bfloat16)
    order = [name for name, _ in meta.named_modules()]
    assert list(device_map) == sorted(device_map, key=order.index)  # model order
    assert list(device_map.values()) == sorted(device_map.values()) and set(device_map.values()) == {0, 1}
    layers = [name for name in device_map if name.startswith("model.layers.")]
    assert layers == [f"model.layers.{i}" for i in range(4)]  # whole layers, each placed once
    line = placement.describe_placement(device_map)
    assert line.startswith("cuda:0: embed_tokens, layer") and "; cuda:1: layer" in line and line.endswith("score")
    assert "\n" not in line
    with pytest.raises(UsageError, match=r"bfloat16 weights do not fit on cuda:0\+cuda:1 .* add GPUs"):
        placement.plan_placement(meta, {0: need // 3, 1: need // 3}, torch.bfloat16)


def test_rewards_of_a_model_split_by_the_device_map_equal_one_device(models, items, tmp_path):
    """The planned map with its second device as disk offload: accelerate's hooks move weights
    and activations between the two parts, as they move activations between two GPUs."""
    path = models["llama"]
    meta = placement.empty_model(AutoConfig.from_pretrained(path), trust_remote_code=False)
    need = placement.weight_bytes(meta, torch.float32)
    device_map = placement.plan_placement(meta, {0: need, 1: need}, torch.float32)
    split = {name: "cpu" if place == 0 else "disk" for name, place in device_map.items()}
    assert set(split.values()) == {"cpu", "disk"}
    model = AutoModelForSequenceClassification.from_pretrained(
        path, device_map=split, offload_folder=tmp_path
    ).eval()
    assert model.hf_device_map == split
    for packing in ("on", "off"):
        rm = LocalRewardModel(str(path), max_length=MAX_LENGTH, batch_tokens=2048, packing=packing)
        single = [r.value for r in rm.score(items)]
        model.config.pad_token_id = rm.pad_token_id
        replica = _Replica(model, "cpu+disk", rm)
        assert replica.packed == (packing == "on")
        encoded = rm.tokenizer([rm.render(i) for i in items], add_special_tokens=False)["input_ids"]
        sequences = [ids[-MAX_LENGTH:] for ids in encoded]
        batches = plan_batches([len(s) for s in sequences], 2048, packed=replica.packed)
        values = run_batches([replica], sequences, batches, None)
        assert max(abs(a - b) for a, b in zip(values, single)) < 1e-5


def test_placements_planned_from_the_gpus_free_memory(models, monkeypatch):
    """The planning a GPU machine runs before loading weights, on four pretend GPUs (torch's
    device count and free memory faked; nothing is loaded)."""
    path = str(models["llama"])
    config = AutoConfig.from_pretrained(path)
    need = placement.weight_bytes(placement.empty_model(config, trust_remote_code=False), torch.bfloat16)
    free = int(need * 0.95)  # the weights need two of these GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 2 * free))

    plans = LocalRewardModel(path)._placements()  # no --devices: two copies of two GPUs
    assert [group for group, _ in plans] == [("cuda:0", "cuda:1"), ("cuda:2", "cuda:3")]
    assert [set(device_map.values()) for _, device_map in plans] == [{0, 1}, {2, 3}]
    (group, device_map), = LocalRewardModel(path, devices=["cuda:1+cuda:3"])._placements()
    assert group == ("cuda:1", "cuda:3") and set(device_map.values()) == {1, 3}
    one_line_usage_error(
        LocalRewardModel(path, devices=["cuda:0", "cuda:1"])._placements,
        r"bfloat16 weights do not fit on cuda:0 \(0.0 GiB free\); shard the model over several GPUs, "
        r"e.g. --devices cuda:0\+cuda:1$",
    )
    # One GPU the weights would all but fill, and nothing to group it with: it tries alone.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (need + 1, 2 * need))
    assert LocalRewardModel(path)._placements() == [(("cuda:0",), None)]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (need // 8, need))
    one_line_usage_error(
        LocalRewardModel(path).load, rf"^hf:{path}: about .* do not fit on the 4 visible GPUs \(0.0 GiB free"
    )
    one_line_usage_error(
        LocalRewardModel(path, devices=["cuda:0+cuda:1"]).load, rf"^hf:{path}: .* cuda:0\+cuda:1 .* add GPUs"
    )


def test_a_model_that_mixes_packed_texts_is_caught_by_the_probe(models):
    """An attention that ignores the block-diagonal mask (registered through transformers'
    public attention interface) lets packed texts see each other: the load-time probe
    notices and the model scores in padded batches instead."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    def causal_over_the_whole_row(module, query, key, value, attention_mask, **kwargs):
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)

    AttentionInterface.register("whole_row", causal_over_the_whole_row)
    AttentionMaskInterface.register("whole_row", sdpa_mask)
    path = models["llama"]
    rm = LocalRewardModel(str(path), packing="on")
    leaky = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="whole_row").eval()
    replica = _Replica(leaky, "cpu", rm)
    assert not replica.packed
    assert replica.batching.startswith("length-bucketed padded batches (whole_row attention; packed texts scored ")
    assert replica.batching.endswith("the model does not keep packed texts apart)")
    sound = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
    assert _Replica(sound, "cpu", rm).packed  # eager attention reads the block-diagonal mask


MODEL_FAILING_ON_META = '''
from transformers import LlamaForSequenceClassification

class NeedsRealWeights(LlamaForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        self.scale = float(self.score.weight.detach().abs().sum())  # reads the weights: fails on meta
'''


def test_a_model_that_cannot_build_empty(models, tmp_path, monkeypatch):
    """Remote code that reads its weights while building cannot be sized on the meta device:
    a group is one clear line; copies on single GPUs skip the sizing and load as before."""
    path = Path(shutil.copytree(models["llama"], tmp_path / "custom"))
    (path / "modeling_needs.py").write_text(MODEL_FAILING_ON_META)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_needs.NeedsRealWeights"}
    (path / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2**40, 2**40))
    grouped = LocalRewardModel(str(path), devices=["cuda:0+cuda:1"], trust_remote_code=True)
    one_line_usage_error(grouped._placements, "cannot plan a device map .*did not build empty")
    copies = LocalRewardModel(str(path), trust_remote_code=True)._placements()
    assert copies == [(("cuda:0",), None), (("cuda:1",), None)]
