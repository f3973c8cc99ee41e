"""Task ``editable_translation``: fairseq's translation task plus the edits ``l_e`` of Editable Training.

Edits come from a TSV file (``--edit-samples``) or are made on the fly from the source sentences of each
batch by a normally trained baseline (``--edit-baseline``): ``k = --edit-alternatives`` alternatives by
beam search and a target sampled at ``--edit-temperature`` (section 4.4 of the paper). The edit used for
a batch is a pure function of (``--seed``, update number, the batch's sample ids), so a resumed run sees
the same edits; validation batches get the same edit at every validation.
"""
# no `from __future__ import annotations`: fairseq builds the command line from the config's real types

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq import utils
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from ..checkpoints import allow_fairseq_broadcast_globals, allow_fairseq_checkpoint_globals, load_checkpoint
from ..criterions import editable_cross_entropy  # noqa: F401  (registers the criterion this task trains with)
from ..edit_samples import EditSample, read_edit_samples, unk_fraction
from ..generation import DEFAULT_ALTERNATIVES, DEFAULT_TEMPERATURE, make_edit_samples
from ..literal_config import install as install_literal_config
from ..literal_config import reading_checkpoint

logger = logging.getLogger(__name__)

# fairseq-train --restore-file, fairseq-generate and the console tools load checkpoints weights-only
allow_fairseq_checkpoint_globals()
allow_fairseq_broadcast_globals()
install_literal_config()  # config strings fairseq evaluates are literals, never code

_VALID_CACHE_SIZE = 4096


@dataclass
class EditableTranslationConfig(TranslationConfig):
    edit_samples: Optional[str] = field(
        default=None,
        metadata={"help": "TSV of edits, one per line: source<TAB>target<TAB>alternative_1<TAB>..., in the "
                          "BPE space of the data (target y_0 must outscore every alternative y_1..y_k)"},
    )
    edit_alternatives: int = field(
        default=DEFAULT_ALTERNATIVES,
        metadata={"help": "with --edit-baseline: number k of alternative translations per edit, found by "
                          "beam search with beam k"},
    )
    edit_temperature: float = field(
        default=DEFAULT_TEMPERATURE,
        metadata={"help": "with --edit-baseline: temperature for sampling the edit target y_0"},
    )
    edit_baseline: Optional[str] = field(
        default=None,
        metadata={"help": "checkpoint of a normally trained model (same dictionaries) that makes edits on the "
                          "fly from the source sentences of each batch, instead of --edit-samples"},
    )
    edit_allow_unk: bool = field(
        default=False,
        metadata={"help": "accept word-pieces of --edit-samples that the dictionary does not know (they become "
                          "<unk>); by default such a line is an error naming file and line"},
    )
    seed: int = II("common.seed")


