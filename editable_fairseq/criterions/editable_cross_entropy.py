"""Criterion ``editable_cross_entropy``: Editable Training of a Transformer, equation (2) of the paper.

The returned loss is ``sum_tokens(L_base) + c_edit * L_edit + c_loc * L_loc`` for a batch, where ``L_base``
is fairseq's label-smoothed cross-entropy summed over the batch's target tokens, ``L_edit =
max(0, l_e(Edit^k(theta)))`` for the batch's edit (task ``editable_translation``) and ``L_loc`` the KL
divergence between the original and the edited model, averaged over the batch's target tokens. The edit
terms are added once per batch, as in the authors' criterion (``mt/fairseq_criterion.py`` of
``xtinkt/editable``, which produced Table 6): after fairseq divides by ``sample_size`` (the batch's target
tokens), each token carries ``c / sample_size`` of them, about 0.03 for ``c = 100`` and 3,000-token batches.

One training forward:

1. the plain pass over the batch (through fairseq's DDP wrapper), recording the input of the editable
   part and the RNG state there;
2. the edit, in eval mode: encoder once on ``s``, decoder prefix once on ``y_0..y_k``, then up to ``k``
   editor steps that run only the suffix, with ``create_graph=True``;
3. the edited pass over the batch, by ``--loc-mode``: ``replay`` runs only the suffix, on the recorded
   input with the recorded RNG state (same dropout masks), so ``L_loc`` is exactly 0 when the edit changed
   nothing; ``eval`` runs the whole edited model in eval mode (no dropout), as deployed, against the
   training-mode reference, as the authors' criterion does: ``L_loc`` then also pulls the dropout-free
   model toward the predictions the base loss trains, and costs a full extra pass.

``--edit-backprop`` picks the outer gradient through step 2: ``full`` (exact), ``truncated:M`` or
``first_order`` (cheaper; they drop second-order terms, see ``editable_core.parse_backprop``).

The logged ``loss``/``nll_loss`` are the plain label-smoothed ones (comparable with a baseline run);
``objective`` is the optimised total per token (base 2, like ``loss``), ``l_edit``, ``l_loc``, ``edit_success`` and
``edit_steps`` are per edit, and ``editor_<name>`` the editor's learnable hyper-parameters.
Validation does a no-graph edit per batch and logs the same metrics.
"""
# no `from __future__ import annotations`: fairseq builds the command line from the config's real types

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (LabelSmoothedCrossEntropyCriterion,
                                                             LabelSmoothedCrossEntropyCriterionConfig)
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from editable_core import EDITORS, eval_mode, locality_kl, make_editor, parse_backprop, parse_learnable

from ..decoder_split import EDITABLE_PARTS, split_for, unwrap_model
from ..editing import HYPER_SHAPE, edit_translation

_SUMMED_PER_EDIT = ("l_edit", "l_loc", "edit_success", "edit_steps")
_PREFIX_INPUTS = ("src_tokens", "src_lengths", "prev_output_tokens")
LOC_MODES = ("replay", "eval")


