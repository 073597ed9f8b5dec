"""Small RewardBench 2 data files in the published schema (allenai/reward-bench-2's parquet:
id, prompt, chosen, rejected, num_correct, num_incorrect, total_completions, models, subset,
additional_metadata), built here: rows of all six subsets, Ties as ref and tied rows sharing a
prompt id. Never the real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FILE = "data/test-00000-of-00001.parquet"
SCHEMA = pa.schema([
    ("id", pa.string()), ("prompt", pa.string()), ("chosen", pa.list_(pa.string())),
    ("rejected", pa.list_(pa.string())), ("num_correct", pa.int64()), ("num_incorrect", pa.int64()),
    ("total_completions", pa.int64()), ("models", pa.list_(pa.string())), ("subset", pa.string()),
    ("additional_metadata", pa.struct([("category", pa.string()), ("correct", pa.string()), ("index", pa.float64()),
                                       ("instruction_id_list", pa.list_(pa.string())), ("label", pa.string()),
                                       ("method", pa.string()), ("models", pa.list_(pa.string())),
                                       ("prompt_norm", pa.string()), ("subcategory", pa.string()),
                                       ("valid", pa.float64())])),
])
BEST_OF_4 = ("Factuality", "Precise IF", "Math", "Safety", "Focus")


def row(id: str, prompt: str, chosen: list[str], rejected: list[str], subset: str) -> dict[str, Any]:
    answers = len(chosen) + len(rejected)
    return {"id": id, "prompt": prompt, "chosen": chosen, "rejected": rejected, "num_correct": len(chosen),
            "num_incorrect": len(rejected), "total_completions": answers,
            "models": [f"model-{i % 3}" for i in range(answers)], "subset": subset,
            "additional_metadata": {"category": None, "correct": None, "index": None, "instruction_id_list": None,
                                    "label": None, "method": None, "models": None, "prompt_norm": None,
                                    "subcategory": None, "valid": None}}


def rows(per_subset: int = 4, ties: int = 4) -> list[dict[str, Any]]:
    """`per_subset` best-of-4 rows of each subset (ids repeat across subsets, as they may), and
    `ties` prompt ids of Ties, each a ref row (one correct answer, two wrong) and a tied row (two
    to four correct answers, two wrong), their prompts different."""
    made = []
    for s, subset in enumerate(BEST_OF_4):
        for i in range(per_subset):
            tag = f"{subset} {i}"
            made.append(row(str(100 + i), f"Question {tag}: what is {s} + {i}?", [f"Right answer to {tag}."],
                            [f"Wrong answer {k} to {tag}." for k in range(3 + (i == 1))], subset))
    for p in range(ties):
        made.append(row(f"ref:{p}", f"Name the one colour {p}.", [f"Correct colour {p}."],
                        [f"Not a colour {p}.", f"Also wrong {p}."], "Ties"))
        made.append(row(f"tied:{p}", f"Name any colour {p}.", [f"Colour {p}/{k}." for k in range(2 + p % 3)],
                        [f"Wrong colour {p}.", f"Another wrong {p}."], "Ties"))
    return made


def write(folder: Path, made: list[dict[str, Any]] | None = None) -> Path:
    """The parquet file in the hub's layout under `folder`; its path."""
    path = Path(folder) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows() if made is None else made, schema=SCHEMA), path)
    return path
