"""Errors a user sees as one clear line; everything else is a bug with a traceback."""


class RmbJudgeError(Exception):
    """Base: the CLI prints `rmb-judge: <message>` and exits non-zero."""

    exit_code = 2


class DataError(RmbJudgeError):
    """Bad or missing RMB data: the message names the file and record."""


class UsageError(RmbJudgeError):
    """A bad flag or flag combination."""


class FatalProviderError(RmbJudgeError):
    """The provider refused in a way retrying cannot fix (bad key, unknown model, bad request)."""

    exit_code = 3


class CacheMiss(RmbJudgeError):
    """`--offline` and the cache does not hold an answer."""

    exit_code = 4
