"""Config strings that fairseq evaluates are read as literals: a checkpoint's configuration is data, never code.

fairseq hands some configuration strings to Python's ``eval`` while it builds a task, model, criterion,
optimizer or generator: ``utils.eval_str_list`` (``adaptive_softmax_cutoff``, ``pipeline_balance``),
``utils.eval_str_dict`` (``xformers_att_config``), ``utils.eval_bool`` (``left_pad_source``, LSTM's
``decoder_attention``) and bare ``eval(args.encoder_layers)`` in fconv, wav2vec, HuBERT, ``character_filters``
of the language models, the optimizers' ``adam_betas``. A checkpoint that passes weights-only unpickling can
therefore still run code when its model is built. :func:`install` (run when the plugin is imported, and again
before each checkpoint load) replaces all of them, in every imported ``fairseq``/``fairseq_cli`` module, with
:func:`literal`: a literal expression (what ``ast.literal_eval`` reads, plus ``+`` and ``*`` between literals,
which fairseq's own defaults use: ``"[(512, 3)] * 20"``) or an :class:`UnsafeConfigValue` naming the
checkpoint, the field and the fairseq line that asked.
"""
from __future__ import annotations

import ast
import contextlib
import contextvars
import linecache
import os
import re
import sys
from typing import Any, Iterator, Optional

#: The longest list, tuple or string a ``*`` may build (fairseq's own defaults stay far below it).
MAX_ITEMS = 100_000
#: The names fairseq uses for helpers that evaluate their argument.
EVALUATORS = ("eval_str_list", "eval_str_dict", "eval_bool")

_checkpoint: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("editable_checkpoint", default=None)
_CALL = re.compile(r"\b(?:eval_str_list|eval_str_dict|eval_bool|eval)\(\s*([A-Za-z_][\w.]*)")


class UnsafeConfigValue(ValueError):
    """A configuration string that fairseq would evaluate is not a literal expression."""


def literal(text: str) -> Any:
    """The value of ``text`` if it is a literal expression, else :class:`UnsafeConfigValue`.

    Literal expressions: numbers, strings, bytes, ``True``/``False``/``None``, lists, tuples, sets and dicts of
    them, unary ``+``/``-``, and ``+``/``*`` between them (``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``). No name,
    attribute, call, subscript or comprehension is ever looked up or run.
    """
    if not isinstance(text, str):
        raise UnsafeConfigValue(f"expected a string holding a literal, got {type(text).__name__}")
    try:
        return _value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as error:
        reason = error.args[0] if isinstance(error, UnsafeConfigValue) else "not a literal"
        raise UnsafeConfigValue(f"{_short(text)} is {reason}") from None


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Mult):
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) \
                        and len(seq) * max(times, 0) > MAX_ITEMS:
                    raise UnsafeConfigValue(f"a literal of more than {MAX_ITEMS} items")
            return left * right
        return left + right
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_value(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):  # {**name}
            raise ValueError("not a literal")
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)  # constants, -1, 1+2j; raises ValueError on names, calls, attributes


def _short(text: str, limit: int = 120) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit - 4] + "...'"


def _where() -> str:
    """``field (fairseq file:line)`` of the fairseq code that asked for the evaluation."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    if frame is None:
        return "a config value"
    filename, line = frame.f_code.co_filename, frame.f_lineno
    source = " ".join(linecache.getline(filename, n).strip() for n in range(line, line + 3))
    match = _CALL.search(source)
    parts = filename.replace(os.sep, "/").split("/")
    short = "/".join(parts[parts.index("fairseq"):]) if "fairseq" in parts else filename
    field = match.group(1) if match else "a config value"
    return f"{field} ({short}:{line})"


def _refuse(error: UnsafeConfigValue) -> UnsafeConfigValue:
    checkpoint = _checkpoint.get()
    prefix = f"checkpoint {checkpoint}: " if checkpoint else ""
    return UnsafeConfigValue(f"{prefix}config field {_where()}: {error.args[0]}; fairseq would run it as Python "
                             "code, so it was refused (only literals such as [1000, 5000] or (0.9, 0.98) are read)")


def safe_eval(source: Any, globals: Any = None, locals: Any = None) -> Any:  # noqa: A002 (eval's signature)
    """What ``eval`` is inside fairseq's modules once :func:`install` ran: :func:`literal` of a string."""
    try:
        return literal(source)
    except UnsafeConfigValue as error:
        raise _refuse(error) from None


def eval_str_list(x: Any, type: Any = float) -> Optional[list]:  # noqa: A002 (fairseq's signature)
    """``fairseq.utils.eval_str_list`` reading literals only."""
    if x is None:
        return None
    if isinstance(x, str):
        x = safe_eval(x)
    try:
        return list(map(type, x))
    except TypeError:
        return [type(x)]


def eval_str_dict(x: Any, type: Any = dict) -> Any:  # noqa: A002 (fairseq's signature)
    """``fairseq.utils.eval_str_dict`` reading literals only."""
    if x is None:
        return None
    return safe_eval(x) if isinstance(x, str) else x


def eval_bool(x: Any, default: bool = False) -> bool:
    """``fairseq.utils.eval_bool`` reading literals only (a non-string still gives ``default``, as in fairseq)."""
    if x is None or not isinstance(x, (str, bytes)):
        return default
    return bool(safe_eval(x))


_SAFE = {"eval_str_list": eval_str_list, "eval_str_dict": eval_str_dict, "eval_bool": eval_bool}


def _fairseq_modules() -> list:
    return [m for name, m in list(sys.modules.items()) if m is not None
            and (name == "fairseq" or name.startswith(("fairseq.", "fairseq_cli")))]


def install() -> None:
    """Make every imported fairseq module evaluate config strings with :func:`literal` (idempotent).

    Replaces ``eval_str_list``/``eval_str_dict``/``eval_bool`` wherever a module holds fairseq's originals, and
    gives each module a global ``eval`` (found before the builtin) that reads literals only. Wraps
    ``checkpoint_utils.load_model_ensemble_and_task`` and ``load_checkpoint_to_cpu`` so modules imported later
    are covered before a checkpoint's model is built, and errors name the checkpoint.
    """
    from fairseq import checkpoint_utils, utils

    originals = {name: getattr(utils, name) for name in EVALUATORS}
    for module in _fairseq_modules():
        namespace = vars(module)
        for name, original in originals.items():
            if original is not _SAFE[name] and namespace.get(name) is original:
                namespace[name] = _SAFE[name]
        if namespace.get("eval", safe_eval) is safe_eval:
            namespace["eval"] = safe_eval
    for name in ("load_checkpoint_to_cpu", "load_model_ensemble_and_task"):
        original = getattr(checkpoint_utils, name)
        if not getattr(original, "_editable_literal", False):
            setattr(checkpoint_utils, name, _naming_checkpoint(original))


def _naming_checkpoint(load: Any) -> Any:
    def wrapper(filenames: Any, *args: Any, **kwargs: Any) -> Any:
        install()
        names = filenames if isinstance(filenames, (list, tuple)) else [filenames]
        with reading_checkpoint(", ".join(map(str, names))):
            return load(filenames, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = load.__name__, load.__doc__, load  # type: ignore
    wrapper._editable_literal = True  # type: ignore[attr-defined]
    return wrapper


@contextlib.contextmanager
def reading_checkpoint(path: str) -> Iterator[None]:
    """Name ``path`` in the errors of config values evaluated inside the block (a model being built from it)."""
    install()
    token = _checkpoint.set(path)
    try:
        yield
    finally:
        _checkpoint.reset(token)
