"""Read the verdict that a judge model's raw text states, and never guess.

A *verdict style* is the answer format a judge prompt asks for:

- ``rmb`` (RewardBench / MT-Bench pair-v2, used by the ``rmb`` and ``rmb-criteria``
  templates): ``[[A]]``, ``[[B]]``; ``[[C]]`` or ``[[tie]]`` is a tie. Case, inner spaces
  and a side name are allowed: ``[[ a ]]``, ``[[Assistant A]]``, ``[[Response B]]``.
- ``arena-hard`` (arena-hard-auto): ``[[A>>B]]`` and ``[[A>B]]`` are "A", ``[[A=B]]`` is
  "tie", ``[[B>A]]`` and ``[[B>>A]]`` are "B". Mirrored forms (``[[A<B]]``), ``≫``/``≪``,
  lower case and inner spaces read the same. Any other bracketed label is ignored.
- ``json``: the last JSON object (anywhere in the text, fenced or not) with a key
  ``winner``, ``verdict``, ``better_response`` or ``final_verdict`` (any case) whose value
  names a side: ``"A"``, ``"Assistant B"``, ``"tie"``, ``"draw"`` or an arena-hard label.
  When no such object parses, a ``"winner": "A"`` pair in broken JSON is read instead.
- ``pointwise``: a 1-10 rating per answer. ``parse_verdict`` raises ``ValueError`` for it,
  because one text holds no comparison: read each answer's text with ``parse_rating`` and
  compare with ``verdict_from_ratings``.

Rules for ``rmb``, ``arena-hard`` and ``json`` (after the JSON step above):

1. Markdown emphasis and code marks are ignored: ``**[[A]]**``, ``__[[B]]__``, backticks.
2. A format instruction echoed back is not a verdict: a token followed by "if", "when",
   "for a tie", "means", "indicates", ... (``"[[A]]" if assistant A is better``), or
   preceded in its sentence by "example" or "e.g.", is dropped.
3. The final stated verdict counts: of the lines holding a remaining token, the last one
   decides; if it states two different verdicts (``[[A]] or [[B]]``) the result is None.
4. Only when no bracketed (or JSON) verdict remains, prose is read with the same
   last-line rule: a verdict word ("verdict", "final decision", "final judgment", "final
   choice", "winner", "better/preferred response") followed by a side ("Final Verdict:
   Assistant A is better", "The winner is B.") or by "tie"/"draw" ("My final verdict is
   tie"); also "it's a tie" unless its sentence negates or hedges it ("not", "if",
   "would", ...). A side followed by anything but the end of its clause or a phrase that
   says it is better/wins ("Verdict: Assistant A is worse") is not read.
5. Everything else is None.

arena-hard-auto itself reads a judgment as no verdict when it holds two different labels;
this module reads the final one. Where arena-hard-auto finds a verdict the readings agree:
81 of 81 real judgments in tests/data/arena_hard_judgments.jsonl (see SOURCE.md there).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Generic, Literal, TypeVar

Verdict = Literal["A", "B", "tie"]

_PAIRWISE_STYLES = ("rmb", "arena-hard", "json")
_STYLES = (*_PAIRWISE_STYLES, "pointwise")


def verdict_style_names() -> tuple[str, ...]:
    """The style names that `parse_verdict` knows, for flag help and template checks."""
    return _STYLES


def parse_verdict(text: str, style: str) -> Verdict | None:
    """The verdict ("A", "B" or "tie") that `text` states in `style`, or None."""
    if style == "pointwise":
        raise ValueError(
            "verdict style 'pointwise' rates one answer per text: read each answer's rating "
            "with parse_rating() and compare them with verdict_from_ratings()"
        )
    reader = _READERS.get(style)
    if reader is None:
        raise ValueError(f"unknown verdict style {style!r}; known styles: {', '.join(_STYLES)}")
    return reader(text)


def parse_rating(text: str) -> float | None:
    """The final 0-10 rating in a pointwise judge's text, or None.

    Forms, in order of trust: ``[[7]]`` (also ``Rating: [[7.5]]``, ``[[7/10]]``), then a
    labelled number (``Rating: 7``, ``**Score:** 7/10``, ``rating of 7``), then ``7/10``
    or ``7 out of 10``. The most trusted form present decides, by the same last-line and
    echoed-example rules as verdicts; numbers above 10 are not ratings.
    """
    plain = _plain(text)
    for pattern in _RATING_PATTERNS:
        mentions = [
            _Mention(m.start(), m.end(), float(m.group(1)))
            for m in pattern.finditer(plain)
            if float(m.group(1)) <= 10
        ]
        mentions = [m for m in mentions if not _is_instruction(plain, m)]
        if mentions:
            return _final(plain, mentions)
    return None


def verdict_from_ratings(rating_a: float | None, rating_b: float | None) -> Verdict | None:
    """Pointwise verdict: the higher rating wins, equal ratings tie, a missing one is None."""
    if rating_a is None or rating_b is None:
        return None
    if rating_a == rating_b:
        return "tie"
    return "A" if rating_a > rating_b else "B"


def looks_like_refusal(text: str) -> bool:
    """True when the judge itself declines to judge and states no verdict in any style.

    Conservative: the text must open with a first-person refusal ("I'm sorry, but I can't
    help with that", "I cannot evaluate this content", "I won't assist"); a judge that
    reports an assistant's refusal ("Assistant B refuses to help, so [[A]]") is not one.
    """
    if _ANY_BRACKETS.search(text) or any(
        parse_verdict(text, style) is not None for style in _PAIRWISE_STYLES
    ):
        return False
    return _REFUSAL.match(_plain(text)) is not None


# --- shared machinery -------------------------------------------------------------------


_Value = TypeVar("_Value")


@dataclass(frozen=True)
class _Mention(Generic[_Value]):
    start: int
    end: int
    value: _Value


def _plain(text: str) -> str:
    """Text with markdown emphasis and code marks removed and look-alike characters folded."""
    text = text.replace("\r\n", "\n").translate(_FOLD)
    text = re.sub(r"[*`]+", "", text)
    return re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)


_FOLD = str.maketrans({"≫": ">>", "≪": "<<", "＞": ">", "＜": "<", "＝": "=", "’": "'"})

_ECHO_AFTER = re.compile(
    r"""["')\]]*\s*(?:if|when|for\s+(?:a\s+)?tie|means|indicates|denotes|represents"""
    r"""|signifies|stands\s+for)\b""",
    re.I,
)
_ECHO_BEFORE = re.compile(r"\bexamples?\b|\be\.g\.", re.I)
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)[.!?]\s+")


