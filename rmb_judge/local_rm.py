"""Local scalar reward models (`hf:PATH_OR_ID` judges): transformers sequence classifiers.

RMB compares every answer of a record against the same conversation, so the caller hands
us each unique (conversation, answer) once. We render and tokenize them all up front, sort
by length and pack batches under a padded-token budget: batches stay large without paying
for padding, and one model copy per GPU works through them in parallel.

The model itself loads on the first `score()`, so a fully cached run (or `identity()` for
a cache lookup) needs no GPU and no weights in memory.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache
from jinja2 import TemplateError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from .errors import RmbJudgeError, UsageError

ProgressCallback = Callable[[int, int], None]

# Files that decide what a local model computes: weights, configs, tokenizer, custom code.
IDENTITY_SUFFIXES = {
    ".safetensors", ".bin", ".pt", ".pth", ".json", ".py", ".model", ".txt", ".jinja", ".tiktoken"
}
# On CPU bigger batches gain no parallelism and fall out of cache: measured ~25% slower at 16384.
CPU_BATCH_TOKENS = 4096
HUB_ID = re.compile(r"^[\w-][\w.-]*(/[\w-][\w.-]*)?$")  # org/name; not ./x or ~/x
SNAPSHOT = re.compile(r"snapshots/([0-9a-f]{40})/")


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
    ):
        self.name = name_or_path
        self.devices = check_devices(devices or default_devices())
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
            self._replicas = [
                _Replica(self._load_model(device), device, self) for device in self.devices
            ]
        return self._replicas

    def _load_model(self, device: str) -> torch.nn.Module:
        # transformers picks SDPA attention by default wherever the model supports it.
        model, info = self._load(
            AutoModelForSequenceClassification.from_pretrained,
            "model",
            dtype=self.dtype,
            output_loading_info=True,
        )
        if info["missing_keys"]:
            missing = ", ".join(sorted(info["missing_keys"])[:3])
            raise RmbJudgeError(
                f"hf:{self.name}: the checkpoint lacks weights the classifier needs ({missing}); "
                "is it a trained reward model?"
            )
        model.config.pad_token_id = self.pad_token_id
        model.config.get_text_config().pad_token_id = self.pad_token_id
        model.config.use_cache = False
        return model.to(device).eval()

    # -- public API ------------------------------------------------------------------------

    def load(self) -> None:
        """Put the model on its devices now (it otherwise loads on the first `score`)."""
        self._replicas_loaded()

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
        batches = plan_batches([len(s) for s in sequences], self.batch_tokens)
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
    """One model copy on one device; remembers how many padded tokens fit after an OOM."""

    def __init__(self, model: torch.nn.Module, device: str, owner: LocalRewardModel):
        self.model = model
        self.device = device
        self.pad_token_id = owner.pad_token_id
        self.field = owner.reward_field or "logits"
        self.name = owner.name
        self.token_limit: int | None = None
        self.needs_mask = not right_padding_is_invisible(model)

    def forward(self, sequences: list[list[int]]) -> list[float]:
        """Right-padded: each row keeps positions 0..n-1; the model pools its last real token."""
        width = max(len(s) for s in sequences)
        input_ids = torch.tensor([s + [self.pad_token_id] * (width - len(s)) for s in sequences])
        attention_mask = None
        if self.needs_mask:
            attention_mask = torch.tensor(
                [[1] * len(s) + [0] * (width - len(s)) for s in sequences]
            ).to(self.device)
        with torch.inference_mode():
            output = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask)
        rewards = getattr(output, self.field, None)
        if not isinstance(rewards, torch.Tensor) or rewards.ndim not in (1, 2):
            raise RmbJudgeError(
                f"hf:{self.name}: the model output has no reward tensor {self.field!r}"
            )
        if rewards.ndim == 2:
            rewards = rewards[:, 0]
        return rewards.float().cpu().tolist()

    def score_batch(self, sequences: list[list[int]]) -> list[float]:
        return forward_splitting(self.forward, sequences, self)


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

    After an OOM, `state.token_limit` caps padded tokens per forward, so later batches are
    split up front instead of failing again.
    """
    padded = len(sequences) * max(len(s) for s in sequences)
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


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, each padding to at most `batch_tokens`.

    Sorting by length keeps padding near zero; longest first means an out-of-memory shows
    up at once, not at the end of a long run. A sequence longer than the budget goes alone.
    """
    batches: list[list[int]] = []
    width = 0
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and (len(batches[-1]) + 1) * width <= batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
            width = lengths[index]
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


def check_devices(devices: list[str]) -> list[str]:
    if devices == ["cpu"]:
        return devices
    for device in devices:
        if not device.startswith("cuda"):
            raise UsageError(f"devices: {device!r}: give either ['cpu'] or CUDA devices only")
        try:
            index = torch.device(device).index or 0
        except RuntimeError:
            raise UsageError(f"devices: {device!r} is not a device name") from None
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UsageError(f"devices: {device} is not available ({count} GPUs)")
    if len(set(devices)) != len(devices):
        raise UsageError(f"devices: {', '.join(devices)} names a device twice")
    return devices


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
