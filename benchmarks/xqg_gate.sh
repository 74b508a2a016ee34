#!/bin/bash
# issue #20's go/no-go for an xQG generator checkpoint, end to end: the conditioning gap,
# one greedy question in ar fi ja ru for the first 1,008 XOR mini passages, and
# benchmarks/xqg_quality.py (script, distinct, copy, self-retrieval R@20/R@100 of 200 sampled
# questions a language against all 9,310 passages, searched with mE5-small zero-shot single
# vectors). The gate: self R@100 >= 10x chance (100 / 9,310 = 1.07%), i.e. >= 10.7%.
#
#   bash benchmarks/xqg_gate.sh CHECKPOINT OUT [DATA]
#
# OUT keeps the mE5 index between runs (OUT/index_me5_mean), so a second checkpoint costs
# only its generation. Needs `xtr-jax` on the PATH (activate .venv) or BIN=.venv/bin.
set -euo pipefail
CKPT=$1
OUT=$2
DATA=${3:-../shared/data}
BIN=${BIN:-$(dirname "$(command -v xtr-jax)")}
mkdir -p "$OUT"
name=$(basename "$(dirname "$CKPT")")_$(basename "$CKPT")
"$BIN/python" benchmarks/xqg_conditioning.py --checkpoint "$CKPT" \
  --pairs "$DATA/pairs_swim_ir_layout/cross_lingual/*.jsonl" --num_pairs 256 | tee "$OUT/$name.conditioning.txt"
/usr/bin/time -v -o "$OUT/$name.generate.time" "$BIN/xtr-jax" generate --checkpoint "$CKPT" \
  --corpus "$DATA/xor_mini/corpus.tsv" --output "$OUT/$name.generated.jsonl" \
  --languages ar,fi,ja,ru --strategy greedy --max_batches 63 --max_input_length 128 \
  --max_decode_length 32 --no_progress
if [ ! -f "$OUT/index_me5_mean/manifest.json" ]; then
  "$BIN/xtr-jax" index --checkpoint me5-small --corpus "$DATA/xor_mini/corpus.tsv" \
    --output "$OUT/index_me5_mean" --pooling mean --overwrite \
    --gin.EncodeParams.max_length=512 --gin.index_settings.backend="'brute_force'"
fi
"$BIN/python" benchmarks/xqg_quality.py --generated "$OUT/$name.generated.jsonl" \
  --corpus "$DATA/xor_mini/corpus.tsv" --self_queries "$OUT/$name.self.jsonl" --sample 200
"$BIN/xtr-jax" search --index "$OUT/index_me5_mean" --queries "$OUT/$name.self.jsonl" \
  --output "$OUT/$name.self.trec" --k 100
"$BIN/python" benchmarks/xqg_quality.py --generated "$OUT/$name.generated.jsonl" \
  --corpus "$DATA/xor_mini/corpus.tsv" --self_run "$OUT/$name.self.trec" | tee "$OUT/$name.quality.txt"