def _is_instruction(text: str, mention: _Mention) -> bool:
    """Whether a mention is part of echoed format instructions rather than a verdict."""
    if _ECHO_AFTER.match(text, mention.end):
        return True
    line_start = text.rfind("\n", 0, mention.start) + 1
    sentence = _SENTENCE_END.split(text[line_start : mention.start])[-1]
    return _ECHO_BEFORE.search(sentence) is not None


def _final(text: str, mentions: list[_Mention[_Value]]) -> _Value | None:
    """The value stated on the last line that holds a mention; None if that line disagrees."""
    last_line = text.count("\n", 0, mentions[-1].start)
    values = {m.value for m in mentions if text.count("\n", 0, m.start) == last_line}
    return values.pop() if len(values) == 1 else None


_Reader = Callable[[re.Match[str]], Verdict | None]


def _read(text: str, patterns: list[tuple[re.Pattern[str], _Reader]]) -> Verdict | None:
    """The final verdict among the matches of `patterns` (a reader returns None: not one)."""
    mentions = sorted(
        (
            _Mention(m.start(), m.end(), value)
            for pattern, reader in patterns
            for m in pattern.finditer(text)
            if (value := reader(m)) is not None
        ),
        key=lambda mention: mention.start,
    )
    mentions = [m for m in mentions if not _is_instruction(text, m)]
    return _final(text, mentions) if mentions else None