@dataclass
class EditableCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig):
    edit_coef: float = field(default=100.0, metadata={
        "help": "c_edit: weight of L_edit = max(0, l_e(Edit(theta))) in the batch loss sum_tokens(L_base) + "
                "c_edit * L_edit + c_loc * L_loc (added once per batch, as the paper's code; fairseq then divides "
                "by the batch's target tokens)"})
    loc_coef: float = field(default=100.0, metadata={
        "help": "c_loc: weight of L_loc, the KL between the original and the edited model averaged over the "
                "batch's target tokens, in the same batch loss as --edit-coef"})
    edit_max_steps: int = field(default=10, metadata={"help": "k: the most editor steps per edit"})
    editor: ChoiceEnum(sorted(EDITORS)) = field(default="rmsprop",
                                                metadata={"help": "the differentiable optimiser that edits"})
    edit_lr: float = field(default=1e-3, metadata={"help": "learning rate alpha of the editor"})
    edit_learnable: str = field(
        default="auto",
        metadata={"help": "editor hyper-parameters trained with the model and saved in checkpoints: 'auto' (all "
                          "but the learning rate, e.g. RMSProp beta), 'none', 'all' or a comma-separated list"},
    )
    edit_backprop: str = field(
        default="full",
        metadata={"help": "outer gradient through the edit: 'full' (equation 2, exact), 'truncated:M' (exact "
                          "through the last M editor steps, the earlier ones first order) or 'first_order' (every "
                          "editor gradient a constant: drops all second-order terms; cheapest)"},
    )
    editable_layers: ChoiceEnum(list(EDITABLE_PARTS)) = field(
        default="last",
        metadata={"help": "what an edit may change: the final decoder layer, the penultimate one, or the "
                          "output projection"},
    )
    loc_mode: ChoiceEnum(list(LOC_MODES)) = field(
        default="replay",
        metadata={"help": "the edited pass of L_loc: 'replay' the editable part with the plain pass's dropout masks "
                          "(L_loc = 0 for an edit that changes nothing), or the whole edited model in 'eval' mode "
                          "against the training-mode reference, as the paper's code"},
    )
    edit_margin: float = field(
        default=0.0,
        metadata={"help": "added to l_e: 0 is the paper's constraint; a margin no edit reaches makes every edit "
                          "take all k steps (for benchmarks)"},
    )


