"""Tasks of the plugin; fairseq's ``--user-dir`` auto-imports every module in this folder.

``import editable_fairseq.tasks`` registers the task ``editable_translation`` and its criterion.
"""
from . import editable_translation  # noqa: F401  (registers the task and, through it, the criterion)
