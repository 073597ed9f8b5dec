"""The offline `mock` judge: a keyless smoke run that exercises the whole pipeline.

Its verdicts are deterministic but uninformed: between two answers it prefers the one whose
text hashes higher, so a rerun (or a swap of positions) agrees with itself, and accuracy
lands near chance. The same function is the default judge of the test suite's fake API
server, so tests can know every verdict in advance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from .. import endpoints
from .base import ChatRequest, ChatResponse, Provider

# "[The Start of Assistant A's Answer]" (rmb, json), "<|The Start of Assistant A's Answer|>"
# (arena-hard) and "<|The Start of Assistant A's Conversation with User|>" (rmb, records with
# more than one user turn: the answer is the block's last "### Assistant A:" turn); the
# single-answer form "Assistant's Answer" is the pointwise template.
_PAIR = re.compile(
    r"Start of Assistant ([AB])'s (Answer|Conversation)[^\n]*\n(.*?)\n[^\n]*End of Assistant \1's",
    re.S,
)
_SINGLE = re.compile(r"Start of Assistant's Answer[^\n]*\n(.*?)\n[^\n]*End of Assistant's Answer", re.S)
# a ranking's answers beyond A and B ("[The Start of Assistant C's Answer]" ...), and a rating
# prompt that asks for a bare final number ("rate the response on a scale of 1 to 10")
_SLOT = re.compile(r"Start of Assistant ([A-Z])'s Answer[^\n]*\n(.*?)\n[^\n]*End of Assistant \1's", re.S)
_BARE_RATING = re.compile(r"rate the response on a scale of 1 to 10", re.I)

Preference = Callable[[str, str], str]  # (answer_a, answer_b) -> "A" | "B"


def stable_hash(text: str) -> int:
    """A process-independent hash (Python's `hash` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def approx_tokens(text: str) -> int:
    """A plausible token count without a tokenizer: about four characters per token."""
    return len(text) // 4 + 1


def hash_preference(answer_a: str, answer_b: str) -> str:
    """Prefer the answer whose text hashes higher: stable across runs and positions."""
    return "A" if stable_hash(answer_a.strip()) >= stable_hash(answer_b.strip()) else "B"


def extract_pair(prompt: str) -> tuple[str, str] | None:
    """The two answers a pairwise judge prompt shows, or None if it has no such markers.
    Of a conversation block, the answer is its final assistant turn."""
    found = {}
    for side, form, text in _PAIR.findall(prompt):
        found[side] = final_turn(text, side) if form == "Conversation" else text
    if "A" in found and "B" in found:
        return found["A"], found["B"]
    return None


def final_turn(block: str, side: str) -> str:
    """The text after the last "### Assistant A:" heading (for side A) of a multi-turn block,
    without the blank line that separates it from the block's end marker. (An answer that
    itself holds such a heading line would come back cut; no RMB text holds one.)"""
    _, heading, last = block.rpartition(f"### Assistant {side}:\n")
    return last.removesuffix("\n") if heading else block


def simulated_reply(prompt: str, prefer: Preference = hash_preference) -> str:
    """A judge's answer to `prompt`, in the verdict style the prompt asks for.

    Handles the shipped templates: `[[A]]` (rmb), `[[A>B]]` (arena-hard), a JSON object
    with "winner" (json), `[[rating]]` for a single answer (pointwise), the answer whose text
    hashes highest of a ranking of more than two (`[[C]]`), and a bare final rating for a
    prompt asking for one.
    """
    if single := _SINGLE.search(prompt):
        return f"Rating: [[{1 + stable_hash(single.group(1).strip()) % 10}]]"
    slots = dict(_SLOT.findall(prompt))
    if len(slots) > 2:
        return f"[[{max(slots, key=lambda slot: (stable_hash(slots[slot].strip()), slot))}]]"
    if _BARE_RATING.search(prompt) and not slots:
        return f"Rating: {1 + stable_hash(prompt) % 10}"
    pair = extract_pair(prompt)
    verdict = prefer(*pair) if pair else "AB"[stable_hash(prompt) % 2]
    if '"winner"' in prompt:
        return json.dumps({"reason": "simulated verdict", "winner": verdict})
    if "[[A>>B]]" in prompt:
        return "[[A>B]]" if verdict == "A" else "[[B>A]]"
    return f"[[{verdict}]]"


class MockProvider(Provider):
    """Answers every request locally; nothing is sent anywhere and no key is needed."""

    name = "mock"
    official_endpoint = endpoints.LOCAL
    simulated = True

    def __init__(self, model: str = "mock", base_url: str | None = None, api_key: str | None = None) -> None:
        super().__init__(model)

    @classmethod
    def price(cls, model: str, input_tokens: int, output_tokens: int, batch: bool = False,
              cache_read: int = 0, cache_write: int = 0) -> float:
        return 0.0

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        prompt = "\n\n".join(content for _, content in request.messages)
        text = simulated_reply(prompt)
        return ChatResponse(
            text=text,
            input_tokens=approx_tokens(prompt),
            output_tokens=approx_tokens(text),
            model=self.model,
            finish_reason="stop",
            endpoint=endpoints.LOCAL,
        )
