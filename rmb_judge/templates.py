"""Judge prompt templates: plain TOML files in `prompts/`, rendered into chat messages.

The shipped templates are the package data of `rmb_judge.prompts` (pyproject.toml maps that
subpackage to the top-level `prompts/` folder), found through importlib.resources, so an
installed wheel carries them as an editable install does.

A template declares its `kind` (pairwise: both answers of a pair in one request; pointwise:
each answer of a pair rated in its own request; ranking: every answer of a ranking in one
request; rating: one answer rated), the verdict `style` its answers are read with (one of
verdicts.py's, or one a benchmark registers), and a `system` and `user` text. Only these
placeholders are substituted, so a template may contain other braces (JSON examples)
without escaping:

- {question}: the conversation before the answers. A single user message is the question
  itself; a longer conversation is every message as "### User:" / "### Assistant:" /
  "### System:" followed by its text, joined by blank lines.
- {answer_a}, {answer_b} (pairwise; a ranking's {answer_a}, {answer_b}, {answer_c}, ... one per
  slot) and {answer} (pointwise, rating): the answers judged.
- {conversation_a}, {conversation_b} (pairwise) and {conversation} (pointwise): the whole
  conversation ending in that answer, in MT-Bench's multi-turn form: each turn a heading
  line "### User:", "### Assistant A:" (resp. "Assistant B", "Assistant") or "### System:"
  over its text, turns joined by blank lines, earlier assistant turns labelled like the answer.
- {last_turn}: the ordinal of the final user turn ("first", "second", "third", ...).
- {criteria}: the record's goal's text from the template's [criteria] table, one text per
  goal of the benchmark (RMB: helpfulness and harmlessness; checked by `check_goals`).

A pairwise text must show both answers ({answer_a} or {conversation_a}, and the same for B);
a pointwise one, {answer} or {conversation}. A template may also give `user_multi` (and
optionally `system_multi`, which otherwise is `system`): texts used instead of `user` and
`system` for records whose conversation has more than one user turn. The shipped `rmb`
template uses them for RewardBench's MT-Bench "pair-v2-multi-turn" judge; `rmb-flat` has
none, so it shows multi-turn records in {question} as the `rmb` template did before.

`output_tokens` (optional) is how many tokens a judge writes per request with this template, for
`estimate` and budgets (default: by verdict style, `pricing.OUTPUT_TOKENS`); `verdict` says 5.
`max_tokens` (optional) is the template's own answer length cap, used unless --max-tokens is
given (JudgeBench's templates: 4096 and 1024 tokens, as its official judges send).

`follow_up` (optional): a user turn sent once when the first reply states no verdict label at
all (the style's `labelled` test): the same messages, the first reply as the assistant's turn,
then this text; the verdict is read from both replies together (JudgeBench's arena_hard).

The file's SHA-256 is part of every cache key, so editing a template never serves answers
given to the old text. A template that grows out of an earlier one without changing the
prompts that one rendered may say `cache_key = "<the earlier file's SHA-256>"`: its requests
then keep the keys they had (a request whose text changed gets a new key from its text
anyway), so answers users already paid for keep serving them. `rmb` does this for the
single-turn prompts of the previous `rmb` (now `rmb-flat`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .errors import UsageError
from .records import Message
from .verdicts import verdict_style_names

PROMPTS_DIR: Traversable = resources.files("rmb_judge.prompts")  # the shipped templates
KINDS = ("pairwise", "pointwise", "ranking", "rating")
PLACEHOLDER = re.compile(
    r"\{(question|answer_[a-z]|answer|conversation_a|conversation_b|conversation|last_turn|criteria)\}"
)
TEXTS = ("system", "user", "system_multi", "user_multi")
# {conversation_a} shows {answer_a} as its last turn, under the label "Assistant A"
CONVERSATIONS = {"conversation_a": ("answer_a", "Assistant A"),
                 "conversation_b": ("answer_b", "Assistant B"),
                 "conversation": ("answer", "Assistant")}
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")

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
    system_multi: str = ""  # used with user_multi
    user_multi: str = ""  # "": multi-turn records use `user` too
    cache_key: str = ""  # the SHA-256 its requests are keyed with, if not its own
    output_tokens: int | None = None  # what `estimate` assumes a judge writes per request (None: by style)
    max_tokens: int | None = None  # its own --max-tokens default
    follow_up: str = ""  # a user turn sent once when the first reply states no verdict label

    @property
    def slots(self) -> int:
        """A ranking template's answers per prompt ({answer_a} ... ); 2 for a pairwise one."""
        names = self._names["system"] | self._names["user"]
        return sum(1 for name in names if re.fullmatch(r"answer_[a-z]", name)) or 2

    @property
    def key_sha256(self) -> str:
        """What request keys hash in for this template (see the module docstring)."""
        return self.cache_key or self.sha256

    def render_pair(
        self, conversation: tuple[Message, ...], goal: str, answer_a: str, answer_b: str
    ) -> Messages:
        return self._render(conversation, goal, answer_a=answer_a, answer_b=answer_b)

    def render_single(self, conversation: tuple[Message, ...], goal: str, answer: str) -> Messages:
        return self._render(conversation, goal, answer=answer)

    def render_many(self, conversation: tuple[Message, ...], goal: str, answers: Sequence[str]) -> Messages:
        """A ranking template with one answer per slot, in slot order."""
        return self._render(conversation, goal, **{f"answer_{chr(ord('a') + i)}": a for i, a in enumerate(answers)})

    def check_goals(self, goals: Sequence[str]) -> None:
        """A template using {criteria} must have a text for every goal it will be asked about."""
        missing = [g for g in goals if g not in self.criteria]
        if self.uses_criteria and missing:
            raise UsageError(f"--template {self.name}: its [criteria] table lacks {', '.join(missing)}")

    @property
    def uses_criteria(self) -> bool:
        return any("{criteria}" in text for text in (self.system, self.user, self.system_multi, self.user_multi))

    def _render(self, conversation: tuple[Message, ...], goal: str, **answers: str) -> Messages:
        turns = user_turns(conversation)
        system, user = ("system_multi", "user_multi") if self.user_multi and turns > 1 else ("system", "user")
        names = self._names[system] | self._names[user]
        values = dict(answers)
        if "question" in names:
            values["question"] = render_conversation(conversation)
        if "criteria" in names:
            values["criteria"] = self.criteria[goal]
        if "last_turn" in names:
            values["last_turn"] = ordinal(turns)
        for name, (answer, label) in CONVERSATIONS.items():
            if name in names and answer in answers:
                values[name] = render_turns(conversation, label, answers[answer])

        values = _Values(values)
        if getattr(self, system):
            return (("system", self._formats[system].format_map(values)),
                    ("user", self._formats[user].format_map(values)))
        return (("user", self._formats[user].format_map(values)),)

    @functools.cached_property
    def _formats(self) -> dict[str, str]:
        """Each text as a `str.format` string, made once: placeholders stay fields, every other
        brace is escaped; rendering ~20,000 prompts is then one C call each."""
        formats = {}
        for text in TEXTS:
            parts = PLACEHOLDER.split(getattr(self, text))  # literal text and names, alternating
            formats[text] = "".join(
                "{" + part + "}" if i % 2 else part.replace("{", "{{").replace("}", "}}")
                for i, part in enumerate(parts)
            )
        return formats

    @functools.cached_property
    def _names(self) -> dict[str, frozenset[str]]:
        return {text: frozenset(PLACEHOLDER.findall(getattr(self, text))) for text in TEXTS}


