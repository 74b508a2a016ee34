#!/usr/bin/env bash
# Renders results/me5_xor_mini.md from the recorded evaluation JSONs (no model is run).
set -euo pipefail
cd "$(dirname "$0")/.."
R=results/me5_xor_mini
B="(b) mE5 single, zero-shot"; C="(c) mE5 XTR raw 384-d, zero-shot"
P="mE5 XTR 128-d PCA, no training"; D="(d) mE5 XTR 128-d fine-tuned"
${PYTHON:-.venv/bin/python} benchmarks/backbone_table.py \
  --system "(a) BM25=$R/bm25_eval.json" --system "$B=$R/me5_mean_eval.json" \
  --system "$C=$R/me5_tokens_eval.json" --system "$P=$R/me5_pca128_eval.json" \
  --system "$D=$R/me5_xtr_ft_eval.json" \
  --pair "$D:$B" --pair "$D:$C" --pair "$D:$P" --pair "$P:$C" --pair "$C:$B" --pair "$B:(a) BM25" \
  --intro $R/intro.md --outro $R/outro.md --output results/me5_xor_mini.md
