"""What the console tools share: loading a checkpoint with its task, choosing the editor, reporting errors.

:func:`load_for_tools` loads a checkpoint through fairseq (its config becomes omegaconf objects) and builds its
task and model; the patch tool reads the file a second time, as saved, to write it back with only the edited
tensors changed.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

from fairseq import tasks
from torch import nn

from editable_core import EDITORS, make_editor, parse_learnable
from editable_core.errors import exit_status, is_expected, one_line

from ..checkpoints import load_checkpoint
from ..decoder_split import EDITABLE_PARTS
from ..editing import HYPER_SHAPE, editor_from_checkpoint
from ..literal_config import reading_checkpoint
from ..tasks import editable_translation  # noqa: F401  (registers the task editable checkpoints name)

logger = logging.getLogger(__name__)

#: Defaults of an edit on a checkpoint that was not trained with ``editable_cross_entropy``.
DEFAULT_EDITOR, DEFAULT_EDIT_LR, DEFAULT_MAX_STEPS, DEFAULT_PART = "rmsprop", 1e-3, 10, "last"


@dataclass
class Loaded:
    """A checkpoint ready for inference: its raw ``state`` (as saved), ``task`` and ``model`` (eval mode)."""

    path: str
    state: dict
    task: Any
    model: nn.Module
    data: str


def load_for_tools(path: str, data: Optional[str] = None) -> Loaded:
    """Load ``path`` and build its task (dictionaries from ``data``, default the checkpoint's) and model."""
    state = load_checkpoint(path)
    cfg = state.get("cfg")
    if cfg is None or "model" not in state:
        raise ValueError(f"checkpoint {path!r} is not a fairseq checkpoint (no 'cfg'/'model' entries)")
    data = data or cfg.task.data
    if not os.path.isdir(data):
        raise FileNotFoundError(f"data directory {data!r} (dictionaries of {path}) does not exist; pass --data")
    cfg.task.data = data
    with reading_checkpoint(path):  # config strings fairseq evaluates are read as literals, errors name path
        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
    try:
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {path!r} does not fit the dictionaries in {data!r}: {error}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Loaded(path, state, task, model, data)


def is_editable(state: dict) -> bool:
    """Whether the checkpoint was trained with ``--criterion editable_cross_entropy``."""
    criterion = (state.get("cfg") or {}).get("criterion") or {}
    return criterion.get("_name") == "editable_cross_entropy"


@dataclass
class EditSettings:
    """How a checkpoint is edited: ``editor`` (hyper-parameters possibly learned), ``lr`` alpha, ``k``, part."""

    editor: Any
    lr: float
    max_steps: int
    part: str
    loc_coef: Optional[float]  # c_loc of Editable Training; None for a normally trained checkpoint

    def label(self) -> str:
        """The row name of Table 6: ``Baseline training, α=0.001`` or ``Editable, c_loc=100, α=0.001``."""
        if self.loc_coef is None:
            return f"Baseline training, α={self.lr:g}"
        return f"Editable, c_loc={self.loc_coef:g}, α={self.lr:g}"


def edit_settings(state: dict, editor: Optional[str] = None, lr: Optional[float] = None,
                  max_steps: Optional[int] = None, part: Optional[str] = None) -> EditSettings:
    """The editor of an editable checkpoint (learned hyper-parameters, its alpha and part), or the defaults.

    Explicit ``editor``/``lr``/``max_steps``/``part`` override what the checkpoint says.
    """
    if is_editable(state):
        trained, cfg = editor_from_checkpoint(state)
        name = editor or cfg.get("editor", DEFAULT_EDITOR)
        alpha = float(lr if lr is not None else cfg.get("edit_lr", DEFAULT_EDIT_LR))
        if name == cfg.get("editor", DEFAULT_EDITOR) and lr is None:
            chosen = trained
        else:  # another editor or alpha: fresh, keeping the learned hyper-parameters where they still apply
            chosen = make_editor(name, alpha, parse_learnable(cfg.get("edit_learnable", "auto")), shape=HYPER_SHAPE)
            if name == cfg.get("editor", DEFAULT_EDITOR):
                learned = {k: v for k, v in trained.state_dict().items() if not k.startswith("lr.")}
                chosen.load_state_dict({**chosen.state_dict(), **learned})
        steps = max_steps or DEFAULT_MAX_STEPS
        return EditSettings(chosen, alpha, steps, part or cfg.get("editable_layers", DEFAULT_PART),
                            float(cfg.get("loc_coef", 100.0)))
    alpha = float(lr if lr is not None else DEFAULT_EDIT_LR)
    return EditSettings(make_editor(editor or DEFAULT_EDITOR, alpha, False, shape=HYPER_SHAPE), alpha,
                        max_steps or DEFAULT_MAX_STEPS, part or DEFAULT_PART, None)


def add_edit_arguments(parser) -> None:
    """Flags choosing the edit (each defaults to the checkpoint's own for an editable checkpoint)."""
    group = parser.add_argument_group("edit (default: the checkpoint's own when it was trained editable)")
    group.add_argument("--editor", choices=sorted(EDITORS), default=None,
                       help=f"the optimiser that edits (default {DEFAULT_EDITOR})")
    group.add_argument("--edit-lr", type=float, default=None, help=f"alpha (default {DEFAULT_EDIT_LR:g})")
    group.add_argument("--edit-max-steps", type=int, default=None,
                       help=f"k, the most editor steps per edit (default {DEFAULT_MAX_STEPS})")
    group.add_argument("--editable-layers", choices=EDITABLE_PARTS, default=None,
                       help=f"what an edit may change (default {DEFAULT_PART})")


def check_edit_arguments(args) -> None:
    if args.edit_lr is not None and not args.edit_lr > 0:
        raise ValueError(f"--edit-lr must be > 0, got {args.edit_lr}")
    if args.edit_max_steps is not None and args.edit_max_steps < 1:
        raise ValueError(f"--edit-max-steps must be >= 1, got {args.edit_max_steps}")


def run_tool(prog: str, main: Callable[[], None]) -> None:
    """Run a console tool: expected failures (:func:`editable_core.errors.is_expected`) become one line
    ``prog: error: ...`` on stderr and exit status 1 (3 for an edit that did not take,
    :func:`editable_core.errors.exit_status`); anything else is a bug and keeps its traceback."""
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    try:
        main()
    except (OSError, ValueError) as error:
        if not is_expected(error):  # a bug: keep the traceback
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(exit_status(error))
