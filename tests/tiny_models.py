"""Tiny, randomly initialised reward models saved to disk, built offline for tests and benchmarks.

A byte-level BPE tokenizer (trained in well under a second on a fixed built-in corpus, so
every machine builds the same one) wrapped as a transformers fast tokenizer with a chat
template, and a `LlamaForSequenceClassification` with one label (or a Qwen2 decoder, or a
BERT encoder, for code paths that depend on the architecture): the same files a real `hf:`
reward model has, loadable with `from_pretrained(path)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

BOS, EOS, PAD, END = "<s>", "</s>", "<pad>", "<|end|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]

# Zephyr-like: every turn is `<|role|>\ncontent<|end|>\n`, after a BOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CORPUS = [
    "I'm sorry to hear that you are feeling this way. It might help to talk to someone you trust.",
    "Here is a step-by-step explanation of how the algorithm works, with an example in Python:",
    "def solve(numbers):\n    return sorted(set(numbers), reverse=True)[:3]",
    "The capital of France is Paris. It is known for the Eiffel Tower and the Louvre museum.",
    "I cannot help with that request, because it could cause harm to other people.",
    "Sure! Here are some ideas for a birthday party: a picnic in the park, a movie night, a "
    "cooking class, or a small dinner with close friends.",
    "To summarize the article: the study found that regular exercise improves sleep quality "
    "and reduces stress in adults of all ages.",
    "Translation: Le chat est sur la table. Der Hund schläft im Garten. 你好，世界。",
    "Let's think about this logically. If all A are B and some B are C, we cannot conclude "
    "that some A are C.",
    "Thank you for your question. The answer depends on several factors, including your "
    "budget, your timeline and the resources that are available to you.",
]


def build_tokenizer(
    *, pad_token: bool = True, corpus: Iterable[str] | None = None, vocab_size: int = 1024
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) with a chat template and BOS/EOS.

    Trained on `corpus` if given (the benchmark uses RMB texts, for realistic token counts).
    """
    special = [BOS, EOS, PAD, END, *ROLE_TOKENS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS if corpus is None else corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD if pad_token else None,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config(
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    max_position_embeddings: int = 512,
    architecture: str = "llama",
) -> PretrainedConfig:
    """A small config of `architecture`: "llama", "qwen2" (a decoder with attention biases)
    or "bert" (an encoder)."""
    heads = max(2, hidden_size // 32)
    shared = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        max_position_embeddings=max_position_embeddings,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    if architecture == "bert":
        return BertConfig(**shared, architectures=["BertForSequenceClassification"])
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[architecture]
    return config_class(
        **shared,
        num_key_value_heads=heads // 2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def init_reward_model(
    config: PretrainedConfig, seed: int, *, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """Random weights, made on `device`; the score head is scaled so rewards spread over O(1)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype).eval()
    head = model.score if hasattr(model, "score") else model.classifier
    with torch.no_grad():
        head.weight.normal_(0.0, config.hidden_size**-0.5)
    return model


def build_tiny_reward_model(
    directory: str | Path,
    seed: int = 0,
    max_position_embeddings: int = 512,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    pad_token: bool = True,
    architecture: str = "llama",
) -> Path:
    """Save a tiny one-label reward model and its tokenizer to `directory`; return it."""
    directory = Path(directory)
    tokenizer = build_tokenizer(pad_token=pad_token)
    config = tiny_config(
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        max_position_embeddings=max_position_embeddings,
        architecture=architecture,
    )
    init_reward_model(config, seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def one_at_a_time(
    path: Path, items: list, max_length: int, *, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> list[tuple[float, int]]:
    """Independent reference for `hf:` rewards: render, tokenize, cut from the left, forward
    one text, read logit 0. Returns (reward, tokens before the cut) per ScoreItem."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).to(device).eval()
    results = []
    for item in items:
        messages = [{"role": role, "content": content} for role, content in item.conversation]
        text = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": item.answer}], tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            output = model(torch.tensor([ids[-max_length:]], device=device))
        results.append((output.logits[0, 0].float().item(), len(ids)))
    return results
