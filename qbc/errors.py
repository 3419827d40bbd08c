"""Errors a user can cause, as typed exceptions.

Every exception here is a :class:`QbcError`; the ``qbc`` command turns one into a single line on
stderr and exit code 2 instead of a traceback. Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class QbcError(Exception):
    """Base class of every error a user can cause (bad names, bad numbers, bad files).

    The message is one line: whitespace runs, newlines included (an underlying library's
    multi-line message quoted in it), become single spaces."""

    exit_code = 2

    def __init__(self, *args: object):
        if args and isinstance(args[0], str):
            args = (" ".join(args[0].split()), *args[1:])
        super().__init__(*args)


class UnknownNameError(QbcError, KeyError):
    """A name (quantizer, env id, expert, policy, command) that is not registered."""

    def __init__(self, kind: str, name: object, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Valid {kind} names: {', '.join(valid)}."
        )
        self.kind, self.name, self.valid = kind, name, valid

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class InvalidValueError(QbcError, ValueError):
    """A number or array that is out of range, of the wrong shape, or not finite."""


class NonFiniteObservationError(InvalidValueError):
    """Observations holding NaN or inf given to a policy (``Policy.act``)."""


class NotFittedError(QbcError, RuntimeError):
    """A fitted object (quantizer, tokenizer) used before ``fit``."""


class CorruptFileError(QbcError, ValueError):
    """A checkpoint, tokenizer, dataset or config file that cannot be read back."""


class UserCodeError(QbcError):
    """The user's own code (an actor imported as ``module:object``) failed to import, to build
    or to act, or returned actions qbc cannot use; the message names the object and what it
    did."""


class LockTimeoutError(QbcError, TimeoutError):
    """A wait for another qbc process's lock (a sweep waiting for the dataset another sweep is
    collecting) that ran out of time; the message names the holder and the lock file."""


class OutputExistsError(QbcError, FileExistsError):
    """An output that already exists and would be overwritten without ``--overwrite``."""


class QbcWarning(UserWarning):
    """Something a user should know that does not stop the run (the CLI prints it as one line)."""


class ClippedActionsWarning(QbcWarning):
    """Actions outside a tokenizer's range were clipped to its edge cells (counted in the
    message)."""
