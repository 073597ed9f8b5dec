"""Judge prompt templates: plain TOML files in `prompts/`, rendered into chat messages.

A template declares its `kind` (pairwise: both answers in one request; pointwise: each
answer rated in its own request), the verdict `style` its answers are read with, and a
`system` and `user` text with the placeholders {question}, {answer_a}, {answer_b},
{answer} and {criteria}. Only those names are substituted, so a template may contain
other braces (JSON examples) without escaping. The file's SHA-256 is part of every cache
key, so editing a template never serves answers given to the old text.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .records import Message
from .verdicts import verdict_style_names

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
KINDS = ("pairwise", "pointwise")
STYLES = verdict_style_names()
PLACEHOLDER = re.compile(r"\{(question|answer_a|answer_b|answer|criteria)\}")

Messages = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Template:
    name: str
    kind: str
    style: str
    system: str
    user: str
    description: str = ""
    criteria: dict[str, str] = field(default_factory=dict)
    json_mode: bool = False
    sha256: str = ""

    def render_pair(
        self, conversation: tuple[Message, ...], section: str, answer_a: str, answer_b: str
    ) -> Messages:
        return self._render(conversation, section, answer_a=answer_a, answer_b=answer_b)

    def render_single(self, conversation: tuple[Message, ...], section: str, answer: str) -> Messages:
        return self._render(conversation, section, answer=answer)

    def _render(self, conversation: tuple[Message, ...], section: str, **answers: str) -> Messages:
        values = {"question": render_conversation(conversation), **answers}
        if self.criteria:
            values["criteria"] = self.criteria[section]

        def fill(parts: list[str]) -> str:
            # parts alternate literal text and placeholder names (see _split)
            return "".join(
                values.get(p, "{" + p + "}") if i % 2 else p for i, p in enumerate(parts)
            )

        messages = [("user", fill(self._parts["user"]))]
        if self.system:
            messages.insert(0, ("system", fill(self._parts["system"])))
        return tuple(messages)

    @functools.cached_property
    def _parts(self) -> dict[str, list[str]]:
        """The texts split once at their placeholders, so rendering ~20,000 prompts is a join."""
        return {"system": PLACEHOLDER.split(self.system), "user": PLACEHOLDER.split(self.user)}


def render_conversation(conversation: tuple[Message, ...]) -> str:
    """A single user turn is the question itself (as in the reference judge); a multi-turn
    conversation is rendered whole with its roles, so the judge sees what the answers reply to."""
    if len(conversation) == 1:
        return conversation[0].content
    return "\n\n".join(f"### {m.role.capitalize()}:\n{m.content}" for m in conversation)


def available() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.toml"))


def load(name_or_path: str) -> Template:
    """A shipped template by name (`rmb`), or a user's template file by path."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        path = PROMPTS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UsageError(
            f"--template: no template {name_or_path!r} (shipped: {', '.join(available())}; "
            "or give the path of a .toml template file)"
        )
    raw = path.read_bytes()
    try:
        spec = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a valid TOML template: {exc}") from None
    return _validate(path, spec, hashlib.sha256(raw).hexdigest())


def _validate(path: Path, spec: dict, sha256: str) -> Template:
    kind = spec.get("kind", "pairwise")
    style = spec.get("style", "rmb")
    if kind not in KINDS:
        raise UsageError(f"{path}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if style not in STYLES:
        raise UsageError(f"{path}: style must be one of {', '.join(STYLES)}, got {style!r}")
    if not isinstance(spec.get("user"), str):
        raise UsageError(f"{path}: a template needs a 'user' text")
    needed = {"answer_a", "answer_b"} if kind == "pairwise" else {"answer"}
    text = spec.get("system", "") + spec["user"]
    missing = needed - set(PLACEHOLDER.findall(text))
    if missing:
        raise UsageError(f"{path}: the template text lacks {', '.join(sorted(missing))} placeholders")
    criteria = spec.get("criteria", {})
    if "{criteria}" in text and set(criteria) != {"helpfulness", "harmlessness"}:
        raise UsageError(f"{path}: {{criteria}} needs [criteria] helpfulness and harmlessness texts")
    return Template(
        name=path.stem,
        kind=kind,
        style=style,
        system=spec.get("system", ""),
        user=spec["user"],
        description=spec.get("description", ""),
        criteria=dict(criteria),
        json_mode=bool(spec.get("json_mode", False)),
        sha256=sha256,
    )
