#!/usr/bin/env bash
# Usage: scripts/prepare-ding.sh OUT_DIR [BPE_MERGES [OPTIONS...]]
# The small offline corpus: German-English example sentences of the Ding dictionary (Debian package
# trans-de-en, ~14.5k pairs), tokenised, lowercased, joint BPE (default 6000 merges), binarised.
# Writes OUT_DIR/text (word-pieces, BPE codes, raw sentences) and OUT_DIR/data-bin (for fairseq-train).
# OPTIONS go to editable-fairseq-prepare-corpus (e.g. --test-size 500 --valid-size 300).
# Set DING_FILE to an existing usr/share/trans/de-en file to skip the download.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out=$1 merges=${2:-6000}
shift $(( $# < 2 ? $# : 2 ))

if [ -n "${DING_FILE:-}" ]; then
  [ -f "$DING_FILE" ] || die "DING_FILE=$DING_FILE is not a file"
fi
ding=${DING_FILE:-$out/download/usr/share/trans/de-en}
if [ ! -f "$ding" ]; then
  mkdir -p "$out/download"
  command -v apt-get >/dev/null && command -v dpkg >/dev/null \
    || die "no apt-get/dpkg here to fetch Debian's trans-de-en; set DING_FILE to its usr/share/trans/de-en, or use IWSLT14: scripts/prepare-iwslt14.sh"
  (cd "$out/download" && apt-get download trans-de-en) \
    || die "apt-get download trans-de-en failed; set DING_FILE, or use IWSLT14: scripts/prepare-iwslt14.sh"
  dpkg -x "$out"/download/trans-de-en_*.deb "$out/download"
fi
editable-fairseq-prepare-corpus ding --input "$ding" --out "$out/text" --bpe-merges "$merges" "$@"
binarize "$out/text" "$out/data-bin"
echo "prepared $out/data-bin"
