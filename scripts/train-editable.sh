#!/usr/bin/env bash
# Usage: scripts/train-editable.sh DATA_BIN TRAIN_EDITS SAVE_DIR EDIT_LR MAX_UPDATE [FAIRSEQ_TRAIN_OPTION...]
# Editable Training of the Transformer (section 4.4): the baseline recipe plus, for each batch, one edit from
# TRAIN_EDITS (made by scripts/make-edits.sh) with c_edit=100, c_loc=100 and an RMSProp editor of learning
# rate EDIT_LR (Table 6: 1e-3 and 3e-4) on the final decoder layer, k=10 steps. Options after MAX_UPDATE
# go to fairseq-train and override these (e.g. --cpu, model sizes, --finetune-from-model CKPT).
# Writes SAVE_DIR/checkpoint_last.pt and checkpoint_best.pt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 5 ] || usage
data=$1 edits=$2 save=$3 edit_lr=$4 max_update=$5
shift 5
require "$data/dict.en.txt" "$PREPARED_BY"
require "$edits" "scripts/make-edits.sh"
fairseq-train "$data" --user-dir "$PLUGIN" --task editable_translation --edit-samples "$edits" \
  --criterion editable_cross_entropy --edit-coef 100 --loc-coef 100 --edit-lr "$edit_lr" --editor rmsprop \
  --edit-max-steps 10 --editable-layers last \
  "${RECIPE[@]}" --max-update "$max_update" --save-dir "$save" "$@"
require "$save/checkpoint_last.pt" "fairseq-train above; see its log"
echo "trained $save/checkpoint_last.pt"