# --- sides and labels -------------------------------------------------------------------

_ARENA_LABELS: dict[str, Verdict] = {
    "A>>B": "A", "A>B": "A", "B<A": "A", "B<<A": "A",
    "A=B": "tie", "B=A": "tie",
    "B>A": "B", "B>>A": "B", "A<B": "B", "A<<B": "B",
}  # fmt: skip

_SIDE_NAME = r"(?:assistant|response|answer|model|output|candidate)"


def _side(value: str) -> Verdict | None:
    """A verdict from a short label: "A", "Assistant b", "[[tie]]", "draw", "A>B"."""
    label = re.sub(r"[\s\[\]\"'*.]+", "", value).upper()
    label = re.sub(rf"^{_SIDE_NAME}", "", label, flags=re.I)
    if label in ("A", "B"):
        return label  # type: ignore[return-value]
    if label in ("TIE", "DRAW"):
        return "tie"
    return _ARENA_LABELS.get(label)


def _rmb_token(match: re.Match[str]) -> Verdict | None:
    letter = match.group(1).upper()
    return "tie" if letter in ("C", "TIE") else letter  # type: ignore[return-value]


def _arena_token(match: re.Match[str]) -> Verdict | None:
    return _ARENA_LABELS.get(re.sub(r"\s", "", match.group(1).upper()))


_RMB_TOKEN = re.compile(rf"\[\[\s*(?:{_SIDE_NAME}\s*)?([abc]|tie)\s*\]\]", re.I)
_ARENA_TOKEN = re.compile(r"\[\[\s*([AB][\s<>=]*[AB])\s*\]\]", re.I)
_ANY_BRACKETS = re.compile(r"\[\[[^\[\]\n]{1,40}\]\]")

# --- prose ------------------------------------------------------------------------------

_VERDICT_WORD = (
    r"(?:final\s+verdict|verdict|final\s+decision|final\s+judge?ment|final\s+choice|winner"
    r"|(?:better|preferred|stronger)\s+(?:response|answer))"
)
_PROSE_SIDE = re.compile(
    rf"\b{_VERDICT_WORD}\s*(?:is|:|-|–|—)?\s*:?\s*(?:that\s+)?(?:the\s+)?"
    rf"(?:{_SIDE_NAME}\s*)?\(?([ab])\)?(?![\w-])"
    r"(?=\s*(?:[.!]|,|;|$)|'s\b|\s+wins\b|\s+(?:is|was)\s+(?:\w+\s+)?(?:better|superior|preferred"
    r"|stronger|the\s+(?:better|winner|stronger|superior)))",
    re.I | re.M,
)
_PROSE_TIE = re.compile(
    rf"\b(?:{_VERDICT_WORD}|result|outcome)\s*(?:is|:|-|–|—)?\s*:?\s*(?:that\s+)?"
    r"(?:it(?:'s|\s+is)\s+)?(?:a\s+)?(?:tie|draw)\b"
    r"|\b(?:it'?s|it\s+is|this\s+is|that'?s)\s+a\s+(?:tie|draw)\b",
    re.I | re.M,
)
_HEDGE = re.compile(r"\b(?:not|never|if|whether|would|could|might)\b|n't\b", re.I)


def _prose_tie(match: re.Match[str]) -> Verdict | None:
    """A tie, unless its sentence negates or hedges it ("I wouldn't say it's a tie")."""
    text, start = match.string, match.start()
    sentence = _SENTENCE_END.split(text[text.rfind("\n", 0, start) + 1 : start])[-1]
    return None if _HEDGE.search(sentence) else "tie"


