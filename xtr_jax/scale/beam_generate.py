"""xQG question generation as an Apache Beam pipeline: one generator per worker, sharded output.

The generator is an mT5 or a BERT2BERT checkpoint (``xqg.generate.load_generator`` picks the
tokenizer each needs, as ``xtr-jax generate`` does), so the same command serves both.

Why: the published xQG setting writes ~630M questions over 18M passages. Each worker loads
the checkpoint once (``DoFn.setup``) and writes one ``questions_XXXXX.jsonl`` per corpus
shard (the ``xtr-jax generate`` record layout: ``{"docid", "generated_queries": {lang:
[...]}}``) atomically, then a ``done`` marker, so reruns skip finished shards. Sampling keys
are ``fold_in(seed, passage row)``, so output does not depend on which worker ran a shard.
Files go through ``xtr_jax.io``: ``--output_dir`` (and ``--corpus``) may be ``gs://...``.

  python -m xtr_jax.scale.beam_generate --corpus C.tsv --checkpoint GEN --languages ja,ko \
    --output_dir OUT --shard_size 10000 -- --runner=DirectRunner --direct_num_workers=2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from xtr_jax import io as xio
from xtr_jax.io import atomic_write_bytes
from xtr_jax.scale import shards
from xtr_jax.scale.beam_encode import run_pipeline


class GenerateShardWork:
  """The DoFn body: ``setup`` loads the generator once, ``process`` writes one shard."""

  def __init__(self, corpus: str, checkpoint: str, output_dir: str, languages: list[str],
               settings=None, batch_size: int = 16, seed: int = 0,
               vocabulary: str | None = None):  # fmt: skip
    self.corpus, self.checkpoint, self.output_dir = corpus, checkpoint, output_dir
    self.languages, self.settings, self.batch_size = list(languages), settings, batch_size
    self.seed, self.vocabulary = seed, vocabulary
    self.generator = None

  def setup(self) -> None:
    from xtr_jax.xqg.generate import DecodeSettings, load_generator  # noqa: PLC0415

    settings = self.settings or DecodeSettings()
    self.generator, self.fingerprint = load_generator(self.checkpoint, settings, self.vocabulary)

  def process(self, spec: shards.ShardSpec):
    import jax  # noqa: PLC0415

    from xtr_jax.data.xqg_prompt import xqg_input  # noqa: PLC0415

    if shards.is_done(self.output_dir, spec.index):
      yield shards.finished_stats(self.output_dir, [spec])[0]
      return
    if self.generator is None:
      self.setup()
    t0 = time.time()
    rows = shards.read_shard(self.corpus, spec)
    base = jax.random.PRNGKey(self.seed)
    n_rows = self.generator.round_rows(self.batch_size * len(self.languages))
    lines, questions = [], 0
    for start in range(0, len(rows), self.batch_size):
      batch = rows[start : start + self.batch_size]
      prompts = [xqg_input(c, r.title, r.text) for r in batch for c in self.languages]
      codes = [c for _ in batch for c in self.languages]  # for language-tagged generators
      key = jax.random.fold_in(base, spec.first_row + start)
      out = self.generator(prompts, key, n_rows, codes)
      for j, r in enumerate(batch):
        per_lang = out[j * len(self.languages) : (j + 1) * len(self.languages)]
        gen = {c: qs for c, qs in zip(self.languages, per_lang)}
        questions += sum(len(q) for q in per_lang)
        lines.append(json.dumps({"docid": r.id, "generated_queries": gen}, ensure_ascii=False))
    path = xio.join(self.output_dir, f"questions_{spec.index:05d}.jsonl")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    stats = {"index": spec.index, "first_row": spec.first_row, "passages": len(rows),
             "questions": questions, "seconds": round(time.time() - t0, 2)}  # fmt: skip
    shards.mark_done(self.output_dir, spec.index, stats)
    yield stats


def generate(corpus: str, checkpoint: str, output_dir: str, languages: list[str], *,
             shard_size: int = 10_000, settings=None, batch_size: int = 16, seed: int = 0,
             beam_args: list[str] | None = None, vocabulary: str | None = None) -> list[dict]:  # fmt: skip
  """Plans shards, runs the pending ones; returns the per-shard stats."""
  xio.makedirs(output_dir)
  specs = shards.plan_shards(corpus, shard_size)
  work = GenerateShardWork(corpus, checkpoint, output_dir, languages, settings, batch_size,
                           seed, vocabulary)  # fmt: skip
  run_pipeline(specs, work, beam_args)
  return shards.finished_stats(output_dir, specs)


def main(argv: list[str] | None = None) -> int:
  from xtr_jax.xqg.generate import DecodeSettings  # noqa: PLC0415

  ap = argparse.ArgumentParser(prog="python -m xtr_jax.scale.beam_generate", description=__doc__)
  ap.add_argument("--corpus", required=True)
  ap.add_argument("--checkpoint", required=True)
  ap.add_argument("--output_dir", required=True)
  ap.add_argument("--languages", required=True)
  ap.add_argument("--vocabulary", default=None)
  ap.add_argument("--shard_size", type=int, default=10_000)
  ap.add_argument("--batch_size", type=int, default=16)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--no_beam", action="store_true", help="run the shards in this process")
  for f in dataclasses.fields(DecodeSettings):
    ap.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
  args, beam_args = ap.parse_known_args(argv)
  settings = DecodeSettings(
    **{f.name: getattr(args, f.name) for f in dataclasses.fields(DecodeSettings)}
  )
  langs = [c.strip() for c in args.languages.split(",") if c.strip()]
  beam_args = None if args.no_beam else [a for a in beam_args if a != "--"]
  stats = generate(args.corpus, args.checkpoint, args.output_dir, langs,
                   shard_size=args.shard_size, settings=settings, batch_size=args.batch_size,
                   seed=args.seed, beam_args=beam_args, vocabulary=args.vocabulary)  # fmt: skip
  print(f"{len(stats)} shards, {sum(s['questions'] for s in stats)} questions -> {args.output_dir}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
