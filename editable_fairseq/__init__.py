"""editable_fairseq: a fairseq ``--user-dir`` plugin for Editable Training of Transformers (section 4.4).

    fairseq-train data-bin/iwslt14.tokenized.de-en --user-dir editable_fairseq \
        --task editable_translation --edit-samples edits.tsv \
        --criterion editable_cross_entropy --arch transformer_iwslt_de_en ...

Importing the package registers the task ``editable_translation`` and the criterion
``editable_cross_entropy``, and allow-lists the classes fairseq checkpoints pickle for torch's
weights-only loading (and, for fairseq's rank-to-rank copy of a resumed checkpoint only, the omegaconf
containers it holds), and makes every config string that fairseq evaluates while building a model from a
checkpoint a literal, never code (:mod:`editable_fairseq.literal_config`). ``python -m editable_fairseq``
prints the folder to pass to ``--user-dir``.
"""
from .checkpoints import allow_fairseq_broadcast_globals, allow_fairseq_checkpoint_globals
from .literal_config import install as install_literal_config

allow_fairseq_checkpoint_globals()
allow_fairseq_broadcast_globals()
install_literal_config()

from .criterions import editable_cross_entropy  # noqa: E402,F401  (registers the criterion)
from .tasks import editable_translation  # noqa: E402,F401  (registers the task)
