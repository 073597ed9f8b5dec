"""RMB records: loading the official `RMB_dataset/` layout and selecting from it.

The layout is `{Pairwise_set,BoN_set}/{Helpfulness,Harmlessness}/.../<scenario>.json`,
each file a JSON list of records whose `category_path` is the file path without `.json`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

SETS = {"pairwise": "Pairwise_set", "bon": "BoN_set"}
SECTIONS = {"helpfulness": "Helpfulness", "harmlessness": "Harmlessness"}
ROLES = {"user", "assistant", "system"}
# `\ud800`-`\udfff` escapes, in either case: JSON accepts an unpaired one, Python decodes it
# into a string no encoder takes, so files holding one get a careful per-field check
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Answer:
    model: str
    text: str


@dataclass(frozen=True, eq=False)
class Record:
    """One RMB record: a conversation, the label-preferred answer and the answers it beats.

    Pairwise: `others` holds the single rejected answer. Best-of-N: `preferred` is
    `bon_best` and `others` is `loser_list`; the record is won only if every comparison is.
    Records compare and hash by identity: each is one entry of one file, and scoring keys
    dictionaries by them, which must not rehash whole conversations.
    """

    set: str  # "pairwise" | "bon"
    section: str  # "helpfulness" | "harmlessness"
    category_path: str
    uid: str
    conversation: tuple[Message, ...]
    preferred: Answer
    others: tuple[Answer, ...]
    file: str  # path relative to the dataset root
    index: int  # position in its file

    @property
    def section_key(self) -> str:
        return f"{self.set}_{self.section}"


@dataclass
class Selection:
    """What `--sets/--sections/--scenarios/--limit/--sample/--seed` ask for."""

    sets: Sequence[str] = ("pairwise", "bon")
    sections: Sequence[str] = ("helpfulness", "harmlessness")
    scenarios: Sequence[str] = ()
    limit: int | None = None
    sample: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.sets:
            if name not in SETS:
                raise DataError(f"--sets: unknown set {name!r} (choose from {', '.join(SETS)})")
        for name in self.sections:
            if name not in SECTIONS:
                raise DataError(
                    f"--sections: unknown section {name!r} (choose from {', '.join(SECTIONS)})"
                )
        if self.limit is not None and self.limit < 1:
            raise DataError(f"--limit must be at least 1, got {self.limit}")
        if self.sample is not None and not 0 < self.sample <= 1:
            raise DataError(f"--sample must be a fraction in (0, 1], got {self.sample}")

    def wants_file(self, category_path: str) -> bool:
        return not self.scenarios or any(
            fnmatch.fnmatch(category_path, pattern) for pattern in self.scenarios
        )

    def wants_record(self, record: Record) -> bool:
        if self.sample is None:
            return True
        digest = hashlib.sha256(f"{self.seed}:{record.category_path}:{record.uid}".encode())
        return int.from_bytes(digest.digest()[:8], "big") / 2**64 < self.sample


@dataclass
class Dataset:
    root: Path
    records: list[Record]
    files: list[str] = field(default_factory=list)  # scenario files read
    scenarios_found: int = 0  # scenario files present for the selected sets/sections
    sha256: dict[str, str] = field(default_factory=dict)  # file -> digest of the bytes read


def default_data_dir() -> Path:
    """`$RMB_DATA`, else the folder `rmb-judge data fetch` fills."""
    if os.environ.get("RMB_DATA"):
        return Path(os.environ["RMB_DATA"])
    return user_cache_dir() / "RMB_dataset"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rmb-judge"


def scenario_files(root: Path, sets: Iterable[str], sections: Iterable[str]) -> list[Path]:
    """Every scenario file present under root for these sets and sections, sorted."""
    found: list[Path] = []
    for set_name in sets:
        for section in sections:
            folder = root / SETS[set_name] / SECTIONS[section]
            if folder.is_dir():
                found.extend(sorted(folder.rglob("*.json")))
    return found


def check_root(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: RMB data folder not found (give --data DIR, set RMB_DATA, "
            "or run `rmb-judge data fetch`)"
        )
    if not any((root / folder).is_dir() for folder in SETS.values()) and any(
        not entry.name.startswith(".") for entry in root.iterdir()
    ):  # an empty folder (or one holding only a fetch's hidden staging folder) is just unfilled
        raise DataError(f"{root}: not an RMB_dataset folder (no Pairwise_set/ or BoN_set/ inside)")
    return root


def load(root: Path, selection: Selection | None = None) -> Dataset:
    """Load and select records; raises DataError naming the file and record on bad input,
    or when the root holds no scenario file at all (an unfilled or failed download)."""
    selection = selection or Selection()
    root = check_root(root)
    files = scenario_files(root, selection.sets, selection.sections)
    if not files and not scenario_files(root, SETS, SECTIONS):
        raise DataError(
            f"{root}: no RMB scenario files found (run `rmb-judge data fetch`, "
            "or give --data DIR / set RMB_DATA)"
        )
    dataset = Dataset(root=root, records=[], scenarios_found=len(files))
    for path in files:
        relative = path.relative_to(root).as_posix()
        if not selection.wants_file(relative.removesuffix(".json")):
            continue
        dataset.files.append(relative)
        chosen = [
            r for r in read_file(root, path, dataset.sha256) if selection.wants_record(r)
        ]
        dataset.records.extend(chosen[: selection.limit] if selection.limit else chosen)
    return dataset


def read_file(root: Path, path: Path, digests: dict[str, str] | None = None) -> Iterator[Record]:
    """The file's records; its SHA-256 goes into `digests` (for the run manifest)."""
    relative = path.relative_to(root).as_posix()
    try:
        raw = path.read_bytes()
        if digests is not None:
            digests[relative] = hashlib.sha256(raw).hexdigest()
        items = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{relative}: cannot read as JSON: {exc}") from None
    if not isinstance(items, list):
        raise DataError(f"{relative}: expected a JSON list of records, got {type(items).__name__}")
    set_name = next(k for k, v in SETS.items() if relative.startswith(v + "/"))
    section = next(k for k, v in SECTIONS.items() if relative.split("/")[1] == v)
    careful = SURROGATE_ESCAPE.search(raw) is not None  # the field walk only where it can find one
    for index, item in enumerate(items):
        record = parse_record(item, set_name, section, relative, index)
        if careful and (found := _unpaired_surrogate(item, "")):
            name, char = found
            raise DataError(
                f"{relative}: record {index}: {name} holds an unpaired surrogate ({char}), "
                "not valid Unicode"
            )
        yield record


