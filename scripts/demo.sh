#!/usr/bin/env bash
# Usage: scripts/demo.sh WORKDIR
# Section 4.4 in small, on a CPU, end to end: the Ding German-English example sentences (scripts/prepare-ding.sh),
# a small Transformer trained normally, then continued from it for the same number of updates: plainly, and with
# Editable Training at the editor's alpha EDIT_LRS (default 1e-3; '1e-3 3e-4' adds Table 6's second row) and
# c_edit = c_loc = C (default 10000) in the paper's units (added once per batch to the token-summed loss); the
# Table-6-shaped comparison on the test sentences; and one real mistranslation fixed with editable-fairseq-patch.
# Sizes can be changed through the environment: MERGES LAYERS FFN (encoder and decoder layers each, and their FFN
# width) BASE_UPDATES CONT_UPDATES CONT_TOKENS (the continuations' --max-tokens) CONT_LR CONT_WARMUP CONT_SCHEDULE
# (inverse_sqrt, or linear: decay to 0 over the continuation) CONT_DROPOUT C LOC_MODE EDIT_LRS TRAIN_EDITS
# EVAL_EDITS ALTERNATIVES TEST_SIZE (sentences decoded after each edit, for the drawdown; 0, the default: all)
# BLEU_SIZE (sentences of the Test BLEU column; 0: all) BEAM, TEST_SUBSET=valid to tune on validation sentences
# instead of reporting test ones, SEED (of every training and of the edits' choice; default 1) and DEVICE=cuda to
# train, edit and decode on the GPU (default cpu: every stage is given --cpu).
# Steps whose outputs exist in WORKDIR are skipped (delete a folder to redo it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -eq 1 ] || usage
work=$1
scripts=$(cd "$(dirname "$0")" && pwd)
merges=${MERGES:-6000} layers=${LAYERS:-2} ffn=${FFN:-512} cont_tokens=${CONT_TOKENS:-4096}
base_updates=${BASE_UPDATES:-900} cont_updates=${CONT_UPDATES:-300} c=${C:-10000}
edit_lrs=${EDIT_LRS:-1e-3} cont_lr=${CONT_LR:-1e-3} cont_warmup=${CONT_WARMUP:-10}
cont_schedule=${CONT_SCHEDULE:-inverse_sqrt} cont_dropout=${CONT_DROPOUT:-0.1} loc_mode=${LOC_MODE:-replay}
case $cont_schedule in
  inverse_sqrt) schedule=() ;;
  linear) schedule=(--lr-scheduler polynomial_decay --power 1 --end-learning-rate 0 --total-num-update "$cont_updates") ;;
  *) die "CONT_SCHEDULE must be inverse_sqrt or linear, got '$cont_schedule'" ;;
esac
# 2000 training edits: each editable update draws one, so nearly every update meets an edit it has not seen (the
# paper's training drew a fresh one per batch); with 200 the 300 updates drew 155 distinct ones
train_edits=${TRAIN_EDITS:-2000} eval_edits=${EVAL_EDITS:-50} alternatives=${ALTERNATIVES:-8}
test_size=${TEST_SIZE:-0} bleu_size=${BLEU_SIZE:-0} beam=${BEAM:-4} test_subset=${TEST_SUBSET:-test}
device=${DEVICE:-cpu} seed=${SEED:-1}
case $device in
  cpu) cpu=(--cpu) ;;
  cuda) cpu=() ;;
  *) die "DEVICE must be cpu or cuda, got '$device'" ;;
esac
command -v fairseq-train >/dev/null || die "fairseq-train is not on PATH: run make install, then PATH=.venv/bin:\$PATH"

# a 2+2-layer, 256-d transformer_iwslt_de_en (FFN 512; LAYERS, FFN); the baseline on 2048-token batches, Adam
# at 1.5e-3 (warm-up 300) for 900 updates, then every row continues from it on CONT_TOKENS-token batches at
# CONT_LR (a fresh Adam: fairseq restores an optimizer only for the same criterion). LAYERS=3 FFN=1024
# BASE_UPDATES=1800 EDIT_LRS='1e-3 3e-4' is the demo until 2026-11-27, 57 minutes (docs/translation-demo.md)
SMALL=("${cpu[@]}" --encoder-layers "$layers" --decoder-layers "$layers" --encoder-embed-dim 256 --decoder-embed-dim 256
  --encoder-ffn-embed-dim "$ffn" --decoder-ffn-embed-dim "$ffn" --encoder-attention-heads 4 --decoder-attention-heads 4
  --share-all-embeddings --dropout 0.1 --max-tokens 2048 --num-workers 0 --seed "$seed"
  --log-format simple --log-interval 25 --disable-validation --no-save-optimizer-state)
