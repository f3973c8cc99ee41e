"""How editable-fairseq-evaluate scores: references are normalised as the training text was."""
from __future__ import annotations

import pytest

from editable_fairseq.cli.decoding import corpus_bleu, references
from editable_fairseq.prepare.text import TextCodec


def test_references_carry_the_training_texts_apostrophes(tmp_path):
    """The training text has ASCII apostrophes only (TextCodec.tokenize), so no output can match a raw ``’``:
    scored against raw references, a right translation of "I don’t know." would lose every n-gram over it."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "test.en").write_text("I don’t  know.\nIt’s late.\n", encoding="utf-8")
    refs = references(str(tmp_path), "test", "en", [None, None], None, [1, 0], TextCodec("en"))
    assert refs == ["It's late.", "I don't know."]
    hypotheses = [TextCodec("en").decode(TextCodec("en").tokenize(raw)) for raw in ("It’s late.", "I don’t know.")]
    assert corpus_bleu(hypotheses, refs).score == pytest.approx(100.0)


def test_references_must_match_the_binarized_set(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "test.en").write_text("one.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has 1 lines but the binarized test set has 2"):
        references(str(tmp_path), "test", "en", [None, None], None, [0], TextCodec("en"))
