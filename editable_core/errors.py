"""The error type of expected failures: bad input a user can fix, printed by console tools as one line.

Anything else (``TypeError``, ``KeyError``, ``RuntimeError`` from a bug) keeps its traceback.
"""
from __future__ import annotations

import types


class InputError(ValueError):
    """A file, flag or value that cannot be used; the message names it and says what to do."""


def is_expected(error: BaseException) -> bool:
    """Whether a console tool should print ``error`` as one line instead of a traceback.

    True for :class:`InputError`, for ``OSError`` (a file that is missing, a folder, no permission: the
    message names the path), and for a ``ValueError`` raised by this project's own checks (its innermost
    frame is in an ``editable_*`` module); a ``ValueError`` from deep inside a library is a bug.
    """
    if isinstance(error, (InputError, OSError)):
        return True
    if not isinstance(error, ValueError):
        return False
    tb: types.TracebackType | None = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.split(".")[0] in ("editable_core", "editable_fairseq", "editable_vision")


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message (an ``OSError``: the file it names and why)."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
