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

Reading takes time linear in the text's length (times a logarithm at most), however
repetitive the text: a judge that repeats ``[[A]]`` or ``{`` for a whole output is read as
fast as prose of that length (bin/bench-verdicts measures it).

A benchmark whose official judge reads verdicts its own way registers that reader as a style
of its own (`register_style`, from its module: JudgeBench's exact arena_hard parser), which its
templates name; `parse_verdict` reads every registered style.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Generic, Literal, TypeVar

Verdict = Literal["A", "B", "tie"]

_PAIRWISE_STYLES = ("rmb", "arena-hard", "json")
_RATING = "pointwise"  # one answer per text: a rating, not a verdict


@dataclass(frozen=True)
class Style:
    """A verdict style: how a judge's text is read. `read`: the verdict it states or None;
    `form`: what it reads, in a few words (for messages); `labelled`: whether the text states
    any verdict label at all, even an unreadable one (a template's follow-up turn is sent
    when it does not; None: the style has no follow-up turns)."""

    name: str
    read: Callable[[str], Verdict | None]
    form: str
    labelled: Callable[[str], bool] | None = None


_REGISTERED: dict[str, Style] = {}


def register_style(style: Style) -> Style:
    """Make a style known to `parse_verdict` and the templates (a benchmark's own reader)."""
    if _REGISTERED.get(style.name, style) != style:
        raise RuntimeError(f"two verdict styles named {style.name!r}")
    _REGISTERED[style.name] = style
    return style


def style_of(name: str) -> Style:
    """A registered style (a benchmark's module registers its own when it is imported: the
    benchmark registry imports every one the first time it is asked, `benchmarks.get`)."""
    if name not in _REGISTERED:
        raise ValueError(f"unknown verdict style {name!r}; known styles: {', '.join(verdict_style_names())}")
    return _REGISTERED[name]


def form_of(name: str) -> str:
    """What a style reads, in a few words (for messages)."""
    return "a 1-10 rating" if name == _RATING else style_of(name).form


def verdict_style_names() -> tuple[str, ...]:
    """The style names that `parse_verdict` knows (the benchmarks' once they are imported), for
    flag help and template checks."""
    return (*_REGISTERED, _RATING)


def parse_verdict(text: str, style: str) -> Verdict | None:
    """The verdict ("A", "B" or "tie") that `text` states in `style`, or None."""
    if style == _RATING:
        raise ValueError(
            "verdict style 'pointwise' rates one answer per text: read each answer's rating "
            "with parse_rating() and compare them with verdict_from_ratings()"
        )
    return style_of(style).read(text)


def verdict_offsets(text: str, style: str) -> list[tuple[int, Verdict]]:
    """Where `text` names a side in a verdict token of `style`, in order: the offset of the
    side's letter (or of "tie") in the text as given, and the verdict it reads. `rmb`: each
    ``[[A]]``-style token; `json`: each verdict key's value that names one side or a tie in
    one word (``"winner": "Assistant A"``: the "A"). Other styles state a verdict over several
    tokens (``[[A>>B]]``) and have none. Echoed instructions are not told apart here: a caller
    that knows the verdict takes the last offset that reads as it."""
    if style == "rmb":
        return [(m.start(1), _rmb_letter(m.group(1))) for m in _RMB_TOKEN.finditer(text)]
    if style != "json":
        return []
    found: list[tuple[int, Verdict]] = []
    for pair in _JSON_PAIR.finditer(text):
        words = list(_JSON_SIDE_WORD.finditer(pair.group(1)))
        verdict = _side(pair.group(1))
        if words and verdict is not None and _side(words[-1].group()) == verdict:
            found.append((pair.start(1) + words[-1].start(), verdict))
    return found


def parse_rating(text: str) -> float | None:
    """The final 0-10 rating in a pointwise judge's text, or None.

    Forms, in order of trust: ``[[7]]`` (also ``Rating: [[7.5]]``, ``[[7/10]]``), then a
    labelled number (``Rating: 7``, ``**Score:** 7/10``, ``rating of 7``), then ``7/10``
    or ``7 out of 10``. The most trusted form present decides, by the same last-line and
    echoed-example rules as verdicts; numbers above 10 are not ratings.
    """
    plain = _Plain(text)
    for pattern in _RATING_PATTERNS:
        mentions = [
            _Mention(m.start(), m.end(), float(m.group(1)))
            for m in pattern.finditer(plain.text)
            if float(m.group(1)) <= 10
        ]
        mentions = [m for m in mentions if not plain.is_instruction(m)]
        if mentions:
            return _final(plain.text, mentions)
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
    if _ANY_BRACKETS.search(text) or _REFUSAL.match(_plain(text)) is None:
        return False  # the cheap checks first: most texts are no refusal
    return all(parse_verdict(text, style) is None for style in _PAIRWISE_STYLES)


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
    # (?<!_): a run of underscores is tried from its start only, not again from each of its
    # characters (quadratic on a long run between two letters)
    return re.sub(r"(?<!\w)_+|(?<!_)_+(?!\w)", "", text)


_FOLD = str.maketrans({"≫": ">>", "≪": "<<", "＞": ">", "＜": "<", "＝": "=", "’": "'"})

_ECHO_AFTER = re.compile(
    r"""["')\]]*\s*(?:if|when|for\s+(?:a\s+)?tie|means|indicates|denotes|represents"""
    r"""|signifies|stands\s+for)\b""",
    re.I,
)
_ECHO_BEFORE = re.compile(r"\bexamples?\b|\be\.g\.", re.I)
# The punctuation first, then the look-behinds: the scan over a whole text skips to it.
_SENTENCE_END = re.compile(r"[.!?](?<!\be\.g[.!?])(?<!\bi\.e[.!?])\s+")


# The longest match of the words looked for before a mention (_ECHO_BEFORE, _HEDGE).
_LONGEST_WORD = len("examples")


class _Plain:
    """A judge's text made plain, with its line and sentence starts found once, so that each
    mention's sentence is found by bisection: rescanning the line before every mention took
    time quadratic in the length of a long repetitive line."""

    def __init__(self, text: str) -> None:
        self.text = _plain(text)
        self._spans: dict[re.Pattern[str], tuple[list[int], list[int]]] = {}

    @cached_property
    def _sentence_starts(self) -> list[int]:
        """Where each line and each sentence starts, in order."""
        ends = chain(re.finditer("\n", self.text), _SENTENCE_END.finditer(self.text))
        return [0, *sorted(m.end() for m in ends)]

    def said_before(self, pattern: re.Pattern[str], pos: int) -> bool:
        """Whether `pattern` matches in the sentence that runs up to `pos`, on its line.

        `pos` is where a mention starts; `pattern` matches no blank, so none of its matches
        in the whole text straddles the start of a sentence."""
        sentence = self._sentence_starts[bisect_right(self._sentence_starts, pos) - 1]
        if pattern not in self._spans:
            found = list(pattern.finditer(self.text))
            self._spans[pattern] = ([m.start() for m in found], [m.end() for m in found])
        starts, ends = self._spans[pattern]
        first = bisect_left(starts, sentence)
        if first < len(starts) and ends[first] <= pos:
            return True
        # The sentence ends at `pos`, so a word that runs into the mention ("for example7/10")
        # ends there too: only a search that stops at `pos` finds it.
        return pattern.search(self.text, max(sentence, pos - _LONGEST_WORD), pos) is not None

    def is_instruction(self, mention: _Mention) -> bool:
        """Whether a mention is part of echoed format instructions rather than a verdict."""
        if _ECHO_AFTER.match(self.text, mention.end):
            return True
        return self.said_before(_ECHO_BEFORE, mention.start)


def _final(text: str, mentions: list[_Mention[_Value]]) -> _Value | None:
    """The value stated on the last line that holds a mention; None if that line disagrees.

    `mentions` are in order of position."""
    line_start = text.rfind("\n", 0, mentions[-1].start) + 1
    values = {m.value for m in mentions if m.start >= line_start}
    return values.pop() if len(values) == 1 else None


_Reader = Callable[[re.Match[str], _Plain], Verdict | None]


def _read(plain: _Plain, patterns: list[tuple[re.Pattern[str], _Reader]]) -> Verdict | None:
    """The final verdict among the matches of `patterns` (a reader returns None: not one)."""
    mentions = sorted(
        (
            _Mention(m.start(), m.end(), value)
            for pattern, reader in patterns
            for m in pattern.finditer(plain.text)
            if (value := reader(m, plain)) is not None
        ),
        key=lambda mention: mention.start,
    )
    mentions = [m for m in mentions if not plain.is_instruction(m)]
    return _final(plain.text, mentions) if mentions else None


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


def _rmb_token(match: re.Match[str], _: _Plain) -> Verdict | None:
    return _rmb_letter(match.group(1))


def _rmb_letter(value: str) -> Verdict:
    letter = value.upper()
    return "tie" if letter in ("C", "TIE") else letter  # type: ignore[return-value]


def _arena_token(match: re.Match[str], _: _Plain) -> Verdict | None:
    return _ARENA_LABELS.get(re.sub(r"\s", "", match.group(1).upper()))


_RMB_TOKEN = re.compile(rf"\[\[\s*(?:{_SIDE_NAME}\s*)?([abc]|tie)\s*\]\]", re.I)
_ARENA_TOKEN = re.compile(r"\[\[\s*([AB][\s<>=]*[AB])\s*\]\]", re.I)
_ANY_BRACKETS = re.compile(r"\[\[[^\[\]\n]{1,40}\]\]")

# --- prose ------------------------------------------------------------------------------

_VERDICT_WORD = (
    r"(?:final\s+verdict|verdict|final\s+decision|final\s+judge?ment|final\s+choice|winner"
    r"|(?:better|preferred|stronger)\s+(?:response|answer))"
)
# Possessive `\s*+` wherever optional words sit between blanks ("verdict  is  :  A"): a
# plain `\s*` there backtracks through every split of a long run of blanks (cubic in its
# length). What follows such a run never starts with a blank, so the readings are the same.
_AFTER_VERDICT_WORD = r"\s*+(?:is|:|-|–|—)?\s*+:?\s*+(?:that\s+)?"
_PROSE_SIDE = re.compile(
    rf"\b{_VERDICT_WORD}{_AFTER_VERDICT_WORD}(?:the\s+)?"
    rf"(?:{_SIDE_NAME}\s*)?\(?([ab])\)?(?![\w-])"
    r"(?=\s*(?:[.!]|,|;|$)|'s\b|\s+wins\b|\s+(?:is|was)\s+(?:\w+\s+)?(?:better|superior|preferred"
    r"|stronger|the\s+(?:better|winner|stronger|superior)))",
    re.I | re.M,
)
_PROSE_TIE = re.compile(
    rf"\b(?:{_VERDICT_WORD}|result|outcome){_AFTER_VERDICT_WORD}"
    r"(?:it(?:'s|\s+is)\s+)?(?:a\s+)?(?:tie|draw)\b"
    r"|\b(?:it'?s|it\s+is|this\s+is|that'?s)\s+a\s+(?:tie|draw)\b",
    re.I | re.M,
)
_HEDGE = re.compile(r"\b(?:not|never|if|whether|would|could|might)\b|n't\b", re.I)


def _prose_side(match: re.Match[str], _: _Plain) -> Verdict | None:
    return match.group(1).upper()  # type: ignore[return-value]


def _prose_tie(match: re.Match[str], plain: _Plain) -> Verdict | None:
    """A tie, unless its sentence negates or hedges it ("I wouldn't say it's a tie")."""
    return None if plain.said_before(_HEDGE, match.start()) else "tie"


_PROSE: list[tuple[re.Pattern[str], _Reader]] = [
    (_PROSE_SIDE, _prose_side),
    (_PROSE_TIE, _prose_tie),
]


# --- JSON -------------------------------------------------------------------------------

_JSON_KEYS = ("winner", "verdict", "better_response", "final_verdict")
_JSON_SIDE_WORD = re.compile(r"\b(?:[ab]|tie|draw)\b", re.I)
_JSON_PAIR = re.compile(
    rf"""["']?(?:{'|'.join(_JSON_KEYS)})["']?\s*:\s*["']([^"'\n]{{1,40}})["']\s*(?=[,}}\n]|$)""",
    re.I,
)


# json's own grammar, token by token: strict strings, and NaN and Infinity allowed.
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*+"')
_JSON_SCALAR = re.compile(
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null|NaN|-?Infinity"
)
_QUOTE_OR_ESCAPE = re.compile(r'"|\\.', re.S)

# An object's top-level members; a value that is not a string is None.
_Members = dict[str, str | None]


def _json_object_verdict(text: str) -> Verdict | None:
    """The side named by the last JSON object with a verdict key, or None.

    The objects are those that `json.JSONDecoder.raw_decode` reads when tried at each "{" in
    turn, going on after the end of each object it reads. Calling raw_decode so is quadratic
    on many "{" (each failure counts the lines before it, and the "{"s nested in a broken
    object are parsed again), so `_scan_object` parses json's grammar here, and one parse
    settles every "{" that it passes outside strings: those that close are objects, those
    still open where it fails are not. A later "{" is outside the strings of a parse from an
    earlier one when an even number of (unescaped) quotes lies between them; the others are
    settled by parses of their own.
    """
    quotes = [m.start() for m in _QUOTE_OR_ESCAPE.finditer(text) if m.group() == '"']
    objects: dict[int, tuple[int, _Members]] = {}
    parsed_to = [0, 0]  # by parity of the quotes before a "{": where its last parse stopped
    found: Verdict | None = None
    pos = text.find("{")
    while pos != -1:
        parity = bisect_left(quotes, pos) % 2
        if pos >= parsed_to[parity]:
            parsed_to[parity] = _scan_object(text, pos, objects)
        if pos in objects:
            end, members = objects[pos]
            found = _members_verdict(members) or found
            pos = text.find("{", end)
        else:
            pos = text.find("{", pos + 1)
    return found


@dataclass
class _Open:
    """A JSON object or array being parsed: where it starts and, for an object, its members
    so far and the key whose value comes next."""

    start: int
    members: _Members | None  # None: an array
    key: str = ""

    @property
    def closer(self) -> str:
        return "]" if self.members is None else "}"


def _scan_object(text: str, start: int, objects: dict[int, tuple[int, _Members]]) -> int:
    """Parse the JSON object at `start` as json does, but without recursion (json raises
    RecursionError past about 1,000 levels), and add each object that closes, nested ones
    too, to `objects` as its end and its members. Returns the end of the object at `start`,
    or the start of the token where the parse failed."""
    stack: list[_Open] = []
    pos, expect = start, "value"  # or "first" (just after "{" or "["), "key", ":", "next"
    while True:
        pos = _JSON_SPACE.match(text, pos).end()  # type: ignore[union-attr]
        char = text[pos : pos + 1]
        value: str | None = None  # the value read, if it is a string
        if stack and expect in ("first", "next") and char == stack[-1].closer:
            closed = stack.pop()
            pos += 1
            if closed.members is not None:
                objects[closed.start] = (pos, closed.members)
        elif expect == "next":
            if char != ",":
                return pos
            pos, expect = pos + 1, "value" if stack[-1].members is None else "key"
            continue
        elif expect == ":":
            if char != ":":
                return pos
            pos, expect = pos + 1, "value"
            continue
        elif expect == "key" or (expect == "first" and stack[-1].members is not None):
            if (key := _JSON_STRING.match(text, pos)) is None:
                return pos
            stack[-1].key = json.loads(key.group())
            pos, expect = key.end(), ":"
            continue
        elif char in ("{", "["):
            stack.append(_Open(pos, {} if char == "{" else None))
            pos, expect = pos + 1, "first"
            continue
        elif char == '"':
            if (string := _JSON_STRING.match(text, pos)) is None:
                return pos
            value, pos = json.loads(string.group()), string.end()
        elif (scalar := _JSON_SCALAR.match(text, pos)) is not None:
            pos = scalar.end()
        else:
            return pos
        # A value ended at `pos`.
        if not stack:
            return pos
        if stack[-1].members is not None:
            stack[-1].members[stack[-1].key] = value
        expect = "next"


def _members_verdict(members: _Members) -> Verdict | None:
    for key, value in members.items():
        if key.lower() in _JSON_KEYS and value is not None and (verdict := _side(value)):
            return verdict
    return None


# --- style readers ----------------------------------------------------------------------


def _read_rmb(text: str) -> Verdict | None:
    plain = _Plain(text)
    return _read(plain, [(_RMB_TOKEN, _rmb_token)]) or _read(plain, _PROSE)


def _read_arena_hard(text: str) -> Verdict | None:
    plain = _Plain(text)
    return _read(plain, [(_ARENA_TOKEN, _arena_token)]) or _read(plain, _PROSE)


def _read_json(text: str) -> Verdict | None:
    found = _json_object_verdict(text)
    if found is not None:
        return found
    pairs = [_side(m.group(1)) for m in _JSON_PAIR.finditer(text)]
    pairs = [p for p in pairs if p is not None]
    return pairs[-1] if pairs else _read(_Plain(text), _PROSE)


register_style(Style("rmb", _read_rmb, "[[A]] or [[B]]"))
register_style(Style("arena-hard", _read_arena_hard, "[[A>>B]] ... [[B>>A]]"))
register_style(Style("json", _read_json, '{"winner": "A"}'))


# --- ratings and refusals ---------------------------------------------------------------

_NUMBER = r"(\d{1,2}(?:\.\d+)?)(?!\.?\d)"
_RATING_PATTERNS = [
    re.compile(rf"\[\[\s*{_NUMBER}\s*(?:/\s*10\s*)?\]\]"),
    re.compile(
        # possessive blanks, as in _AFTER_VERDICT_WORD
        rf"\b(?:rating|score|grade)\s*+(?:is|of|:|=)?\s*+:?\s*+\[?\s*+{_NUMBER}\s*+\]?"
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
