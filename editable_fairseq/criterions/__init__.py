"""Criteria of the plugin (imported by the package ``__init__``: fairseq does not auto-import this folder)."""
