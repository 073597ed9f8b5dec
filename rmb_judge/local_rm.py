"""Local scalar reward models (`hf:PATH_OR_ID` judges): transformers sequence classifiers.

RMB compares every answer of a record against the same conversation, so the caller hands
us each unique (conversation, answer) once. We render and tokenize them all up front and
sort by length. Where the attention kernel takes variable-length sequences (flash-attention
varlen), a batch is the sequences laid end to end in one row, no padding at all; elsewhere
batches of similar lengths are right-padded under a padded-token budget. One model copy per
device, or per group of GPUs sharing a model too big for one (see placement.py), works
through the batches in parallel.

The model itself loads on the first `score()`, so a fully cached run (or `identity()` for
a cache lookup) needs no GPU and no weights in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from jinja2 import TemplateError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from . import placement
from .errors import RmbJudgeError, UsageError
from .hub import HUB_ID

ProgressCallback = Callable[[int, int], None]

# Files that decide what a local model computes: weights, configs, tokenizer, custom code.
IDENTITY_SUFFIXES = {
    ".safetensors", ".bin", ".pt", ".pth", ".json", ".py", ".model", ".txt", ".jinja", ".tiktoken"
}
# On CPU bigger batches gain no parallelism and fall out of cache: measured ~25% slower at 16384.
CPU_BATCH_TOKENS = 4096
SNAPSHOT = re.compile(r"snapshots/([0-9a-f]{40})/")
# Attention kernels that take packed sequences without a dense mask (cu_seq_lens).
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")


@dataclass(frozen=True)
class ScoreItem:
    conversation: tuple[tuple[str, str], ...]  # (role, content)
    answer: str


@dataclass
class Reward:
    value: float
    truncated: bool  # the rendered text was longer than max_length and lost its beginning
    tokens: int  # tokens fed to the model (after truncation)


def render_chat(tokenizer, item: ScoreItem, judge: str) -> str:
    """The conversation plus the answer through the tokenizer's chat template, as text (the
    template owns the special tokens). Shared by `hf:` and `vllm-rm:` so both score the same
    input for the same answer."""
    messages = [{"role": role, "content": content} for role, content in item.conversation]
    messages.append({"role": "assistant", "content": item.answer})
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False)
    except TemplateError as exc:
        raise RmbJudgeError(f"{judge}: the chat template refused a conversation: {exc}") from None


# Two texts scored packed and alone before a model is trusted with packed batches (user and
# assistant turns only: some chat templates refuse a system turn).
PROBE = (
    ScoreItem((("user", "Name a prime number between 10 and 20."),), "13 is prime."),
    ScoreItem((("user", "What is the capital of France? Answer briefly."),), "Paris."),
)


class LocalRewardModel:
    """A one-label transformers sequence classifier scoring chat-templated answers."""

    def __init__(
        self,
        name_or_path: str,
        *,
        max_length: int | None = None,
        batch_tokens: int = 16384,
        devices: list[str] | None = None,
        trust_remote_code: bool = False,
        reward_field: str | None = None,
        revision: str | None = None,
        packing: str = "auto",
    ):
        """`devices`: entries of `--devices`, a `+` joining the GPUs that share one copy
        (default: every GPU, grouped only if the model does not fit on one). `packing`:
        "auto" packs where the attention is varlen, "on" packs with any attention of a
        causal decoder (SDPA builds a block-diagonal mask), "off" always pads."""
        self.name = name_or_path
        if packing not in ("auto", "on", "off"):
            raise UsageError(f"packing must be auto, on or off, got {packing!r}")
        self.packing = packing
        self.automatic_groups = devices is None
        self.groups = placement.parse_groups(devices or default_devices())
        self.devices = [device for group in self.groups for device in group]
        on_cpu = self.devices == ["cpu"]
        self.dtype = torch.float32 if on_cpu else torch.bfloat16  # the dtype changes rewards
        if batch_tokens < 1:
            raise UsageError(f"batch_tokens must be at least 1, got {batch_tokens}")
        self.batch_tokens = min(batch_tokens, CPU_BATCH_TOKENS) if on_cpu else batch_tokens
        self.trust_remote_code = trust_remote_code
        self.reward_field = reward_field
        local = Path(name_or_path).expanduser()
        if local.exists():
            self.path: Path | None = local.resolve()
        elif HUB_ID.match(name_or_path):
            self.path = None
        else:
            raise RmbJudgeError(f"hf:{name_or_path}: model folder not found")
        self.source = str(self.path) if self.path else name_or_path
        self.revision = revision
        self.config = self._load(AutoConfig.from_pretrained, "config")
        if self.path is None:
            self.revision = hub_commit(name_or_path, revision) or revision
        self._check_config()
        self.tokenizer = self._load(AutoTokenizer.from_pretrained, "tokenizer")
        if not self.tokenizer.chat_template:
            raise RmbJudgeError(f"hf:{self.name}: the tokenizer has no chat template")
        self.pad_token_id = self._pad_token_id()
        self.max_length = max_length or self._model_limit()
        if self.max_length < 2:
            raise UsageError(f"max_length must be at least 2, got {self.max_length}")
        self._replicas: list[_Replica] = []
        self.batching = ""  # how batches are formed, and why
        self.varlen_refused: str | None = None  # why flash-attention did not load the model

    # -- loading ---------------------------------------------------------------------------

    def _load(self, loader: Callable, what: str, **kwargs):
        try:
            return loader(
                self.source,
                revision=self.revision,
                trust_remote_code=self.trust_remote_code,
                **kwargs,
            )
        except (OSError, ValueError, KeyError, ImportError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RmbJudgeError(f"hf:{self.name}: cannot load the {what}: {reason}") from None

    def _check_config(self) -> None:
        architectures = list(getattr(self.config, "architectures", None) or [])
        auto_map = getattr(self.config, "auto_map", None) or {}
        custom = "AutoModelForSequenceClassification" in auto_map
        if custom and not self.trust_remote_code:
            raise RmbJudgeError(
                f"hf:{self.name}: the model ships its own code; allow it with trust_remote_code"
            )
        if not custom and not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise RmbJudgeError(
                f"hf:{self.name}: not a sequence classifier (architectures: "
                f"{', '.join(architectures) or 'none'}); a reward model needs a one-label "
                "*ForSequenceClassification head"
            )
        if self.reward_field is None and self.config.num_labels != 1:
            raise RmbJudgeError(
                f"hf:{self.name}: the model has {self.config.num_labels} labels, a scalar reward "
                "model has one (name the output holding the reward with reward_field)"
            )

    def _pad_token_id(self) -> int:
        """The model's pad token (its pooling looks for it), else the tokenizer's, else EOS as
        in RMB's reference code. Old Llama configs say -1: not a token, so skipped."""
        text_config = self.config.get_text_config()
        vocab_size = getattr(text_config, "vocab_size", None) or len(self.tokenizer)
        for candidate in (
            getattr(text_config, "pad_token_id", None),
            self.tokenizer.pad_token_id,
            self.tokenizer.eos_token_id,
        ):
            if isinstance(candidate, int) and 0 <= candidate < vocab_size:
                return candidate
        raise RmbJudgeError(f"hf:{self.name}: the tokenizer has neither a pad nor an EOS token")

    def _model_limit(self) -> int:
        limit = getattr(self.config.get_text_config(), "max_position_embeddings", None)
        if not limit and 0 < (self.tokenizer.model_max_length or 0) < 10**7:
            limit = self.tokenizer.model_max_length
        if not limit:
            raise UsageError(f"hf:{self.name}: the model states no length limit; give --max-length")
        return int(limit)

    def _replicas_loaded(self) -> list[_Replica]:
        if not self._replicas:
            try:
                self._replicas = [self._load_replica(group, maps) for group, maps in self._placements()]
            except UsageError as exc:
                raise UsageError(f"hf:{self.name}: {exc}") from None
            self.batching = self._replicas[0].batching
        return self._replicas

    def _placements(self) -> list[tuple[placement.Group, dict[str, int] | None]]:
        """Each model copy's devices and, for a group, its device map. Without --devices,
        GPUs are grouped when the weights do not fit on one; a named GPU too small for the
        weights is an error before they load. (Sizes need accelerate: without it, and
        without groups, each copy simply loads.)"""
        if self.devices == ["cpu"] or not accelerate_installed():
            return [(group, None) for group in self.groups]
        try:
            meta = placement.empty_model(self.config, self.trust_remote_code)
        except Exception as exc:  # the model's own code may not build on the meta device
            if any(len(group) > 1 for group in self.groups):
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UsageError(f"cannot plan a device map (the model did not build empty: {reason})") from None
            return [(group, None) for group in self.groups]
        need = placement.weight_bytes(meta, self.dtype)
        free = {device: torch.cuda.mem_get_info(torch.device(device))[0] for device in self.devices}
        dtype = str(self.dtype).removeprefix("torch.")
        maps: dict[placement.Group, dict[str, int] | None] = {}

        def plan(group: placement.Group) -> dict[str, int] | None:
            """The group's device map (None for one device); UsageError if it cannot hold the model."""
            if group not in maps:
                if len(group) > 1:
                    memory = {torch.device(d).index or 0: int(free[d] * placement.FIT_SHARE) for d in group}
                    maps[group] = placement.plan_placement(meta, memory, dtype=self.dtype)
                elif need > free[group[0]]:
                    raise UsageError(
                        f"about {need / 2**30:.1f} GiB of {dtype} weights do not fit on {group[0]} "
                        f"({free[group[0]] / 2**30:.1f} GiB free); shard the model over several GPUs, "
                        f"e.g. --devices {'+'.join(self.devices)}"
                    )
                else:
                    maps[group] = None
            return maps[group]

        def fits(group: placement.Group) -> bool:
            """With room for activations: a GPU the weights would all but fill is not chosen."""
            if len(group) == 1:
                return need <= free[group[0]] * placement.FIT_SHARE
            try:
                plan(group)
            except UsageError:
                return False
            return True

        groups = placement.auto_groups(self.devices, fits) if self.automatic_groups else self.groups
        if groups is None and need <= min(free.values()):
            groups = self.groups  # tight on every GPU, and no group helps: a copy on each tries
        if groups is None:
            raise UsageError(
                f"about {need / 2**30:.1f} GiB of {dtype} weights do not fit on the {len(self.devices)} "
                f"visible GPUs ({sum(free.values()) / 2**30:.1f} GiB free together)"
            )
        return [(group, plan(group)) for group in groups]

    def _load_replica(self, group: placement.Group, device_map: dict[str, int] | None) -> _Replica:
        if device_map is None:
            model = self._load_model(device=group[0])
            where = f"{group[0]} holds the whole model"
        else:
            model = self._load_model(device_map=device_map)
            where = f"{'+'.join(group)} share the model ({placement.describe_placement(device_map)})"
        replica = _Replica(model, "+".join(group), self)
        replica.placement = where
        return replica

    def _load_model(
        self, *, device: str | None = None, device_map: dict[str, int] | dict[str, str] | None = None
    ) -> torch.nn.Module:
        """The classifier in our dtype, on `device` or spread by `device_map`. On GPU with
        flash-attn installed (and packing not off) its varlen kernels are asked for; a model
        that does not support them gets transformers' default (SDPA where supported)."""
        options: dict = {"dtype": self.dtype, "output_loading_info": True}
        if device_map is not None:
            options["device_map"] = device_map
        elif device not in (None, "cpu") and accelerate_installed():
            options["device_map"], device = device, None  # straight onto the GPU, not through CPU memory
        attention = self._varlen_attention()
        if attention:
            try:
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    self.source, revision=self.revision, trust_remote_code=self.trust_remote_code,
                    attn_implementation=attention, **options,
                )
            except (ValueError, ImportError) as exc:
                self.varlen_refused = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                attention = None
        if not attention:
            model, info = self._load(AutoModelForSequenceClassification.from_pretrained, "model", **options)
        if info["missing_keys"]:
            missing = ", ".join(sorted(info["missing_keys"])[:3])
            raise RmbJudgeError(
                f"hf:{self.name}: the checkpoint lacks weights the classifier needs ({missing}); "
                "is it a trained reward model?"
            )
        model.config.pad_token_id = self.pad_token_id
        model.config.get_text_config().pad_token_id = self.pad_token_id
        model.config.use_cache = False
        if device is not None:
            model = model.to(device)
        return model.eval()

    def _varlen_attention(self) -> str | None:
        if self.devices == ["cpu"] or self.packing == "off":
            return None
        from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

        if is_flash_attn_2_available():
            return "flash_attention_2"
        return "flash_attention_3" if is_flash_attn_3_available() else None

    # -- public API ------------------------------------------------------------------------

    def load(self) -> None:
        """Put the model on its devices now (it otherwise loads on the first `score`)."""
        self._replicas_loaded()

    def placement_line(self) -> str:
        """Where the loaded model copies are, in one line for the run's output."""
        whole = [replica.device for replica in self._replicas if "+" not in replica.device]
        if len(whole) == len(self._replicas) > 1:
            return f"a whole copy of the model on each of {', '.join(whole)}"
        return " | ".join(replica.placement for replica in self._replicas)

    def identity(self) -> str:
        """What decides the rewards: the exact model files (or hub commit), max_length, dtype."""
        if self.path is not None:
            source = f"{self.path}@sha256:{folder_digest(self.path)}"
        else:
            source = f"{self.name}@{self.revision or 'main'}"
        dtype = str(self.dtype).removeprefix("torch.")
        field = self.reward_field or "logits"
        return f"hf:{source} max_length={self.max_length} dtype={dtype} reward={field}"

    def render(self, item: ScoreItem) -> str:
        """The exact text scored: the conversation plus the answer, through the chat template."""
        return render_chat(self.tokenizer, item, f"hf:{self.name}")

    def score(
        self, items: Sequence[ScoreItem], on_progress: ProgressCallback | None = None
    ) -> list[Reward]:
        """Rewards for `items`, in order.

        After each batch, calls `on_progress(answers_done, tokens_done)` (running totals) on
        the caller's thread.
        """
        if not items:
            return []
        replicas = self._replicas_loaded()
        # Tokenized as apply_chat_template(tokenize=True) would: the template owns special tokens.
        encoded = self.tokenizer(
            [self.render(item) for item in items], add_special_tokens=False, verbose=False
        )["input_ids"]
        sequences = [ids[-self.max_length :] for ids in encoded]
        batches = plan_batches([len(s) for s in sequences], self.batch_tokens, packed=replicas[0].packed)
        values = run_batches(replicas, sequences, batches, on_progress)
        return [
            Reward(value, len(full) > self.max_length, len(seq))
            for value, full, seq in zip(values, encoded, sequences, strict=True)
        ]

    def gpu_memory(self) -> str | None:
        """GPU memory in use per device, for the progress display; None on CPU."""
        if self.devices == ["cpu"]:
            return None
        parts = []
        for device in self.devices:
            free, total = torch.cuda.mem_get_info(torch.device(device))
            parts.append(f"{device} {(total - free) / 2**30:.1f}/{total / 2**30:.0f} GiB")
        return ", ".join(parts)


