"""Cache schema, grown by small numbered functions (as in Simon Willison's `llm`).

Each migration runs once, in order, inside a transaction, and is recorded in `_migrations`;
an old cache is upgraded in place, never discarded. Append new migrations; never edit
one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append(fn)
    return fn


def migrate(db: sqlite3.Connection) -> None:
    """Apply what is missing. Each step takes the write lock before looking, so two
    processes opening a new cache at once do not both apply it. `db` is in autocommit
    mode (isolation_level=None), so the transactions here are explicit."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for fn in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        try:
            if not db.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchone():
                fn(db)
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, unixepoch('subsec'))",
                    (fn.__name__,),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


@migration
def m001_responses(db: sqlite3.Connection) -> None:
    """One row per request key and sample index; the key is a hash of the canonical request."""
    db.execute(
        """CREATE TABLE responses (
            key TEXT NOT NULL,
            sample INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            template TEXT,
            template_sha256 TEXT,
            request BLOB,
            text TEXT NOT NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            finish_reason TEXT,
            refusal INTEGER NOT NULL DEFAULT 0,
            response_model TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (key, sample)
        )"""
    )
    db.execute("CREATE INDEX responses_model ON responses (provider, model)")


@migration
def m002_rewards(db: sqlite3.Connection) -> None:
    """Local reward models: one reward per model identity and exact text scored."""
    db.execute(
        """CREATE TABLE rewards (
            model_key TEXT NOT NULL,
            text_sha256 TEXT NOT NULL,
            model TEXT NOT NULL,
            reward REAL NOT NULL,
            truncated INTEGER NOT NULL DEFAULT 0,
            tokens INTEGER,
            created_at REAL NOT NULL,
            PRIMARY KEY (model_key, text_sha256)
        )"""
    )


@migration
def m003_runs(db: sqlite3.Connection) -> None:
    """A line per run, for `cache stats` hit rates."""
    db.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            judge TEXT NOT NULL,
            lookups INTEGER NOT NULL DEFAULT 0,
            hits INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0
        )"""
    )


@migration
def m004_batches(db: sqlite3.Connection) -> None:
    """Submitted provider batches, so a rerun after a crash resumes polling, never resubmits."""
    db.execute(
        """CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            items BLOB NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL
        )"""
    )
