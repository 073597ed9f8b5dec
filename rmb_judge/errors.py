"""Errors a user sees as one clear line; everything else is a bug with a traceback.

Each class carries the exit status the command line returns for it (see `cli.EXIT_CODES`).
"""


class RmbJudgeError(Exception):
    """Base: the CLI prints `rmb-judge: <message>` and exits non-zero."""

    exit_code = 2


class DataError(RmbJudgeError):
    """Bad or missing RMB data: the message names the file and record."""


class UsageError(RmbJudgeError):
    """A bad flag or flag combination."""


class CacheError(RmbJudgeError):
    """The cache file cannot be used as asked: corrupt, foreign, newer, read-only or full.
    The message names the file and says what to do; nothing in it is overwritten."""


class CacheFull(CacheError):
    """A write failed for lack of space (or another I/O error): the run stops, keeping
    what is cached; answers not yet stored are saved beside the cache."""

    exit_code = 1


class FatalProviderError(RmbJudgeError):
    """The provider refused in a way retrying cannot fix (bad key, unknown model, bad
    request), or its endpoint cannot be reached at all."""

    exit_code = 3


class CacheMiss(RmbJudgeError):
    """`--offline` and the cache does not hold an answer."""

    exit_code = 4


class Declined(RmbJudgeError):
    """The user answered no when asked to confirm the cost: nothing was sent."""

    exit_code = 130


class StoppedByError(RmbJudgeError):
    """Something unexpected stopped the run after work began (out of memory, a bug): what was
    answered is cached and a partial summary is written; the cause is chained."""

    exit_code = 1