class _Replica:
    """One model copy (on one device or sharded over a group); remembers how many tokens
    fit after an OOM, and whether it scores packed rows or padded batches."""

    def __init__(self, model: Any, device: str, owner: LocalRewardModel):
        self.model = model  # a transformers classifier (torch.nn.Module): base_model, score, config
        self.device = device  # a name for messages: "cuda:0" or "cuda:0+cuda:1"
        self.input_device = self.model.get_input_embeddings().weight.device
        self.pad_token_id = owner.pad_token_id
        self.field = owner.reward_field or "logits"
        self.name = owner.name
        self.token_limit: int | None = None
        self.needs_mask = not right_padding_is_invisible(model)
        self.placement = device
        attention = getattr(model.config, "_attn_implementation", None) or "unknown"
        self.varlen = attention in VARLEN_ATTENTION
        self.packed, why = self._packing(owner)
        if self.packed:
            mask = "varlen kernels" if self.varlen else "block-diagonal mask"
            self.batching = f"packed batches without padding ({attention}, {mask})"
        else:
            self.batching = f"length-bucketed padded batches ({attention} attention; {why})"

    def _packing(self, owner: LocalRewardModel) -> tuple[bool, str]:
        """Whether to pack, else why not. A model that looks packable is also tried on a probe:
        two texts packed must score as each alone (a layer that carries state along the row,
        such as a state-space mixer, would leak from the first text into the second)."""
        unsupported = packing_unsupported(self.model, self.field)
        if owner.packing == "off":
            return False, "packing turned off"
        if unsupported:
            return False, unsupported
        if not (self.varlen or owner.packing == "on"):
            if owner.varlen_refused:
                return False, f"flash-attention did not load the model: {owner.varlen_refused}"
            return False, "packing needs flash-attention's varlen kernels: a GPU with flash-attn installed"
        probe = [
            owner.tokenizer(owner.render(item), add_special_tokens=False)["input_ids"][-owner.max_length :]
            for item in PROBE
        ]
        packed = self.forward_packed(probe)
        alone = [self.forward_padded([ids])[0] for ids in probe]
        tolerance = 1e-4 if owner.dtype == torch.float32 else 0.05
        if any(abs(a - b) > tolerance * (1 + abs(b)) for a, b in zip(packed, alone, strict=True)):
            return False, (
                f"packed texts scored {packed[1]:.4g} where alone {alone[1]:.4g} on a probe: "
                "the model does not keep packed texts apart"
            )
        return True, ""

    def cost(self, sequences: list[list[int]]) -> int:
        """Tokens the forward pass computes: the sum when packed, else rows x longest row."""
        if self.packed:
            return sum(len(s) for s in sequences)
        return len(sequences) * max(len(s) for s in sequences)

    def forward(self, sequences: list[list[int]]) -> list[float]:
        return self.forward_packed(sequences) if self.packed else self.forward_padded(sequences)

    def forward_padded(self, sequences: list[list[int]]) -> list[float]:
        """Right-padded: each row keeps positions 0..n-1; the model pools its last real token."""
        width = max(len(s) for s in sequences)
        input_ids = torch.tensor([s + [self.pad_token_id] * (width - len(s)) for s in sequences])
        attention_mask = None
        if self.needs_mask:
            attention_mask = torch.tensor(
                [[1] * len(s) + [0] * (width - len(s)) for s in sequences]
            ).to(self.input_device)
        with torch.inference_mode():
            output = self.model(input_ids=input_ids.to(self.input_device), attention_mask=attention_mask)
        rewards = getattr(output, self.field, None)
        if not isinstance(rewards, torch.Tensor) or rewards.ndim not in (1, 2):
            raise RmbJudgeError(
                f"hf:{self.name}: the model output has no reward tensor {self.field!r}"
            )
        if rewards.ndim == 2:
            rewards = rewards[:, 0]
        return rewards.float().cpu().tolist()

    def forward_packed(self, sequences: list[list[int]]) -> list[float]:
        """All sequences end to end in one row, positions restarting at 0 for each, so no
        token attends across a boundary (varlen kernels get the boundaries as cu_seq_lens;
        SDPA gets a block-diagonal mask transformers builds from the positions). The score
        head reads each sequence's last token, as the classifier's own pooling does."""
        lengths = [len(s) for s in sequences]
        ends = list(itertools.accumulate(lengths))
        device = self.input_device
        input_ids = torch.tensor([list(itertools.chain.from_iterable(sequences))], device=device)
        positions = torch.tensor([[p for n in lengths for p in range(n)]], device=device)
        boundaries: dict = {}
        if self.varlen:
            cu_seq_lens = torch.tensor([0, *ends], dtype=torch.int32, device=device)
            boundaries = dict(cu_seq_lens_q=cu_seq_lens, cu_seq_lens_k=cu_seq_lens,
                              max_length_q=max(lengths), max_length_k=max(lengths))
        with torch.inference_mode():
            hidden = self.model.base_model(input_ids=input_ids, position_ids=positions, use_cache=False, **boundaries)
            states = hidden.last_hidden_state[0]
            last = torch.tensor(ends, device=states.device) - 1
            rewards = self.model.score(states[last])[:, 0]
        return rewards.float().cpu().tolist()

    def score_batch(self, sequences: list[list[int]]) -> list[float]:
        return forward_splitting(self.forward, sequences, self)


