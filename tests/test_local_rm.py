"""The local reward-model backend against plain one-at-a-time forwards, on real RMB records."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from conftest import RMB
from tiny_models import build_tiny_reward_model, one_at_a_time
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaForSequenceClassification,
)

from rmb_judge.errors import RmbJudgeError
from rmb_judge.local_rm import LocalRewardModel, ScoreItem, _Replica, plan_batches, run_batches
from rmb_judge.records import Selection

SCENARIOS = ["*/Helpfulness/Chat/Discussion", "*/Harmlessness/multi", "*/Helpfulness/Code/Documentation"]


@pytest.fixture(scope="module")
def items(data_root: Path) -> list[ScoreItem]:
    """~100 unique answers from real RMB records, multi-turn ones included."""
    records = RMB.load(data_root, Selection(scenarios=SCENARIOS, limit=10)).records
    unique = dict.fromkeys(
        ScoreItem(tuple((m.role, m.content) for m in r.conversation), answer.text)
        for r in records
        for answer in (r.chosen[0], *r.rejected)
    )
    assert any(len(item.conversation) > 1 for item in unique)
    return list(unique)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("rm"), seed=1, max_position_embeddings=1024)


def test_rewards_equal_one_at_a_time_forward(model_path, items):
    rm = LocalRewardModel(str(model_path), batch_tokens=4096)
    assert rm.max_length == 1024 and rm.devices == ["cpu"] and rm.gpu_memory() is None
    progress: list[tuple[int, int]] = []
    rewards = rm.score(items, on_progress=lambda answers, tokens: progress.append((answers, tokens)))
    assert rm._replicas[0].model.config._attn_implementation == "sdpa"
    expected = one_at_a_time(model_path, items, 1024)

    assert len(items) >= 90
    assert max(abs(r.value - value) for r, (value, _) in zip(rewards, expected)) < 1e-4
    assert [r.truncated for r in rewards] == [n > 1024 for _, n in expected]
    assert [r.tokens for r in rewards] == [min(n, 1024) for _, n in expected]
    assert 0 < sum(r.truncated for r in rewards) < len(rewards)
    # Batched (fewer progress calls than items), cumulative, ending at the totals.
    assert 1 < len(progress) < len(items)
    assert progress == sorted(progress)
    assert progress[-1] == (len(items), sum(r.tokens for r in rewards))


def test_left_truncation_keeps_the_end(model_path, items):
    rm = LocalRewardModel(str(model_path), max_length=64)
    short = ScoreItem((("user", "Hi"),), "Hello!")
    long = items[0]
    rewards = rm.score([short, long])
    assert rewards[0].truncated is False and rewards[0].tokens < 64
    assert rewards[1].truncated is True and rewards[1].tokens == 64

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path).eval()
    ids = tokenizer(rm.render(long), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        end = model(torch.tensor([ids[-64:]])).logits[0, 0].item()
        start = model(torch.tensor([ids[:64]])).logits[0, 0].item()
    assert rewards[1].value == pytest.approx(end, abs=1e-4)
    assert abs(start - end) > 1e-3


def test_out_of_memory_halves_the_batch_and_remembers(model_path, items, monkeypatch):
    rm = LocalRewardModel(str(model_path), max_length=256, batch_tokens=4096)
    baseline = rm.score(items)

    original = LlamaForSequenceClassification.forward
    shapes: list[tuple[int, int]] = []
    ooms = []

    def forward_with_small_memory(self, input_ids=None, **kwargs):
        if input_ids.numel() > 1000:
            ooms.append(tuple(input_ids.shape))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        shapes.append(tuple(input_ids.shape))
        return original(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(LlamaForSequenceClassification, "forward", forward_with_small_memory)
    rewards = rm.score(items)
    assert [r.tokens for r in rewards] == [r.tokens for r in baseline]
    assert max(abs(a.value - b.value) for a, b in zip(rewards, baseline)) < 1e-4
    # 16x256 fails, then 8x256, then 4x256; later batches are split before they are tried.
    assert ooms == [(16, 256), (8, 256), (4, 256)]
    assert len(shapes) > 10 and all(rows * width <= 512 for rows, width in shapes)


def test_out_of_memory_on_one_input_is_one_clear_line(model_path, items, monkeypatch):
    rm = LocalRewardModel(str(model_path), max_length=256)

    def no_memory(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(LlamaForSequenceClassification, "forward", no_memory)
    with pytest.raises(RmbJudgeError, match=r"out of GPU memory .* one input of 256 tokens") as caught:
        rm.score(items[:3])
    assert "\n" not in str(caught.value) and str(model_path) in str(caught.value)


@pytest.mark.parametrize("seed", range(5))
def test_plan_batches_packs_sorted_lengths_under_the_budget(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 3000) for _ in range(rng.randint(1, 400))]
    batches = plan_batches(lengths, 4096)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths, reverse=True)
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * width <= 4096
    # Greedy: the next item would not have fit in the batch before it.
    for before, _ in zip(batches, batches[1:]):
        assert (len(before) + 1) * lengths[before[0]] > 4096


def test_two_replicas_share_the_work_and_surface_errors(model_path, items):
    rm = LocalRewardModel(str(model_path), max_length=256, batch_tokens=2048)
    single = [r.value for r in rm.score(items)]
    model = AutoModelForSequenceClassification.from_pretrained(model_path).eval()
    model.config.pad_token_id = rm.pad_token_id
    replicas = [_Replica(model, "cpu", rm), _Replica(model, "cpu", rm)]
    encoded = rm.tokenizer([rm.render(i) for i in items], add_special_tokens=False)["input_ids"]
    sequences = [ids[-256:] for ids in encoded]
    values = run_batches(replicas, sequences, plan_batches([len(s) for s in sequences], 2048), None)
    assert max(abs(a - b) for a, b in zip(values, single)) < 1e-4

    class Broken(torch.nn.Module):
        def forward(self, **kwargs):
            raise RuntimeError("device fell over")

    replicas[1].model = Broken()
    with pytest.raises(RuntimeError, match="device fell over"):
        run_batches(replicas, sequences, plan_batches([len(s) for s in sequences], 512), None)


def test_model_without_pad_token_scores_in_batches(tmp_path, items):
    path = build_tiny_reward_model(tmp_path, seed=2, max_position_embeddings=512, pad_token=False)
    assert json.loads((path / "config.json").read_text())["pad_token_id"] is None
    rm = LocalRewardModel(str(path), batch_tokens=8192)
    assert rm.pad_token_id == rm.tokenizer.eos_token_id
    subset = items[:24]
    rewards = rm.score(subset)
    expected = one_at_a_time(path, subset, 512)
    assert max(abs(r.value - value) for r, (value, _) in zip(rewards, expected)) < 1e-4


CUSTOM_MODEL = '''
from dataclasses import dataclass
import torch
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.utils import ModelOutput

@dataclass
class ScoreOutput(ModelOutput):
    logits: torch.Tensor = None
    score: torch.Tensor = None

class TinyScoreRM(LlamaPreTrainedModel):
    """ArmoRM-like: several heads in `logits`, the reward in `score`; pools via the mask."""
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.heads = torch.nn.Linear(config.hidden_size, 3, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        last = attention_mask.sum(-1) - 1
        logits = self.heads(hidden[torch.arange(len(input_ids)), last])
        return ScoreOutput(logits=logits, score=2 * logits[:, 1] - logits[:, 2])
'''


@pytest.fixture(scope="module")
def custom_path(tmp_path_factory) -> Path:
    """A model with its own code (auto_map), loadable only with trust_remote_code."""
    path = build_tiny_reward_model(tmp_path_factory.mktemp("custom"), seed=3, max_position_embeddings=512)
    (path / "modeling_tiny_score.py").write_text(CUSTOM_MODEL)
    spec = importlib.util.spec_from_file_location("modeling_tiny_score", path / "modeling_tiny_score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = AutoModelForSequenceClassification.from_pretrained(path).config
    config.num_labels = 3
    config.auto_map = {"AutoModelForSequenceClassification": "modeling_tiny_score.TinyScoreRM"}
    torch.manual_seed(3)
    model = module.TinyScoreRM(config)
    with torch.no_grad():
        model.heads.weight.normal_(0, 0.2)
    model.save_pretrained(path)
    return path


def test_custom_output_field_with_remote_code(custom_path, items):
    rm = LocalRewardModel(str(custom_path), trust_remote_code=True, reward_field="score", batch_tokens=4096)
    subset = items[:30]
    rewards = rm.score(subset)
    tokenizer = AutoTokenizer.from_pretrained(custom_path)
    model = AutoModelForSequenceClassification.from_pretrained(custom_path, trust_remote_code=True).eval()
    assert type(model).__name__ == "TinyScoreRM"
    for reward, item in zip(rewards, subset):
        ids = tokenizer(rm.render(item), add_special_tokens=False)["input_ids"][-512:]
        with torch.no_grad():
            expected = model(torch.tensor([ids])).score[0].item()
        assert reward.value == pytest.approx(expected, abs=1e-4)
    assert "reward=score" in rm.identity()


def test_custom_code_needs_trust_and_a_reward_field(custom_path):
    with pytest.raises(RmbJudgeError, match="trust_remote_code"):
        LocalRewardModel(str(custom_path))
    with pytest.raises(RmbJudgeError, match="3 labels.*reward_field"):
        LocalRewardModel(str(custom_path), trust_remote_code=True)


def edited_copy(source: Path, target: Path, **config_changes) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(config_changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_loading_errors_are_one_line_naming_the_model(model_path, tmp_path):
    causal_lm = edited_copy(model_path, tmp_path / "causal", architectures=["LlamaForCausalLM"])
    two_labels = edited_copy(model_path, tmp_path / "two", id2label={"0": "bad", "1": "good"})
    no_template = edited_copy(model_path, tmp_path / "plain")
    (no_template / "chat_template.jinja").unlink()
    no_head = edited_copy(model_path, tmp_path / "nohead")
    base = AutoModelForSequenceClassification.from_pretrained(model_path).model
    base.save_pretrained(tmp_path / "base")
    shutil.copy(tmp_path / "base" / "model.safetensors", no_head / "model.safetensors")

    cases = [
        (tmp_path / "missing", "model folder not found"),
        (causal_lm, "not a sequence classifier"),
        (two_labels, "2 labels"),
        (no_template, "no chat template"),
    ]
    for path, message in cases:
        with pytest.raises(RmbJudgeError, match=message) as caught:
            LocalRewardModel(str(path))
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    # A classifier config over weights without the score head: caught when the weights load.
    rm = LocalRewardModel(str(no_head))
    with pytest.raises(RmbJudgeError, match=r"lacks weights .*score\.weight") as caught:
        rm.score([ScoreItem((("user", "Hi"),), "Hello")])
    assert "\n" not in str(caught.value)


def test_identity_hashes_file_contents(model_path, tmp_path):
    copy = shutil.copytree(model_path, tmp_path / "copy")
    identity = LocalRewardModel(str(copy)).identity()
    assert identity.startswith(f"hf:{copy.resolve()}@sha256:")
    assert "dtype=float32" in identity and "max_length=1024" in identity
    assert LocalRewardModel(str(copy), max_length=100).identity() != identity

    # Same size, same mtime, one byte of the weights changed: a different model.
    weights = copy / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size
    assert LocalRewardModel(str(copy)).identity() != identity


def test_hub_id_identity_is_the_cached_commit(model_path, tmp_path, monkeypatch, items):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--reward"
    shutil.copytree(model_path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    rm = LocalRewardModel("tiny/reward")
    assert rm.identity() == f"hf:tiny/reward@{commit} max_length=1024 dtype=float32 reward=logits"
    local = LocalRewardModel(str(model_path))
    assert [r.value for r in rm.score(items[:5])] == pytest.approx([r.value for r in local.score(items[:5])])
