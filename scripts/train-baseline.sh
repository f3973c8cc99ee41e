#!/usr/bin/env bash
# Usage: scripts/train-baseline.sh DATA_BIN SAVE_DIR MAX_UPDATE [FAIRSEQ_TRAIN_OPTION...]
# Trains the normally trained Transformer of Table 6: transformer_iwslt_de_en with fairseq's IWSLT14 recipe
# (Adam, inverse_sqrt, dropout 0.3, label smoothing 0.1, 4096-token batches) for MAX_UPDATE updates.
# Options after MAX_UPDATE go to fairseq-train and override the recipe: e.g. --cpu and smaller
# --encoder-embed-dim etc. for a CPU run, --finetune-from-model CKPT to continue from another model.
# Writes SAVE_DIR/checkpoint_last.pt and checkpoint_best.pt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 3 ] || usage
data=$1 save=$2 max_update=$3
shift 3
require "$data/dict.en.txt" "$PREPARED_BY"
fairseq-train "$data" --user-dir "$PLUGIN" --task translation --criterion label_smoothed_cross_entropy \
  "${RECIPE[@]}" --max-update "$max_update" --save-dir "$save" "$@"
require "$save/checkpoint_last.pt" "fairseq-train above; see its log"
echo "trained $save/checkpoint_last.pt"
