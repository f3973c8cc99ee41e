#!/usr/bin/env bash
# Usage: scripts/make-edits.sh DATA_BIN BASELINE_CHECKPOINT OUT_DIR TRAIN_SIZE EVAL_SIZE [OPTION...]
# The edit sets of section 4.4, made with the normally trained baseline: for each source sentence, k=32
# alternatives by beam search and a target sampled at temperature 1.2. Writes OUT_DIR/train.tsv (TRAIN_SIZE
# edits from the training subset) and OUT_DIR/eval.tsv (EVAL_SIZE edits from the valid subset), which
# share no source sentence. OPTIONS go to editable-fairseq-make-edits (e.g. --alternatives 8 on a CPU).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 5 ] || usage
data=$1 baseline=$2 out=$3 train_size=$4 eval_size=$5
shift 5
require "$data/dict.en.txt" "$PREPARED_BY"
require "$baseline" "scripts/train-baseline.sh"
mkdir -p "$out"
editable-fairseq-make-edits "$data" --path "$baseline" --train-out "$out/train.tsv" --train-size "$train_size" \
  --eval-out "$out/eval.tsv" --eval-size "$eval_size" "$@"