@register_criterion("editable_cross_entropy", dataclass=EditableCrossEntropyConfig)
class EditableCrossEntropyCriterion(LabelSmoothedCrossEntropyCriterion):
    """Token-summed label-smoothed cross-entropy plus ``c_edit * L_edit + c_loc * L_loc`` once per batch.

    The editor is a submodule: fairseq's trainer optimises its learnable hyper-parameters with the model,
    all-reduces their gradients (it wraps a criterion with parameters for DDP) and saves them in the
    ``criterion`` entry of checkpoints.
    """

    needs_edits = True

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 edit_coef=100.0, loc_coef=100.0, edit_max_steps=10, editor="rmsprop", edit_lr=1e-3,
                 edit_learnable="auto", editable_layers="last", edit_margin=0.0, edit_backprop="full",
                 loc_mode="replay"):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        if not hasattr(task, "edit_sample_for"):
            raise ValueError("--criterion editable_cross_entropy needs --task editable_translation "
                             f"(got {type(task).__name__})")
        if isinstance(edit_max_steps, bool) or int(edit_max_steps) != edit_max_steps or edit_max_steps < 1:
            raise ValueError(f"--edit-max-steps (k) must be an integer >= 1, got {edit_max_steps!r}")
        for name, value in (("--edit-coef", edit_coef), ("--loc-coef", loc_coef)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if not edit_lr > 0:
            raise ValueError(f"--edit-lr must be > 0, got {edit_lr!r}")
        if str(editable_layers) not in EDITABLE_PARTS:
            raise ValueError(f"--editable-layers must be one of {EDITABLE_PARTS}, got {editable_layers!r}")
        try:
            parse_backprop(edit_backprop)
        except ValueError as error:
            raise ValueError(f"--edit-backprop: {error}") from None
        self.edit_backprop = str(edit_backprop)
        self.edit_coef = float(edit_coef)
        self.loc_coef = float(loc_coef)
        self.edit_max_steps = int(edit_max_steps)
        self.editable_layers = str(editable_layers)
        self.editor = make_editor(str(editor), float(edit_lr), parse_learnable(str(edit_learnable)), shape=HYPER_SHAPE)
        self.edit_margin = float(edit_margin)
        if str(loc_mode) not in LOC_MODES:
            raise ValueError(f"--loc-mode must be one of {LOC_MODES}, got {loc_mode!r}")
        self.loc_mode = str(loc_mode)

    # --- checkpoints ------------------------------------------------------------------------------------
    def _flag_buffers(self) -> set[str]:
        """State entries of hyper-parameters that are not learnable: they follow the command line."""
        return {name for name, _ in self.named_buffers() if name.startswith("editor.")}

    def load_state_dict(self, state_dict: Mapping[str, Any] | None, strict: bool = True, assign: bool = False):
        """Restore the learned editor hyper-parameters; fixed ones keep their command-line values.

        ``None`` (a checkpoint trained with another criterion, e.g. a baseline restored for editable
        fine-tuning) keeps the freshly initialised editor.
        """
        fixed = self._flag_buffers()
        merged = self.state_dict()
        merged.update({k: v for k, v in (state_dict or {}).items() if k not in fixed})
        return super().load_state_dict(merged, strict=strict, assign=assign)

    # --- the objective --------------------------------------------------------------------------------
    def forward(self, model, sample, reduce=True):
        if not reduce:
            return super().forward(model, sample, reduce=False)
        core = unwrap_model(model)
        split = split_for(core, self.editable_layers)
        training = core.training
        edit_sample = self.task.edit_sample_for(sample, training=training)

        with split.capture(record_rng=training) as captured:
            net_output = model(**sample["net_input"])
        loss, nll_loss = self.compute_loss(core, net_output, sample, reduce=True)
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]

        create_graph = training and torch.is_grad_enabled()
        result = edit_translation(core, edit_sample, self.editor, part=self.editable_layers,
                                  max_steps=self.edit_max_steps, create_graph=create_graph,
                                  margin=self.edit_margin, backprop=self.edit_backprop)
        logits = net_output[0]
        if self.loc_mode == "eval" and training:
            with eval_mode(core):
                state = split.batch_prefix(*(sample["net_input"][k] for k in _PREFIX_INPUTS))
                edited_logits = split.run_suffix(state, result.params if result.steps else None)
        else:  # in eval mode (validation) both modes are this one
            edited_logits = logits if result.steps == 0 else split.run_suffix(captured, result.params)
        l_loc = locality_kl(logits, edited_logits, sample["target"].ne(self.padding_idx))
        l_edit = result.edit_loss
        total = loss + self.edit_coef * l_edit + self.loc_coef * l_loc
        if create_graph:
            # every learnable hyper-parameter is in the graph even when the edit took < 2 steps, as
            # torch DDP (which fairseq wraps a criterion with parameters in) requires
            total = total + sum(0.0 * p.sum() for p in self.editor.parameters())

        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
            "objective": utils.item(total.data),
            "edits": 1,
            "edit_success": float(result.success),
            "edit_steps": float(result.steps),
            "l_edit": utils.item(l_edit.data),
            "l_loc": utils.item(l_loc.data),
        }
        for name, hyper in self.editor.named_children():
            if getattr(hyper, "learnable", False):
                logging_output[f"editor_{name}"] = utils.item(hyper().data)
        if self.report_accuracy:
            n_correct, n_total = self.compute_accuracy(core, net_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(n_total.data)
        return total, sample_size, logging_output

    # --- logging ---------------------------------------------------------------------------------------
    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        edits = sum(log.get("edits", 0) for log in logging_outputs)
        if not edits:
            return
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        objective = sum(log.get("objective", 0) for log in logging_outputs)
        metrics.log_scalar("objective", objective / max(sample_size, 1) / math.log(2), sample_size, round=3)
        for key in _SUMMED_PER_EDIT:
            metrics.log_scalar(key, sum(log.get(key, 0) for log in logging_outputs) / edits, edits, round=4)
        hyper_keys = sorted({k for log in logging_outputs for k in log if k.startswith("editor_")})
        for key in hyper_keys:
            metrics.log_scalar(key, sum(log.get(key, 0) for log in logging_outputs) / edits, edits, round=6)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