class _Values(dict):
    """Placeholder values; one with no value (a {criteria} on a template without a table)
    stays as written."""

    def __missing__(self, name: str) -> str:
        return "{" + name + "}"


def user_turns(conversation: tuple[Message, ...]) -> int:
    return sum(m.role == "user" for m in conversation)


def ordinal(n: int) -> str:
    if 1 <= n <= len(_ORDINALS):
        return _ORDINALS[n - 1]
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def render_conversation(conversation: tuple[Message, ...]) -> str:
    """A single user turn is the question itself (as in the reference judge); a longer
    conversation is rendered whole with its roles, so the judge sees what the answers reply to."""
    if len(conversation) == 1:
        return conversation[0].content
    return "\n\n".join(f"### {m.role.capitalize()}:\n{m.content}" for m in conversation)


def render_turns(conversation: tuple[Message, ...], assistant: str, answer: str) -> str:
    """One assistant's conversation, MT-Bench multi-turn style: every turn as "### <who>:" and
    its text, the assistant's turns (earlier ones and `answer`, the last) under `assistant`."""
    turns = [(assistant if m.role == "assistant" else m.role.capitalize(), m.content) for m in conversation]
    turns.append((assistant, answer))
    return "\n\n".join(f"### {who}:\n{text}" for who, text in turns)


