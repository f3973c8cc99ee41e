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
