#!/usr/bin/env bash
# Usage: scripts/evaluate.sh DATA_BIN EVAL_EDITS NUM_EDITS TEST_SIZE OUT_DIR CHECKPOINT... [-- OPTION...]
# Table 6 for the CHECKPOINTs (one row each): Test BLEU, BLEU drawdown, success rate and mean steps over
# the first NUM_EDITS edits of EVAL_EDITS (made by scripts/make-edits.sh), each applied on its own.
# TEST_SIZE: a fixed random subset of the test set decoded after each edit (0: all of it). OPTIONS after -- go
# to editable-fairseq-evaluate (e.g. --beam 2, --names, --bleu-size 0 for the Test BLEU column on all of it).
# Writes OUT_DIR/table.md and OUT_DIR/results.json.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 6 ] || usage
data=$1 edits=$2 num_edits=$3 test_size=$4 out=$5
shift 5
checkpoints=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  require "$1" "scripts/train-baseline.sh or scripts/train-editable.sh"
  checkpoints+=("$1"); shift
done
[ $# -gt 0 ] && shift  # the --
[ ${#checkpoints[@]} -ge 1 ] || usage
require "$data/dict.en.txt" "$PREPARED_BY"
require "$edits" "scripts/make-edits.sh"
mkdir -p "$out"
editable-fairseq-evaluate "$data" --edits "$edits" --num-edits "$num_edits" --test-size "$test_size" \
  --path "${checkpoints[@]}" --markdown "$out/table.md" --json "$out/results.json" "$@"