def available() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in PROMPTS_DIR.iterdir()
                  if p.name.endswith(".toml") and p.is_file())


def load(name_or_path: str) -> Template:
    """A shipped template by name (`rmb`), or a user's template file by path."""
    given = Path(name_or_path)
    path: Path | Traversable = given
    if not (given.suffix == ".toml" and given.is_file()):
        if name_or_path not in available():
            raise UsageError(
                f"--template: no template {name_or_path!r} (shipped: {', '.join(available())}; "
                "or give the path of a .toml template file)"
            )
        path = PROMPTS_DIR / f"{name_or_path}.toml"
    raw = path.read_bytes()
    try:
        spec = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a valid TOML template: {exc}") from None
    return _validate(path, spec, hashlib.sha256(raw).hexdigest())


def _validate(path: Path | Traversable, spec: dict, sha256: str) -> Template:
    kind = spec.get("kind", "pairwise")
    style = spec.get("style", "rmb")
    styles = verdict_style_names()
    if kind not in KINDS:
        raise UsageError(f"{path}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if style not in styles:
        raise UsageError(f"{path}: style must be one of {', '.join(styles)}, got {style!r}")
    if not isinstance(spec.get("user"), str):
        raise UsageError(f"{path}: a template needs a 'user' text")
    for text in TEXTS:
        if not isinstance(spec.get(text, ""), str):
            raise UsageError(f"{path}: '{text}' must be a text (a TOML string)")
    if "system_multi" in spec and "user_multi" not in spec:
        raise UsageError(f"{path}: 'system_multi' needs a 'user_multi' text")
    multi = "user_multi" in spec
    if multi and not spec["user_multi"].strip():
        raise UsageError(f"{path}: 'user_multi' is empty (leave it out to use 'user' for every record)")
    system = spec.get("system", "")
    system_multi = spec.get("system_multi", system) if multi else ""
    sides = ("_a", "_b") if kind in ("pairwise", "ranking") else ("",)
    # each pair of texts must show the answers: {answer_a} or {conversation_a}, and so on
    pairs = [("template text", system + spec["user"], "answer")]
    if multi:
        pairs.append(("multi-turn text (system_multi, user_multi)",
                      system_multi + spec["user_multi"], "conversation"))
    cache_key = spec.get("cache_key", "")
    if not isinstance(cache_key, str) or (cache_key and not re.fullmatch(r"[0-9a-f]{64}", cache_key)):
        raise UsageError(f"{path}: cache_key must be the SHA-256 (64 hex digits) of an earlier template file")
    for name in ("output_tokens", "max_tokens"):
        value = spec.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UsageError(f"{path}: {name} must be a whole number of tokens, at least 1")
    follow_up = spec.get("follow_up", "")
    if not isinstance(follow_up, str) or (kind != "pairwise" and follow_up):
        raise UsageError(f"{path}: follow_up must be a text, and only a pairwise template may have one")
    criteria = spec.get("criteria", {})
    for what, text, shown in pairs:
        names = set(PLACEHOLDER.findall(text))
        missing = [shown + s for s in sides if not {f"answer{s}", f"conversation{s}"} & names]
        if missing:
            raise UsageError(f"{path}: the {what} lacks {', '.join(missing)} placeholders")
        if "criteria" in names and (not isinstance(criteria, dict) or not criteria
                                    or not all(isinstance(v, str) for v in criteria.values())):
            raise UsageError(f"{path}: {{criteria}} needs a [criteria] table of texts, one per goal")
    return Template(
        name=path.name.removesuffix(".toml"),
        kind=kind,
        style=style,
        system=system,
        user=spec["user"],
        description=spec.get("description", ""),
        criteria=dict(criteria),
        json_mode=bool(spec.get("json_mode", False)),
        sha256=sha256,
        system_multi=system_multi,
        user_multi=spec.get("user_multi", ""),
        cache_key=cache_key,
        output_tokens=spec.get("output_tokens"),
        max_tokens=spec.get("max_tokens"),
        follow_up=follow_up,
    )
