#!/usr/bin/env bash
# Renders results/me5_xor_mini.md from the recorded evaluation JSONs (no model is run).
set -euo pipefail
cd "$(dirname "$0")/.."
R=results/me5_xor_mini
B="(b) mE5 single, zero-shot"; C="(c) mE5 XTR raw 384-d, zero-shot"
P="mE5 XTR 128-d PCA, no training"; D="(d) mE5 XTR 128-d fine-tuned"
E="(e) mE5 single fine-tuned"; F="(f) mE5 ColBERT 128-d fine-tuned"
X="mE5 XTR 384-d fine-tuned (no projection)"
systems=(--system "(a) BM25=$R/bm25_eval.json" --system "$B=$R/me5_mean_eval.json"
  --system "$C=$R/me5_tokens_eval.json" --system "$P=$R/me5_pca128_eval.json"
  --system "$D=$R/me5_xtr_ft_eval.json" --system "$E=$R/me5_sv_ft_eval.json"
  --system "$F=$R/me5_colbert_ft_eval.json")
pairs=(--pair "$D:$B" --pair "$D:$C" --pair "$E:$B" --pair "$E:$C" --pair "$F:$B" --pair "$F:$C"
  --pair "$E:$D" --pair "$D:$P" --pair "$P:$C" --pair "$C:$B" --pair "$B:(a) BM25")
W="mE5 single, zero-shot, long passages windowed"
if [ -f "$R/me5_mean_window_eval.json" ]; then
  systems+=(--system "$W=$R/me5_mean_window_eval.json")
  pairs+=(--pair "$W:$B")
fi
if [ -f "$R/me5_xtr384_ft_eval.json" ]; then
  systems+=(--system "$X=$R/me5_xtr384_ft_eval.json")
  pairs+=(--pair "$X:$C" --pair "$X:$B" --pair "$E:$X")
fi
# 128-d projections of that 384-d fine-tune (results/projection_fit.md): PCA alone, and the
# kernel distilled from its token scores (init-projection --method distill).
Q="mE5 XTR 384-d fine-tuned, PCA to 128-d"; G="(d') mE5 XTR 128-d, 384-d fine-tune distilled"
if [ -f "$R/me5_ft384_pca128_eval.json" ]; then
  systems+=(--system "$Q=$R/me5_ft384_pca128_eval.json")
  pairs+=(--pair "$Q:$C" --pair "$Q:$B")
fi
if [ -f "$R/me5_ft384_distill128_eval.json" ]; then
  systems+=(--system "$G=$R/me5_ft384_distill128_eval.json")
  pairs+=(--pair "$G:$B" --pair "$G:$C" --pair "$G:$Q" --pair "$G:$D")
fi
# (d'') that distilled 128-d model fine-tuned end to end with the XTR recipe (results/projection_fit.md).
H="(d'') mE5 XTR 128-d, distilled, then fine-tuned"
if [ -f "$R/me5_distill128_ft_eval.json" ]; then
  systems+=(--system "$H=$R/me5_distill128_ft_eval.json")
  pairs+=(--pair "$H:$B" --pair "$H:$C" --pair "$H:$G" --pair "$H:$X")
fi
${PYTHON:-.venv/bin/python} benchmarks/backbone_table.py "${systems[@]}" "${pairs[@]}" \
  --intro $R/intro.md --outro $R/outro.md --output results/me5_xor_mini.md
