"""Corpus preparation (``editable-fairseq-prepare-corpus``): raw German-English text to the word-pieces
fairseq-preprocess reads. Imports no fairseq: sacremoses and subword-nmt only."""
