"""editable_fairseq: a fairseq ``--user-dir`` plugin for Editable Training of Transformers (section 4.4).

    fairseq-train data-bin/iwslt14.tokenized.de-en --user-dir editable_fairseq \
        --task editable_translation --edit-samples edits.tsv \
        --criterion editable_cross_entropy --arch transformer_iwslt_de_en ...

The plugin is ``tasks/`` and ``criterions/`` and the modules they use (``decoder_split``, ``editing``,
``edit_samples``, ``generation``, ``checkpoints``, ``literal_config``). fairseq's ``--user-dir`` imports this
package and then every module in ``tasks/``; the task module registers ``editable_translation``, imports (and so
registers) the criterion ``editable_cross_entropy``, allow-lists the classes fairseq checkpoints pickle for
torch's weights-only loading, and makes every config string that fairseq evaluates while building a model
from a checkpoint a literal, never code (:mod:`editable_fairseq.literal_config`). In Python,
``import editable_fairseq.tasks`` does the same.

This file imports nothing, so the two folders that are not the plugin stay free of it: ``cli/`` (the
console tools ``editable-fairseq-make-edits``, ``-evaluate``, ``-patch``) and ``prepare/`` (corpus
preparation, ``editable-fairseq-prepare-corpus``, which imports no fairseq). ``python -m editable_fairseq``
prints the folder to pass to ``--user-dir``.
"""
