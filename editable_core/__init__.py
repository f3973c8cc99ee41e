"""editable_core: differentiable model editing and Editable Training (Sinitsin et al., ICLR 2020).

Imports only torch. The fairseq plugin (``editable_fairseq``) and the vision package (``editable_vision``)
build on it.
"""
from .constraints import classification_constraint, sequence_constraint, sequence_log_prob
from .edit import EditResult, edit, parse_backprop
from .editable import Editable, eval_mode
from .files import atomic_open, save_atomically
from .editors import (EDITORS, Adam, Editor, GradientDescent, Learnable, Momentum, RMSProp, RProp,
                      ScaledGradientDescent, make_editor, parse_learnable)
from .hyper import Interval, Positive
from .metrics import (ControlSet, EditMetrics, classification_error, drawdown, drawdown_standard_error,
                      edit_errors, evaluate_edits, mean_steps, sequential_edit_curve, standard_error, success_rate,
                      summarize)
from .objective import Objective, check_loc_batch, editable_objective, editable_training_loss, locality_kl
from .parameters import AppliedEdit, apply_edit, call, select_parameters

__version__ = "0.1.0"

__all__ = [
    "EDITORS", "Adam", "AppliedEdit", "ControlSet", "EditMetrics", "EditResult", "Editable", "Editor",
    "GradientDescent", "Interval", "Learnable", "Momentum", "Objective", "Positive", "RMSProp", "RProp",
    "ScaledGradientDescent", "apply_edit", "atomic_open", "call", "check_loc_batch", "classification_constraint",
    "classification_error", "drawdown", "drawdown_standard_error", "edit", "edit_errors", "editable_objective",
    "editable_training_loss", "eval_mode", "evaluate_edits", "locality_kl", "make_editor", "mean_steps",
    "parse_backprop", "parse_learnable", "save_atomically", "select_parameters", "sequence_constraint",
    "sequence_log_prob",
    "sequential_edit_curve", "standard_error", "success_rate", "summarize",
]
