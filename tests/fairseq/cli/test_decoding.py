"""How editable-fairseq-evaluate decodes and scores: references are normalised as the training text was, and
each batch's encoder output is reused across edits of the decoder."""
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


def test_a_batchs_encoder_output_is_reused_until_an_encoder_weight_changes(pipeline):
    """The evaluator decodes the same batches after every edit of the decoder: the encoder runs once per batch,
    and again after any write into its weights; the translations are those of a decoding from scratch."""
    import torch

    from editable_fairseq.cli.common import load_for_tools
    from editable_fairseq.cli.decoding import SentenceBatches, make_generator

    loaded = load_for_tools(str(pipeline.baseline), str(pipeline.data))
    task, model = loaded.task, loaded.model
    task.load_dataset("test")
    dataset = task.dataset("test")
    generator = make_generator(model, task.tgt_dict, beam=2)

    def from_scratch() -> list[str]:
        return SentenceBatches(dataset, range(len(dataset)), batch_size=16).translate(generator, task.tgt_dict)

    batches = SentenceBatches(dataset, range(len(dataset)), batch_size=16)
    encodings = []
    model.encoder.layers[0].register_forward_hook(lambda *_: encodings.append(1))
    first = batches.translate(generator, task.tgt_dict)
    assert len(encodings) == len(batches.batches) > 1
    with torch.no_grad():
        model.decoder.layers[-1].fc2.weight.mul_(1.5)  # as an edit does: decoder weights only
    after_decoder_write = batches.translate(generator, task.tgt_dict)
    assert len(encodings) == len(batches.batches)
    assert after_decoder_write == from_scratch()
    with torch.no_grad():
        model.encoder.layers[-1].self_attn.out_proj.weight.mul_(-3)
    after_encoder_write = batches.translate(generator, task.tgt_dict)
    assert len(encodings) == 3 * len(batches.batches)  # recomputed (and once more by from_scratch above)
    assert after_encoder_write == from_scratch() != first
    assert "forward_encoder" not in vars(generator.model)  # the override lasts one decoding
