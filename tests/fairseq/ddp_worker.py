"""Run the real ``fairseq-train`` CLI (one rank of a multi-process job) and dump what it trained.

    python ddp_worker.py OUT.pt fairseq-train-arguments...

Only observes: it remembers the Trainer that fairseq builds (by wrapping ``Trainer.__init__``) and, once
``fairseq_cli.train.cli_main`` returns, saves that rank's model and criterion ``state_dict`` to OUT.pt, so
a test can check that every rank ended with identical parameters.
"""
from __future__ import annotations

import sys

import torch


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    from fairseq import trainer as trainer_module
    from fairseq_cli import train

    seen = []
    original_init = trainer_module.Trainer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        seen.append(self)

    trainer_module.Trainer.__init__ = init
    sys.argv = ["fairseq-train", *argv]
    train.cli_main()
    trainer = seen[-1]
    torch.save({"model": {k: v.detach().clone() for k, v in trainer.get_model().state_dict().items()},
                "criterion": {k: v.detach().clone() for k, v in trainer.get_criterion().state_dict().items()},
                "num_updates": trainer.get_num_updates()}, out)


if __name__ == "__main__":
    main()
