# Shared helpers for the pipeline scripts; source it: `. "$(dirname "$0")/lib.sh"`.

die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

# require PATH MAKER: fail with a pointer to the script that makes PATH when it is missing
require() { [ -e "$1" ] || die "missing $1 (made by $2)"; }

# binarize TEXT_DIR DEST_DIR: fairseq-preprocess with a joined dictionary, BPE codes copied beside it
binarize() {
  local text=$1 dest=$2
  fairseq-preprocess --source-lang de --target-lang en \
    --trainpref "$text/train" --validpref "$text/valid" --testpref "$text/test" \
    --destdir "$dest" --joined-dictionary --workers "${WORKERS:-2}"
  cp "$text/code" "$dest/bpecodes"
  mkdir -p "$dest/raw" && cp "$text"/raw/test.* "$text"/raw/valid.* "$dest/raw/"
}

# usage: print this script's header comment (line 2 up to the first non-comment line) and exit 2
usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

# the plugin folder for --user-dir (this checkout's; fairseq resolves relative paths against the cwd)
PLUGIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/../editable_fairseq" && pwd)
PREPARED_BY="scripts/prepare-iwslt14.sh or scripts/prepare-ding.sh"

# fairseq-train flags of fairseq's IWSLT14 De-En recipe (examples/translation/README.md); later flags win
RECIPE=(--arch transformer_iwslt_de_en --share-decoder-input-output-embed
  --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0
  --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 4000 --dropout 0.3 --weight-decay 0.0001
  --label-smoothing 0.1 --max-tokens 4096 --no-epoch-checkpoints)
