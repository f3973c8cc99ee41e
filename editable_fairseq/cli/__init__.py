"""The console tools around the plugin: ``editable-fairseq-make-edits``, ``-evaluate`` and ``-patch``.

``common`` holds what they share (loading a checkpoint with its task, the edit flags, error reporting),
``decoding`` beam search and BLEU.
"""