def packing_unsupported(model: torch.nn.Module, field: str) -> str | None:
    """Why `model` cannot score packed rows, or None: packing needs transformers' generic
    classification head (a linear `score` on the last token's hidden state, which we apply
    ourselves per sequence) over a causal decoder (no token sees the ones after it)."""
    from transformers.modeling_layers import GenericForSequenceClassification

    name = type(model).__name__
    if field != "logits":
        return f"the reward is read from the output field {field!r}"
    if not isinstance(model, GenericForSequenceClassification):
        return f"{name} has its own classification head"
    if type(model).forward is not GenericForSequenceClassification.forward:
        return f"{name} pools in its own forward"
    if not right_padding_is_invisible(model):
        return f"{name} is not a causal decoder"
    return None


def right_padding_is_invisible(model: torch.nn.Module) -> bool:
    """True for transformers' own causal decoders: with right padding no real token attends
    to a pad, so the attention mask is redundant and SDPA can take its fast causal path.

    Remote code is excluded: it may read the mask itself (InternLM2's reward head finds the
    last token from it). Encoders (BERT: is_causal False; DeBERTa: no flag) keep the mask.
    """
    if not type(model).__module__.startswith("transformers."):
        return False
    flags = [module.is_causal for module in model.modules() if hasattr(module, "is_causal")]
    return bool(flags) and all(flag is True for flag in flags)


