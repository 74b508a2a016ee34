#!/usr/bin/env bash
# The pretrained-backbone table on XOR mini dev (results/me5_xor_mini.md): each system is
# indexed, searched and evaluated through the CLI, exactly as a user would run it.
#   bash benchmarks/me5_xor_mini.sh OUT_DIR SYSTEM...   (SYSTEM: bm25 NAME=CKPT:POOLING[:BACKEND])
#   bash benchmarks/me5_xor_mini.sh --rescore OUT_DIR NAME...   (evaluate existing OUT_DIR/NAME.trec again)
# INDEX_GIN: extra gin flags for every index built (e.g. --gin.EncodeParams.long_text="'window'").
# SEARCH_ARGS: extra search flags (e.g. --exact for ColBERT MaxSim re-scoring).
# Heavy: run one at a time (flock /tmp/xtr_jax_cpu.lock).
set -euo pipefail
OUT=${1:?output dir}; shift
RESCORE=0
if [ "$OUT" = --rescore ]; then RESCORE=1; OUT=${1:?output dir}; shift; fi
DATA=${XTR_JAX_DATA_DIR:-../shared/data}/xor_mini
BIN=${BIN:-.venv/bin}
# Recall@k: the share of a query's gold paragraphs in the top k; Success@k: whether any is
# (DPR's "top-k accuracy", the definition behind the issue's engine / torch figures).
METRICS=${METRICS:-Recall@20,Recall@100,Success@20,Success@100,MRR@10,nDCG@10,R@2kt,R@5kt}
mkdir -p "$OUT"
evaluate() {  # run-file prefix
  "$BIN/xtr-jax" evaluate --run "$OUT/$1.trec" --queries "$DATA/dev.jsonl" --qrels "$DATA/dev.qrels" \
    --corpus "$DATA/corpus.tsv" --punkt_params "$OUT/punkt_xor_mini.json" --output "$OUT/$1_eval" \
    --metrics "$METRICS" >/dev/null
}
system() {  # name checkpoint pooling backend
  local name=$1 ckpt=$2 pooling=$3 backend=${4:-scann}
  /usr/bin/time -v -o "$OUT/$name.index.time" "$BIN/xtr-jax" index --checkpoint "$ckpt" \
    --corpus "$DATA/corpus.tsv" --output "$OUT/index_$name" --pooling "$pooling" --overwrite \
    --gin.EncodeParams.max_length=512 --gin.index_settings.backend="'$backend'" \
    ${INDEX_GIN:-} 2>&1 | tail -1
  "$BIN/xtr-jax" search --index "$OUT/index_$name" --queries "$DATA/dev.jsonl" \
    --output "$OUT/$name.trec" --k 100 ${SEARCH_ARGS:-} 2>&1 | tail -1
  evaluate "$name"
}
if [ "$RESCORE" = 1 ]; then
  for s in "$@"; do evaluate "$s"; done
  exit 0
fi
for s in "$@"; do
  case $s in
    bm25) "$BIN/python" -m xtr_jax.experiments.bm25 --queries "$DATA/dev.jsonl" \
            --corpus "$DATA/corpus.tsv" --output "$OUT/bm25.trec" && evaluate bm25 ;;
    *=*) name=${s%%=*}; IFS=: read -r ckpt pooling backend <<<"${s#*=}"; system "$name" "$ckpt" "$pooling" "$backend" ;;
    *) echo "unknown system $s" >&2; exit 2 ;;
  esac
done