_PROSE = [(_PROSE_SIDE, lambda m: m.group(1).upper()), (_PROSE_TIE, _prose_tie)]


# --- JSON -------------------------------------------------------------------------------

_JSON_KEYS = ("winner", "verdict", "better_response", "final_verdict")
_JSON_PAIR = re.compile(
    rf"""["']?(?:{'|'.join(_JSON_KEYS)})["']?\s*:\s*["']([^"'\n]{{1,40}})["']\s*(?=[,}}\n]|$)""",
    re.I,
)


def _json_object_verdict(text: str) -> Verdict | None:
    """The side named by the last JSON object with a verdict key, or None."""
    decoder = json.JSONDecoder()
    found: Verdict | None = None
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            end = pos + 1
        else:
            if isinstance(obj, dict):
                found = _dict_verdict(obj) or found
        pos = text.find("{", end)
    return found


def _dict_verdict(obj: dict) -> Verdict | None:
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() in _JSON_KEYS and isinstance(value, str):
            if (verdict := _side(value)) is not None:
                return verdict
    return None


# --- style readers ----------------------------------------------------------------------


def _read_rmb(text: str) -> Verdict | None:
    plain = _plain(text)
    return _read(plain, [(_RMB_TOKEN, _rmb_token)]) or _read(plain, _PROSE)


def _read_arena_hard(text: str) -> Verdict | None:
    plain = _plain(text)
    return _read(plain, [(_ARENA_TOKEN, _arena_token)]) or _read(plain, _PROSE)


def _read_json(text: str) -> Verdict | None:
    found = _json_object_verdict(text)
    if found is not None:
        return found
    pairs = [_side(m.group(1)) for m in _JSON_PAIR.finditer(text)]
    pairs = [p for p in pairs if p is not None]
    return pairs[-1] if pairs else _read(_plain(text), _PROSE)


_READERS: dict[str, Callable[[str], Verdict | None]] = {
    "rmb": _read_rmb,
    "arena-hard": _read_arena_hard,
    "json": _read_json,
}

# --- ratings and refusals ---------------------------------------------------------------

_NUMBER = r"(\d{1,2}(?:\.\d+)?)(?!\.?\d)"
_RATING_PATTERNS = [
    re.compile(rf"\[\[\s*{_NUMBER}\s*(?:/\s*10\s*)?\]\]"),
    re.compile(
        rf"\b(?:rating|score|grade)\s*(?:is|of|:|=)?\s*:?\s*\[?\s*{_NUMBER}\s*\]?"
        r"(?!\s*/\s*(?!10\b)\d)",  # "Score: 4/5" is not a 1-10 rating
        re.I,
    ),
    re.compile(rf"(?<![\d.]){_NUMBER}\s*(?:/|out\s+of)\s*10\b", re.I),
]

_REFUSAL_VERB = (
    r"(?:help|assist|evaluate|judge|compare|rate|review|assess|comply|provide|engage"
    r"|participate|continue|fulfil|fulfill|complete|support|answer|respond|do\s+that|do\s+this)"
)
_REFUSAL = re.compile(
    r"""^\W*
    (?:(?:(?:i'?m|i\s+am)\s+(?:really\s+|very\s+|so\s+)?(?:sorry|afraid)|sorry|(?:my\s+)?apologies
        |i\s+apologi[sz]e|unfortunately)\b[^.!\n]{0,40}?[,.!]?\s*(?:but\s+)?)?
    (?:as\s+an?\s+(?:ai|language\s+model|assistant)[^,.\n]{0,60},\s*)?
    i(?:'m|\s+am)?\s*
    (?:(?:can(?:'t|not)|can\s+not|won't|will\s+not|(?:unable|not\s+able)\s+to)\s+
        (?:\w+\s+){0,2}?""" + _REFUSAL_VERB + r"""\b
      |must\s+(?:decline|refuse)|(?:do\s+not|don't)\s+feel\s+comfortable)""",
    re.I | re.X,
)
