"""Corpus encoding as an Apache Beam pipeline: one model per worker, sharded resumable output.

Why: encoding 18M passages (2.7B token vectors) is embarrassingly parallel over corpus
shards. Each worker loads the checkpoint once (``DoFn.setup``) and turns a ``ShardSpec`` into
the same files ``xtr_jax.index.encode`` writes (``vectors_XXXXX.npy``, ``token_to_passage_
XXXXX.npy`` with global passage rows, ``passage_ids_XXXXX.json``), then a ``done`` marker;
the driver finally writes ``progress.json`` so ``encode.load_shards`` and the sharded index
builder read the result. Beam is imported lazily: the per-shard work is plain Python.
Every file goes through ``xtr_jax.io``, so ``--output_dir`` (and ``--corpus``) may be
``gs://...``, as on a Dataflow job; Beam itself writes no files here.

  python -m xtr_jax.scale.beam_encode --corpus C.tsv --checkpoint CKPT --output_dir OUT \
    --shard_size 10000 -- --runner=DirectRunner --direct_num_workers=2
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from xtr_jax import io as xio
from xtr_jax.index.encode import PROGRESS, EncodeParams, text_to_encode
from xtr_jax.io import atomic_save_npy, atomic_write_json
from xtr_jax.scale import shards


class EncodeShardWork:
  """The DoFn body: ``setup`` loads the model once, ``process`` encodes one shard."""

  def __init__(self, corpus: str, checkpoint: str, output_dir: str, params: EncodeParams,
               vocabulary: str | None = None):  # fmt: skip
    self.corpus, self.checkpoint, self.output_dir = corpus, checkpoint, output_dir
    self.params, self.vocabulary = params, vocabulary
    self.encoder = self.tokenizer = None

  def setup(self) -> None:
    from xtr_jax.checkpoints.embedded import resolve_checkpoint  # noqa: PLC0415
    from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: PLC0415
    from xtr_jax.index.encode import TokenEncoder  # noqa: PLC0415
    from xtr_jax.index.retriever import load_model  # noqa: PLC0415

    # The checkpoint's own tokenizer when it carries one (BERT family), else its vocabulary.
    checkpoint = resolve_checkpoint(self.checkpoint)
    params, config, proj_dim, self.fingerprint, extra = load_model(checkpoint)
    self.tokenizer = tokenizer_for(checkpoint, extra, config, self.vocabulary)
    self.encoder = TokenEncoder(params, config, proj_dim, pooling="token")

  def process(self, spec: shards.ShardSpec):
    if shards.is_done(self.output_dir, spec.index):  # retried bundle or rerun
      yield shards.finished_stats(self.output_dir, [spec])[0]
      return
    if self.encoder is None:
      self.setup()
    t0 = time.time()
    p = self.params
    rows = shards.read_shard(self.corpus, spec)
    texts = [text_to_encode(_as_passage(r), p) for r in rows]
    ids = self.tokenizer.encode(texts, p.max_length, p.lowercase)
    vecs = self.encoder.encode_tokens(ids, p.batch_size, p.max_length, p.buckets)
    lengths = np.array([v.shape[0] for v in vecs], np.int64)
    first = spec.first_row
    t2p = np.repeat(np.arange(first, first + len(rows), dtype=np.int32), lengths)
    i, out = spec.index, self.output_dir
    atomic_save_npy(xio.join(out, f"vectors_{i:05d}.npy"), np.concatenate(vecs).astype(np.float16))
    atomic_save_npy(xio.join(out, f"token_to_passage_{i:05d}.npy"), t2p)
    atomic_write_json(xio.join(out, f"passage_ids_{i:05d}.json"), [r.id for r in rows])
    stats = {"index": i, "first_row": first, "passages": len(rows), "tokens": int(t2p.size),
             "seconds": round(time.time() - t0, 2), "model_fingerprint": self.fingerprint}  # fmt: skip
    shards.mark_done(out, i, stats)
    yield stats


def _as_passage(row: shards.Row):
  from xtr_jax.data.formats import Passage  # noqa: PLC0415

  return Passage(row.id, row.text, row.title)


def write_progress(output_dir: str, specs: list[shards.ShardSpec], settings: dict) -> dict:
  """``progress.json`` in ``encode.encode_corpus``'s layout, once every shard is done."""
  stats = shards.finished_stats(output_dir, specs)
  record = {
    "settings": settings,
    "shards": [{k: s[k] for k in ("index", "first_row", "passages", "tokens")} for s in stats],
    "complete": True,
    "num_passages": sum(s["passages"] for s in stats),
  }
  atomic_write_json(xio.join(output_dir, PROGRESS), record)
  return record


def make_dofn(work):
  """Wraps a plain work object (``setup``/``process``) in a ``beam.DoFn``."""
  import apache_beam as beam  # noqa: PLC0415

  class _WorkDoFn(beam.DoFn):
    def __init__(self, w):
      self.work = w

    def setup(self):
      self.work.setup()

    def process(self, element):
      yield from self.work.process(element)

  return _WorkDoFn(work)


def run_pipeline(specs: list[shards.ShardSpec], work, beam_args: list[str] | None) -> None:
  """Runs ``work`` over the pending ``specs``: Beam when ``beam_args`` is given, else locally."""
  todo = list(shards.pending(work.output_dir, specs))
  if not todo:
    return
  if beam_args is None:  # no Beam: the same work, in this process
    work.setup()
    for spec in todo:
      list(work.process(spec))
    return
  import apache_beam as beam  # noqa: PLC0415
  from apache_beam.options.pipeline_options import PipelineOptions  # noqa: PLC0415

  with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
    _ = (
      p
      | "Shards" >> beam.Create(todo)
      | "Spread" >> beam.Reshuffle()  # one shard per worker slot, not one worker for all
      | "Work" >> beam.ParDo(make_dofn(work))
    )


def encode(corpus: str, checkpoint: str, output_dir: str, params: EncodeParams = EncodeParams(),
           beam_args: list[str] | None = None, vocabulary: str | None = None) -> dict:  # fmt: skip
  """Plans shards, runs the pending ones, writes ``progress.json``; returns it."""
  xio.makedirs(output_dir)
  specs = shards.plan_shards(corpus, params.shard_size)
  work = EncodeShardWork(corpus, checkpoint, output_dir, params, vocabulary)
  run_pipeline(specs, work, beam_args)
  settings = {"corpus": xio.abspath(corpus), "checkpoint": xio.abspath(checkpoint),
              "encode": dataclasses.asdict(params)}  # fmt: skip
  return write_progress(output_dir, specs, settings)


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog="python -m xtr_jax.scale.beam_encode", description=__doc__)
  ap.add_argument("--corpus", required=True)
  ap.add_argument("--checkpoint", required=True)
  ap.add_argument("--output_dir", required=True)
  ap.add_argument("--vocabulary", default=None)
  ap.add_argument("--shard_size", type=int, default=10_000)
  ap.add_argument("--max_length", type=int, default=256)
  ap.add_argument("--batch_size", type=int, default=32)
  ap.add_argument("--no_beam", action="store_true", help="run the shards in this process")
  args, beam_args = ap.parse_known_args(argv)
  params = EncodeParams(max_length=args.max_length, batch_size=args.batch_size,
                        shard_size=args.shard_size)  # fmt: skip
  beam_args = None if args.no_beam else [a for a in beam_args if a != "--"]
  record = encode(args.corpus, args.checkpoint, args.output_dir, params, beam_args, args.vocabulary)
  print(f"{len(record['shards'])} shards, {record['num_passages']} passages -> {args.output_dir}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
