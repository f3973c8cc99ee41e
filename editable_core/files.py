"""Writing files so that a crash or a bad input never leaves a half-written checkpoint or edit set."""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from contextlib import contextmanager
from typing import IO, Any, Iterator, Optional, Union

import torch

from .errors import InputError

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_open(path: PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file ``.NAME.PID.XXXXXXXX.tmp`` beside ``path``; on a clean exit it is renamed onto it.

    The data is fsync'ed before the rename (``os.replace``) and the folder after it, so a power loss leaves the
    old or the new file, never a torn one. On any exception the temporary file is removed and ``path`` keeps its
    old content (or stays absent). Temporary files of the same target left by a writer that was killed
    (SIGKILL, power loss: no process with their PID is alive) are removed first.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def temporaries(path: PathLike) -> list[str]:
    """The temporary files :func:`atomic_open` may have left for ``path`` (full paths)."""
    folder = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(r"\." + re.escape(os.path.basename(path)) + r"\.(?:(\d+)\.)?[A-Za-z0-9_]{8}\.tmp")
    return [os.path.join(folder, f) for f in os.listdir(folder) if pattern.fullmatch(f)]


def remove_stale_temporaries(path: PathLike) -> list[str]:
    """Remove the temporaries of ``path`` whose writer is gone (its PID is not alive); returns them."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return []
    removed = []
    for tmp in temporaries(path):
        fields = os.path.basename(tmp)[len(os.path.basename(path)) + 2:].split(".")
        pid = int(fields[0]) if len(fields) == 3 else None  # files of older versions carry no PID: stale
        if pid is not None and (pid == os.getpid() or _alive(pid)):
            continue
        try:
            os.unlink(tmp)
            removed.append(tmp)
        except FileNotFoundError:  # another writer cleaned it first
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _fsync_folder(folder: str) -> None:
    """Make the rename durable (POSIX; a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomically(obj: Any, path: PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_open`."""
    with atomic_open(path, "wb") as file:
        torch.save(obj, file)


def unreadable(path: PathLike, error: BaseException) -> Optional[InputError]:
    """The one-line :class:`InputError` for a ``torch.load(path, weights_only=True)`` that failed on the file
    itself (empty, truncated, not a torch file, or pickling a class that weights-only loading refuses);
    ``None`` when ``error`` is something else (a bug, which keeps its traceback)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    if isinstance(error, pickle.UnpicklingError) and found:
        return InputError(f"{path}: the file pickles a {found.group(1)} object, which loading with "
                          "weights_only=True refuses because unpickling it could run code; only tensors and plain "
                          "containers are read. Use a checkpoint written by this project's tools, or re-save its "
                          "tensors from a trusted copy")
    if isinstance(error, EOFError) or (isinstance(error, (RuntimeError, KeyError, pickle.UnpicklingError,
                                                          zipfile.BadZipFile, UnicodeDecodeError))
                                       and _torch_file_error(error)):
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        state = "empty" if size == 0 else f"truncated or not a torch checkpoint ({size} bytes)"
        return InputError(f"{path}: cannot read the checkpoint: the file is {state}; write it again or pass "
                          "another file")
    return None


def _torch_file_error(error: BaseException) -> bool:
    """Whether ``error`` comes from torch's deserializer on a damaged file (not from a bug elsewhere)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.startswith(("torch.serialization", "torch._weights_only_unpickler", "pickle", "zipfile")) or \
        "PytorchStreamReader" in str(error) or isinstance(error, pickle.UnpicklingError)


def load_torch_file(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a damaged or refused file is an :class:`InputError` naming it."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise InputError(f"{path}: checkpoint does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001  (classified: damaged files become one line, bugs re-raise)
        friendly = unreadable(path, error)
        if friendly is None:
            raise
        raise friendly from None