@register_task("editable_translation", dataclass=EditableTranslationConfig)
class EditableTranslationTask(TranslationTask):
    """Translation whose training batches each come with one edit ``(s, y_0, {y_1..y_k})``.

    Use with ``--criterion editable_cross_entropy``. Generation (``fairseq-generate``) works as for
    ``translation``; the edit flags are only needed for training.
    """

    cfg: EditableTranslationConfig

    def __init__(self, cfg: EditableTranslationConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self._edit_pool: Optional[list[EditSample]] = None
        self._baseline: Optional[list[torch.nn.Module]] = None
        self._update_num = 0
        self._valid_cache: "OrderedDict[tuple, EditSample]" = OrderedDict()

    # --- edit source -------------------------------------------------------------------------------
    def prepare_edits(self) -> None:
        """Check the edit flags and load the TSV (or the baseline); called when an editable criterion is built."""
        cfg = self.cfg
        if cfg.edit_samples and cfg.edit_baseline:
            raise ValueError("give either --edit-samples (a TSV of edits) or --edit-baseline (a checkpoint that "
                             "makes edits on the fly), not both")
        if not cfg.edit_samples and not cfg.edit_baseline:
            raise ValueError("--criterion editable_cross_entropy needs edits: pass --edit-samples PATH (TSV: "
                             "source<TAB>target<TAB>alternative_1...) or --edit-baseline CHECKPOINT")
        if cfg.edit_alternatives < 1:
            raise ValueError(f"--edit-alternatives must be >= 1, got {cfg.edit_alternatives}")
        if not cfg.edit_temperature > 0:
            raise ValueError(f"--edit-temperature must be > 0, got {cfg.edit_temperature}")
        if cfg.edit_samples and self._edit_pool is None:
            self._edit_pool = read_edit_samples(cfg.edit_samples, self.src_dict, self.tgt_dict,
                                                cfg.max_source_positions, cfg.max_target_positions,
                                                allow_unk=cfg.edit_allow_unk)
            unk = unk_fraction(self._edit_pool, self.tgt_dict.unk())
            logger.info("read %d edit samples from %s (%.1f%% <unk> tokens)", len(self._edit_pool),
                        cfg.edit_samples, 100 * unk)
            if unk > 0.2:
                logger.warning("%.0f%% of the tokens in %s are <unk>: is it in the BPE space of %s?",
                               100 * unk, cfg.edit_samples, cfg.data)
        if cfg.edit_baseline and self._baseline is None:
            self._baseline = [self._load_baseline(cfg.edit_baseline)]

    def _load_baseline(self, path: str) -> torch.nn.Module:
        from fairseq import models

        state = load_checkpoint(path)
        with reading_checkpoint(path):  # its config strings are read as literals, never run
            model = models.build_model(state["cfg"].model, self, from_checkpoint=True)
        try:
            model.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
        except RuntimeError as err:
            raise ValueError(f"--edit-baseline {path}: its weights do not fit the dictionaries of "
                             f"{self.cfg.data} ({err})") from None
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        logger.info("edits are made on the fly by %s (k=%d alternatives, temperature %.2f)", path,
                    self.cfg.edit_alternatives, self.cfg.edit_temperature)
        return model

    @property
    def edit_pool(self) -> Optional[list[EditSample]]:
        """The edits read from ``--edit-samples`` (None when edits are made by ``--edit-baseline``)."""
        return self._edit_pool

    def edit_sample_for(self, sample: dict, training: bool) -> EditSample:
        """The edit for this batch: deterministic in (seed, update number when training, sample ids)."""
        if self._edit_pool is None and self._baseline is None:
            self.prepare_edits()
        ids = sample["id"]
        key = [int(self.cfg.seed) & 0xFFFFFFFF, int(training), self._update_num if training else 0, int(ids[0])]
        rng = np.random.default_rng(key)
        if self._edit_pool is not None:
            return self._edit_pool[int(rng.integers(len(self._edit_pool)))]
        src_tokens = sample["net_input"]["src_tokens"]
        row = int(rng.integers(src_tokens.size(0)))
        seed = int(rng.integers(2**31 - 1))
        cache_key = (int(ids[row]), seed)
        if not training and cache_key in self._valid_cache:
            self._valid_cache.move_to_end(cache_key)
            return self._valid_cache[cache_key]
        source = utils.strip_pad(src_tokens[row], self.src_dict.pad())
        baseline = self._baseline
        device = src_tokens.device
        if next(baseline[0].parameters()).device != device:
            baseline[0].to(device)
        edit = make_edit_samples(baseline, self.tgt_dict, [source], num_alternatives=self.cfg.edit_alternatives,
                                 temperature=self.cfg.edit_temperature, seed=seed, src_pad=self.src_dict.pad())[0]
        if not training:
            self._valid_cache[cache_key] = edit
            if len(self._valid_cache) > _VALID_CACHE_SIZE:
                self._valid_cache.popitem(last=False)
        return edit

    # --- fairseq hooks ---------------------------------------------------------------------------------
    def build_criterion(self, cfg, from_checkpoint=False):
        criterion = super().build_criterion(cfg, from_checkpoint)
        if getattr(criterion, "needs_edits", False):
            self.prepare_edits()
        return criterion

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self._update_num = int(update_num)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