CONTINUE=(--max-tokens "$cont_tokens" --lr "$cont_lr" --warmup-updates "$cont_warmup" --dropout "$cont_dropout"
  "${schedule[@]}")
mkdir -p "$work"
data=$work/ding/data-bin
timings=$work/timings.txt
: > "$timings"
stage() {  # stage NAME COMMAND...: run, log to WORKDIR/logs/NAME.log, record the wall time
  local name=$1 start=$SECONDS
  shift
  mkdir -p "$work/logs"
  echo "== $name" >&2
  "$@" > "$work/logs/$name.log" 2>&1 || { tail -20 "$work/logs/$name.log" >&2; die "$name failed (log: $work/logs/$name.log)"; }
  printf '%-22s %4d s\n' "$name" $((SECONDS - start)) | tee -a "$timings" >&2
}

[ -f "$data/dict.en.txt" ] || stage prepare-corpus bash "$scripts/prepare-ding.sh" "$work/ding" "$merges"
[ -f "$work/baseline/checkpoint_last.pt" ] || stage train-baseline bash "$scripts/train-baseline.sh" "$data" \
  "$work/baseline" "$base_updates" "${SMALL[@]}" --lr 1.5e-3 --warmup-updates 300
base=$work/baseline/checkpoint_last.pt
[ -f "$work/plain/checkpoint_last.pt" ] || stage continue-plain bash "$scripts/train-baseline.sh" "$data" \
  "$work/plain" "$cont_updates" "${SMALL[@]}" "${CONTINUE[@]}" --finetune-from-model "$base"
[ -f "$work/edits/eval.tsv" ] || stage make-edits bash "$scripts/make-edits.sh" "$data" "$base" "$work/edits" \
  "$train_edits" "$eval_edits" --alternatives "$alternatives" --seed "$seed" --no-progress "${cpu[@]}"
rows=("$work/plain/checkpoint_last.pt") names=("Baseline training, α=1e-3")
for lr in $edit_lrs; do
  [ -f "$work/editable-$lr/checkpoint_last.pt" ] || stage "continue-editable-$lr" bash "$scripts/train-editable.sh" \
    "$data" "$work/edits/train.tsv" "$work/editable-$lr" "$lr" "$cont_updates" "${SMALL[@]}" "${CONTINUE[@]}" \
    --edit-coef "$c" --loc-coef "$c" --loc-mode "$loc_mode" --finetune-from-model "$base"
  rows+=("$work/editable-$lr/checkpoint_last.pt")
  names+=("Editable, c_edit=c_loc=$c, α=$lr$([ "$loc_mode" = replay ] || echo ", L_loc in $loc_mode mode")")
done
stage evaluate bash "$scripts/evaluate.sh" "$data" "$work/edits/eval.tsv" "$eval_edits" "$test_size" "$work/eval" \
  "${rows[@]}" -- --beam "$beam" --bleu-size "$bleu_size" --batch-size 300 --no-progress --test-subset "$test_subset" \
  "${cpu[@]}" --names "${names[@]}"

# a real mistranslation: the first short test sentence (<= 8 words) that the deployed model gets wrong
shipped=$work/plain/checkpoint_last.pt
stage find-mistranslation fairseq-generate "$data" --user-dir "$PLUGIN" --path "$shipped" --gen-subset test \
  "${cpu[@]}" --beam 5 --batch-size 128 --remove-bpe