def forward_splitting(
    forward: Callable[[list[list[int]]], list[float]],
    sequences: list[list[int]],
    state: _Replica,
) -> list[float]:
    """`forward(sequences)`, halving the batch on CUDA out-of-memory until it fits.

    After an OOM, `state.token_limit` caps the tokens computed per forward (padded ones
    included), so later batches are split up front instead of failing again.
    """
    padded = state.cost(sequences)
    if len(sequences) > 1 and state.token_limit is not None and padded > state.token_limit:
        return _halves(forward, sequences, state)
    try:
        return forward(sequences)
    except torch.cuda.OutOfMemoryError:
        if len(sequences) == 1:
            raise RmbJudgeError(
                f"hf:{state.name}: out of GPU memory on {state.device} scoring one input of "
                f"{padded} tokens; lower --max-length"
            ) from None
    # Outside the except block, so the failed forward's tensors can be freed.
    state.token_limit = min(state.token_limit or padded, padded // 2)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return _halves(forward, sequences, state)


def _halves(forward, sequences, state) -> list[float]:
    half = len(sequences) // 2
    return forward_splitting(forward, sequences[:half], state) + forward_splitting(
        forward, sequences[half:], state
    )


def plan_batches(lengths: Sequence[int], batch_tokens: int, *, packed: bool = False) -> list[list[int]]:
    """Indices grouped into batches, longest first, each computing at most `batch_tokens`
    tokens: the padded width times the rows, or the plain sum when `packed`.

    Sorting by length keeps padding near zero; longest first means an out-of-memory shows
    up at once, not at the end of a long run. A sequence longer than the budget goes alone.
    """
    batches: list[list[int]] = []
    used = 0
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        # Padded, every row costs the first (longest) row's width.
        cost = lengths[index] if packed else lengths[batches[-1][0]] if batches else 0
        if batches and used + cost <= batch_tokens:
            batches[-1].append(index)
            used += cost
        else:
            batches.append([index])
            used = lengths[index]
    return batches


def run_batches(
    replicas: Sequence[_Replica],
    sequences: list[list[int]],
    batches: list[list[int]],
    on_progress: ProgressCallback | None,
) -> list[float]:
    """Score the batches with one thread per replica (torch releases the GIL); collect in order."""
    todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for batch in batches:
        todo.put(batch)
    done: queue.SimpleQueue[tuple[list[int], list[float] | BaseException]] = queue.SimpleQueue()
    stop = threading.Event()

    def work(replica: _Replica) -> None:
        while not stop.is_set():
            try:
                batch = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((batch, replica.score_batch([sequences[i] for i in batch])))
            except BaseException as exc:  # handed to the caller's thread, which re-raises it
                done.put((batch, exc))
                return

    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in replicas]
    for thread in threads:
        thread.start()
    values: list[float] = [0.0] * len(sequences)
    answers = tokens = 0
    try:
        for _ in batches:
            batch, result = done.get()
            if isinstance(result, BaseException):
                raise result
            for index, value in zip(batch, result, strict=True):
                values[index] = value
            answers += len(batch)
            tokens += sum(len(sequences[i]) for i in batch)
            if on_progress:
                on_progress(answers, tokens)
    finally:
        stop.set()
    return values


def default_devices() -> list[str]:
    """Every visible GPU (one model copy each), else the CPU."""
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]


def accelerate_installed() -> bool:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        return False
    return True


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit the local HF cache resolves `revision` to, without asking the Hub."""
    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    match = SNAPSHOT.search(Path(cached).as_posix()) if isinstance(cached, str) else None
    return match.group(1) if match else None


_file_digests: dict[tuple[str, int, int, int, int], str] = {}


def folder_digest(folder: Path) -> str:
    """SHA-256 over the contents of the model's files (not size+mtime: fine-tunes can match those).

    Each file's digest is remembered for the life of the process, keyed by path, size, mtime,
    ctime and inode: a rewrite changes ctime even when mtime is set back.
    """
    combined = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix not in IDENTITY_SUFFIXES or not path.is_file():
            continue
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        if key not in _file_digests:
            with path.open("rb") as f:
                _file_digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
        combined.update(f"{path.name}\0{_file_digests[key]}\n".encode())
    return combined.hexdigest()[:16]
