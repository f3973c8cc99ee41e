"""The error types of expected failures, printed by console tools as one line, and their exit statuses.

Bad input a user can fix exits 1; an edit that ran on good input and did not take exits
:data:`EDIT_FAILED_STATUS`, so that a script can tell "try another edit" from "fix your files". Anything else
(``TypeError``, ``KeyError``, ``RuntimeError`` from a bug) keeps its traceback.
"""
from __future__ import annotations

import types


#: exit status of a console tool whose edit did not take (nothing was written); other expected failures exit 1
EDIT_FAILED_STATUS = 3


class InputError(ValueError):
    """A file, flag or value that cannot be used; the message names it and says what to do."""


class EditFailed(InputError):
    """An edit of valid input that did not succeed within its steps; the message says what to try."""


def exit_status(error: BaseException) -> int:
    """The exit status of a console tool that stops on the expected failure ``error``."""
    return EDIT_FAILED_STATUS if isinstance(error, EditFailed) else 1


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
