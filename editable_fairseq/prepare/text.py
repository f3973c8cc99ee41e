"""Raw sentences <-> the model's word-pieces, the way the IWSLT14 recipe prepares its data.

Moses tokenisation (sacremoses, as ``tokenizer.perl`` with its defaults: escaping on, no aggressive dash
splits), lowercasing, and subword-nmt BPE with ``@@`` separators. Decoding removes the BPE and detokenises,
which is what sacrebleu scores.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from sacremoses import MosesDetokenizer, MosesTokenizer
from subword_nmt.apply_bpe import BPE

BPE_SEPARATOR = "@@"
_BPE_JOINS = re.compile(r"(@@ )|(@@ ?$)")


def remove_bpe(line: str) -> str:
    """``"trans@@ lation"`` -> ``"translation"`` (fairseq's ``--remove-bpe`` for subword-nmt)."""
    return _BPE_JOINS.sub("", line)


class TextCodec:
    """Encode raw text of one language into model tokens and decode model tokens back to raw text.

    lang: ``de`` or ``en`` (any Moses language code); bpe_codes: a subword-nmt codes file, or None to stop
    after tokenisation and lowercasing.
    """

    def __init__(self, lang: str, bpe_codes: Optional[str | Path] = None):
        self.lang = lang
        self._tokenizer = MosesTokenizer(lang=lang)
        self._detokenizer = MosesDetokenizer(lang=lang)
        self._bpe = None
        if bpe_codes is not None:
            path = Path(bpe_codes)
            if not path.is_file():
                raise FileNotFoundError(f"BPE codes file not found: {path}")
            with path.open(encoding="utf-8") as codes:
                self._bpe = BPE(codes, separator=BPE_SEPARATOR)

    @staticmethod
    def normalize(raw: str) -> str:
        """One sentence as the model sees it before tokenising: single spaces, typographic apostrophes
        (``’``) as ASCII ones. A reference is scored after this too, since no output can hold a ``’``."""
        return " ".join(raw.replace("\u2019", "'").split())

    def tokenize(self, raw: str) -> str:
        """Moses-tokenise and lowercase one sentence (no BPE)."""
        return self._tokenizer.tokenize(self.normalize(raw), return_str=True, escape=True).lower()

    def split_words(self, tokens: str) -> str:
        """Apply BPE to an already tokenised, lowercased sentence (unchanged without BPE codes)."""
        return self._bpe.process_line(tokens).strip() if self._bpe is not None else tokens

    def encode(self, raw: str) -> str:
        """Tokenise, lowercase and apply BPE: the space-separated word-pieces the model reads."""
        return self.split_words(self.tokenize(raw))

    def decode(self, pieces: str) -> str:
        """Remove BPE and detokenise (unescaping Moses entities): what sacrebleu scores."""
        return self._detokenizer.detokenize(remove_bpe(pieces).split(), unescape=True)