def parse_record(item: object, set_name: str, section: str, file: str, index: int) -> Record:
    where = f"{file}: record {index}"
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    uid_key = "pair_uid" if set_name == "pairwise" else "bon_uid"
    try:
        uid = str(item[uid_key])
        conversation = tuple(_message(m, where) for m in item["conversation_input"])
        if set_name == "pairwise":
            preferred = _answer(item["chosen"], where, "chosen")
            others: tuple[Answer, ...] = (_answer(item["reject"], where, "reject"),)
        else:
            preferred = _answer(item["bon_best"], where, "bon_best")
            others = tuple(_answer(a, where, "loser_list") for a in item["loser_list"])
    except KeyError as exc:
        raise DataError(f"{where}: missing field {exc.args[0]!r}") from None
    except TypeError as exc:
        raise DataError(f"{where}: malformed record ({exc})") from None
    if not conversation or conversation[-1].role != "user":
        raise DataError(f"{where}: conversation_input must end with a user message")
    if not others:
        raise DataError(f"{where}: no answer to compare against")
    category_path = item.get("category_path") or file.removesuffix(".json")
    return Record(set_name, section, category_path, uid, conversation, preferred, others, file, index)


def _message(item: object, where: str) -> Message:
    if not isinstance(item, dict) or item.get("role") not in ROLES:
        raise DataError(f"{where}: conversation message without a valid role")
    if not isinstance(item.get("content"), str):
        raise DataError(f"{where}: conversation message content must be a string")
    return Message(item["role"], item["content"])


def _answer(item: object, where: str, name: str) -> Answer:
    if not isinstance(item, dict) or not isinstance(item.get("answer"), str):
        raise DataError(f"{where}: {name} must be an object with a string 'answer'")
    return Answer(str(item.get("llm_name", "")), item["answer"])


def _unpaired_surrogate(value: object, name: str) -> tuple[str, str] | None:
    """The first string under `value` (a key or a value) that cannot be encoded: its field
    path, printable, and the surrogate as an escape. A valid escaped pair decodes to one
    character and passes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            printable = name.encode("utf-8", "backslashreplace").decode("utf-8")
            return printable, f"\\u{ord(value[exc.start]):04x}"
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _unpaired_surrogate(item, f"{name}[{index}]"):
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{name}.{key}" if name else key
            if found := _unpaired_surrogate(key, path) or _unpaired_surrogate(item, path):
                return found
    return None
