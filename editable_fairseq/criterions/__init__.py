"""Criteria of the plugin; fairseq does not auto-import this folder: the task module imports the criterion."""