start=$SECONDS
candidates=$(awk -F'\t' '/^T-/ { t[substr($1, 3)] = $2 } /^H-/ { i = substr($1, 3); h[i] = $3 }
  END { for (i in t) if (i in h && t[i] != h[i] && split(t[i], w, " ") <= 8 && t[i] !~ /<unk>/) print i }' \
  "$work/logs/find-mistranslation.log" | sort -n | sed -n 1,5p)
[ -n "$candidates" ] || die "no short mistranslated test sentence found (see $work/logs/find-mistranslation.log)"
id=
for candidate in $candidates; do  # the first of them that the patch tool fixes (a failed fix writes nothing)
  source=$(sed -n "$((candidate + 1))p" "$data/raw/test.de") target=$(sed -n "$((candidate + 1))p" "$data/raw/test.en")
  printf '%s\t%s\n' "$source" "$target" > "$work/fix.tsv"
  status=0
  editable-fairseq-patch "$shipped" --data "$data" --out "$work/patched.pt" --pairs "$work/fix.tsv" \
    > "$work/logs/patch.log" 2>&1 || status=$?
  case $status in
    0) id=$candidate; break ;;
    3) ;;  # the fix did not take: try the next sentence
    *)  # any other failure (a bad checkpoint, a missing file) stops
      tail -5 "$work/logs/patch.log" >&2; die "editable-fairseq-patch failed (log: $work/logs/patch.log)" ;;
  esac
done
[ -n "$id" ] || die "the patch tool fixed none of test sentences $candidates (see $work/logs/patch.log)"
printf '%-22s %4d s\n' patch $((SECONDS - start)) | tee -a "$timings" >&2
# the shipped file is an ordinary checkpoint: stock fairseq-generate loads it (the plugin allow-lists its config)
stage generate-patched fairseq-generate "$data" --user-dir "$PLUGIN" --path "$work/patched.pt" --gen-subset test \
  "${cpu[@]}" --beam 5 --batch-size 128 --remove-bpe

# how each row was trained, read from the checkpoints: a folder reused from an earlier run may hold other sizes
mapfile -t trained < <(python -W ignore - "$base" "${rows[@]}" <<'PY'
import sys
from editable_fairseq.checkpoints import load_checkpoint
for path in sys.argv[1:]:  # one line per checkpoint: UPDATES LR WARMUP SCHEDULE DROPOUT
    state = load_checkpoint(path)
    cfg = state["cfg"]
    schedule = {"polynomial_decay": "linear"}.get(cfg.lr_scheduler._name, cfg.lr_scheduler._name)
    print(state["optimizer_history"][-1]["num_updates"], cfg.optimization.lr[0], cfg.lr_scheduler.warmup_updates,
          schedule, cfg.model.dropout)
PY
)
[ ${#trained[@]} -eq $((${#rows[@]} + 1)) ] || die "could not read how the checkpoints were trained"
read -r base_n _ <<< "${trained[0]}"
read -r cont_n cont_lr_used warmup_used schedule_used dropout_used <<< "${trained[1]}"
for ((i = 1; i < ${#rows[@]}; i++)); do
  [ "${trained[i + 1]}" = "${trained[1]}" ] \
    || echo "note: ${rows[i]} was trained with other settings than the plain row: ${trained[i + 1]}" >&2
done

read -r bleu_n test_n < <(python -c 'import json, sys; row = json.load(open(sys.argv[1]))["rows"][0]
print(row["bleu_sentences"], row["test_sentences"])' "$work/eval/results.json")

echo
echo "## Table 6 on the Ding corpus (${device^^} demo, beam $beam: Test BLEU on $bleu_n $test_subset sentences; drawdown ± its"
echo "## standard error over $eval_edits edits, each scored on $test_n of those sentences; every row continued the"
echo "## $base_n-update baseline for $cont_n updates at Adam $cont_lr_used (warm-up $warmup_used), $schedule_used schedule,"
echo "## dropout $dropout_used)"
cat "$work/eval/table.md"
echo
echo "## One worked edit (test sentence $id, editable-fairseq-patch on $shipped)"
grep -E '^  (source|before|desired|after|success)' "$work/logs/patch.log"
echo "fairseq-generate --path $work/patched.pt, test sentence $id:"
grep -E "^H-$id\s" "$work/logs/generate-patched.log" | cut -f3
grep -E '^2.*BLEU' "$work/logs/find-mistranslation.log" "$work/logs/generate-patched.log" | sed 's/.*logs.//' || true
echo
echo "## Wall time per stage"
cat "$timings"
echo "total $(awk '{ s += $(NF-1) } END { print s }' "$timings") s"
