#!/usr/bin/env bash
# Usage: scripts/prepare-iwslt14.sh OUT_DIR [BPE_MERGES] [DE_EN_TGZ]
# IWSLT14 German-English as fairseq's examples/translation/prepare-iwslt14.sh makes it (Moses tokenisation
# via sacremoses, lowercase, 10000 joint BPE merges via subword-nmt), then fairseq-preprocess
# --joined-dictionary. Downloads fairseq's de-en.tgz unless DE_EN_TGZ names a local copy.
# Writes OUT_DIR/text and OUT_DIR/data-bin.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] && [ $# -le 3 ] || { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out=$1 merges=${2:-10000} tgz=${3:-}
url=http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz

mkdir -p "$out/download"
if [ -z "$tgz" ]; then
  tgz=$out/download/de-en.tgz
  [ -f "$tgz" ] || curl -fL --retry 3 -o "$tgz" "$url" || { rm -f "$tgz"; die "could not download $url"; }
fi
require "$tgz" "a download of $url"
tar -xzf "$tgz" -C "$out/download"
editable-fairseq-prepare-corpus iwslt14 --input "$out/download/de-en" --out "$out/text" --bpe-merges "$merges"
binarize "$out/text" "$out/data-bin"
echo "prepared $out/data-bin"
