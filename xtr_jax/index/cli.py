"""``xtr-jax index`` (encode a corpus, build the token index) and ``xtr-jax search``.

Both check their inputs (files, what is in the folders given, flag values) before any model
loads, so a typo costs a second, not a model load; errors are one line naming the flag and
the file (and line), exit code 2 (see xtr_jax/cli.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys

import gin
from xtr_jax.checkpoints.embedded import EMBEDDED, is_embedded, resolve_checkpoint
from xtr_jax.checkpoints.orbax_io import METADATA_FILE
from xtr_jax.checkpoints.tokenizers import tokenizer_for
from xtr_jax.cli import (
  ArgumentParser,
  UsageError,
  add_skip_vector_check,
  positive_int,
  require_file,
  stderr_is_terminal,
)
from xtr_jax.data import formats
from xtr_jax.data.formats import Passage, read_corpus
from xtr_jax.gin_utils import bound_config_fields, parse_args_with_gin
from xtr_jax.index.build import build_from_corpus, build_from_index
from xtr_jax.index.compact import CompactParams
from xtr_jax.index.encode import TokenEncoder
from xtr_jax.index.retriever import Retriever, load_model
from xtr_jax.index.store import MANIFEST, SHARDED_FORMAT, read_manifest
from xtr_jax.io import atomic_write_bytes


@gin.configurable
def index_settings(backend: str = "scann", segment_tokens: int = 0, extra_weight: float = 1.0):
  """Index-level gin knobs (the rest live in ``EncodeParams`` and ``ScannParams``)."""
  return dict(backend=backend, segment_tokens=segment_tokens, extra_weight=extra_weight)


# ----------------------------------------------------------------------------- input checks


def describe_path(path: str) -> str:
  """What is at ``path``, in words, for an error that says what was expected instead."""
  if not os.path.exists(path):
    return "nothing (no such file or directory)"
  if not os.path.isdir(path):
    return "a file"
  names = set(os.listdir(path))
  if MANIFEST in names:
    return f"an index ({MANIFEST})"
  if METADATA_FILE in names:
    return f"a model checkpoint ({METADATA_FILE})"
  if "config.json" in names:
    return "a Hugging Face model folder (config.json; import it with `xtr-jax convert`)"
  if not names:
    return "an empty directory"
  return f"a directory without {MANIFEST} or {METADATA_FILE}"


def require_index(path: str, flag: str = "--index") -> dict:
  """The manifest of the index at ``path``; a UsageError says what is there otherwise."""
  if not os.path.isfile(os.path.join(path, MANIFEST)):
    raise UsageError(
      f"{flag} {path}: expected an index directory ({MANIFEST}, made by `xtr-jax index`), "
      f"found {describe_path(path)}"
    )
  return read_manifest(path)


def require_checkpoint(path: str, flag: str = "--checkpoint") -> str:
  """``path`` if it is a model checkpoint or an embedded model's name."""
  if is_embedded(path) or os.path.isfile(os.path.join(path, METADATA_FILE)):
    return path
  names = ", ".join(sorted(EMBEDDED))
  raise UsageError(
    f"{flag} {path}: expected a model checkpoint directory ({METADATA_FILE}) or an embedded "
    f"model name ({names}), found {describe_path(path)}"
  )


def check_corpus(path: str, flag: str = "--corpus") -> None:
  """The corpus file exists and its header and first passage parse (``path:line`` errors)."""
  require_file(path, flag, "corpus TSV file")
  if next(iter(read_corpus(path)), None) is None:
    raise UsageError(f"{flag} {path}: the corpus has no passages")


def check_index_output(path: str, overwrite: bool, flag: str = "--output") -> None:
  """``path`` is free, or an index that ``--overwrite`` may replace (never anything else)."""
  if not os.path.exists(path):
    return
  found = describe_path(path)
  is_index = os.path.isfile(os.path.join(path, MANIFEST))
  if not is_index and not (os.path.isdir(path) and not os.listdir(path)):
    raise UsageError(f"{flag} {path}: found {found}; refusing to replace what is not an index")
  if not overwrite and is_index:
    raise UsageError(f"{flag} {path}: found {found}; pass --overwrite to replace it")


# ----------------------------------------------------------------------------- index


def index_parser() -> ArgumentParser:
  p = ArgumentParser(prog="xtr-jax index", description=__doc__)
  p.add_argument(
    "--checkpoint",
    required=True,
    help="Retrieval model checkpoint dir, or an embedded model's name (me5-small).",
  )
  p.add_argument(
    "--corpus", help="TSV corpus: id, text, title (header). Required unless --reuse_index."
  )
  p.add_argument("--output", required=True, help="Index directory to create.")
  p.add_argument(
    "--reuse_index",
    help="Build from the corpus vectors stored in this index (same checkpoint) instead of "
    "encoding the corpus again: another backend, ScaNN setting or --augment_with in seconds.",
  )
  p.add_argument("--vocabulary", help="SentencePiece model (default: the checkpoint's).")
  p.add_argument(
    "--pooling",
    choices=("token", "mean"),
    help="token: one vector per token (XTR/ColBERT); mean: one mean-pooled vector per "
    "passage (single-vector). Default: the checkpoint's own.",
  )
  p.add_argument("--overwrite", action="store_true", help="Replace an existing index.")
  p.add_argument("--augment_with", help="xQG generated-questions JSONL (xtr-jax generate).")
  p.add_argument(
    "--augment_mode",
    default="tokens",
    choices=("tokens", "pooled_per_language"),
    help="tokens: add every question token vector; pooled_per_language: one mean vector "
    "per language's questions.",
  )
  p.add_argument(
    "--augment_weight", type=float, help="Scale of the added vectors (default: 1.0, gin)."
  )
  p.add_argument(
    "--augment_max_df",
    type=float,
    help="Drop question tokens whose piece occurs in more than this fraction of the augmented "
    "passages' questions (question words, punctuation, EOS); e.g. 0.05. Default: keep all.",
  )
  return p


def _check_reuse_args(parser: ArgumentParser, args) -> dict:
  """--reuse_index names an index other than --output; --corpus, if given, is its corpus.
  Returns the reused index's manifest."""
  manifest = require_index(args.reuse_index, "--reuse_index")
  if manifest.get("format") == SHARDED_FORMAT:
    parser.error(f"--reuse_index {args.reuse_index}: a sharded index; reuse its shards one by one")
  if os.path.realpath(args.reuse_index) == os.path.realpath(args.output):
    parser.error(f"--output {args.output}: the same index as --reuse_index; name a new one")
  if args.pooling and manifest.get("pooling", "token") != args.pooling:
    parser.error(
      f"--pooling {args.pooling}: --reuse_index {args.reuse_index} holds "
      f"{manifest.get('pooling', 'token')}-pooled vectors"
    )
  if args.corpus:
    check_corpus(args.corpus)
    ids = [p.id for p in read_corpus(args.corpus)]
    with open(os.path.join(args.reuse_index, "passage_ids.json")) as f:
      held = json.load(f)
    if ids != held:
      row = next((i for i, (a, b) in enumerate(zip(ids, held)) if a != b), min(len(ids), len(held)))
      parser.error(
        f"--corpus {args.corpus}: not the corpus of --reuse_index {args.reuse_index} "
        f"({len(ids)} vs {len(held)} passages; first difference at passage row {row})"
      )
  return manifest


def _check_index_args(parser: ArgumentParser, args) -> dict:
  """Every check that needs no model; returns the --reuse_index manifest ({} without one)."""
  if args.augment_with and not os.path.isfile(args.augment_with):
    parser.error(f"--augment_with {args.augment_with}: file not found")
  if args.augment_max_df is not None and not 0.0 < args.augment_max_df <= 1.0:
    parser.error(f"--augment_max_df {args.augment_max_df}: expected a fraction in (0, 1]")
  if not args.augment_with and (args.augment_max_df is not None or args.augment_weight is not None):
    parser.error("--augment_max_df / --augment_weight need --augment_with")
  reused = {}
  if args.reuse_index:
    reused = _check_reuse_args(parser, args)
  elif not args.corpus:
    parser.error("--corpus is required (or --reuse_index: the vectors of an existing index)")
  else:
    check_corpus(args.corpus)
  require_checkpoint(args.checkpoint)
  if args.vocabulary:
    require_file(args.vocabulary, "--vocabulary", "SentencePiece model file")
  check_index_output(args.output, args.overwrite)
  return reused


def index_main(argv: list[str]) -> int:
  parser = index_parser()
  args = parse_args_with_gin(parser, argv)
  reused = _check_index_args(parser, args)
  checkpoint = resolve_checkpoint(args.checkpoint)
  params, config, proj_dim, fingerprint, extra = load_model(checkpoint, bound_config_fields)
  pooling = args.pooling or reused.get("pooling") or extra.get("pooling", "token")
  if pooling == "mean" and args.augment_with and args.augment_mode == "tokens":
    parser.error("--augment_mode tokens needs --pooling token (use pooled_per_language)")
  tokenizer = tokenizer_for(checkpoint, extra, config, args.vocabulary)
  augmentation = {}
  if args.augment_with:  # xQG passage augmentation (xtr_jax/index/augment.py)
    from xtr_jax.index import augment  # noqa: PLC0415

    augmentation["extra_vectors"] = augment.extra_vectors_for_index(
      args.augment_with,
      TokenEncoder(params, config, proj_dim, pooling=pooling),
      tokenizer,
      mode=args.augment_mode,
      max_df=args.augment_max_df,
    )
  if args.augment_weight is not None:
    augmentation["extra_weight"] = args.augment_weight
  settings = {**index_settings(), **augmentation}
  if args.reuse_index:
    manifest = build_from_index(
      args.reuse_index,
      args.output,
      model_fingerprint=fingerprint,
      tokenizer=tokenizer,
      corpus=args.corpus,
      overwrite=args.overwrite,
      compact_params=CompactParams(),
      **settings,
    )
  else:
    manifest = build_from_corpus(
      args.corpus,
      args.output,
      params,
      config,
      proj_dim=proj_dim,
      model_fingerprint=fingerprint,
      tokenizer=tokenizer,
      checkpoint=checkpoint,
      pooling=pooling,
      overwrite=args.overwrite,
      progress=stderr_is_terminal(),
      compact_params=CompactParams(),
      **settings,
    )
  print(
    f"index {args.output}: {manifest['num_passages']} passages, {manifest['num_tokens']} "
    f"tokens ({pooling} pooling), {manifest['bytes_per_token']} bytes/token"
  )
  return 0


# ----------------------------------------------------------------------------- search

SEARCH_DOC = """Search an index: a readable ranked list, JSON, or a TREC run.

  xtr-jax search --index DIR --query "who wrote hamlet" [--query ...]
  xtr-jax search --index DIR --queries dev.jsonl --output run.trec

Titles and texts (text and json formats) come from the corpus the index was built from (the
path its manifest records) or from --corpus; the index itself stores only vectors and ids.
"""

FORMATS = ("text", "json", "trec")


def search_parser() -> ArgumentParser:
  p = ArgumentParser(prog="xtr-jax search", description=SEARCH_DOC)
  p.add_argument("--index", required=True, help="Index directory (made by `xtr-jax index`).")
  p.add_argument(
    "--query",
    action="append",
    default=[],
    metavar="TEXT",
    help="A question to search; repeatable, and may be combined with --queries. Their ids "
    "are 1, 2, ... in the order given.",
  )
  p.add_argument(
    "--queries", help="Queries file: XOR JSONL (id, question[, lang]) or an id<TAB>question .tsv."
  )
  p.add_argument(
    "--output", help="File to write (its folder is created). Default: print to stdout."
  )
  p.add_argument(
    "--format",
    choices=FORMATS,
    help="text: ranked list with titles and snippets; json: the same with full texts; trec: "
    "'qid Q0 pid rank score tag' lines. Default: trec with --output, else text.",
  )
  p.add_argument(
    "--k",
    type=positive_int,
    help="Passages per query (default: 10 for --format text, else 100).",
  )
  p.add_argument(
    "--corpus",
    help="Corpus TSV for titles and texts (default: the corpus recorded in the index manifest).",
  )
  p.add_argument(
    "--snippet_chars", type=positive_int, default=240, help="Text shown per passage (text)."
  )
  p.add_argument(
    "--checkpoint", help="Model checkpoint dir or embedded name (default: the manifest's)."
  )
  p.add_argument("--vocabulary", help="SentencePiece model (default: the manifest's).")
  p.add_argument("--exact", action="store_true", help="Exact MaxSim re-scoring.")
  p.add_argument(
    "--backend",
    choices=["scann", "brute_force"],
    help="Token search (default: the index's own).",
  )
  add_skip_vector_check(p)
  p.add_argument("--tag", default="xtr_jax", help="Run tag (last TREC column).")
  return p


def read_queries(path: str) -> list[tuple[str, str]]:
  """(id, question) of each query of a queries file, in file order (``data.formats``)."""
  return [(q.id, q.question) for q in formats.read_queries(path, require_lang=False).values()]


def read_search_queries(args) -> list[tuple[str, str]]:
  """(id, question) of --queries (file order) then of each --query (ids 1, 2, ...)."""
  queries: list[tuple[str, str]] = []
  if args.queries:
    require_file(args.queries, "--queries", "queries file")
    queries = read_queries(args.queries)
  taken = {qid for qid, _ in queries}
  for n, text in enumerate(args.query, 1):
    if not text.strip():
      raise UsageError(f"--query #{n} is empty")
    if str(n) in taken:
      raise UsageError(f"--query #{n}: id {n} is already a query id in --queries {args.queries}")
    queries.append((str(n), text))
  return queries


def corpus_for_results(args, manifest: dict, fmt: str) -> str | None:
  """The corpus to take titles and texts from (None: not needed, or not at hand)."""
  if fmt == "trec":
    return None
  if args.corpus:
    return require_file(args.corpus, "--corpus", "corpus TSV file")
  path = manifest.get("corpus")
  if path and os.path.isfile(path):
    return path
  logging.warning(
    "titles and texts not shown: the index's corpus %s is not there (pass --corpus)", path
  )
  return None


def lookup_passages(corpus: str | None, results) -> dict[str, Passage]:
  """The passages of the ranked ids, read in one pass over the corpus."""
  if corpus is None:
    return {}
  wanted = {pid for ranking in results for pid, _ in ranking}
  return {p.id: p for p in read_corpus(corpus) if p.id in wanted}


def format_trec(qids: list[str], results, tag: str) -> str:
  """TREC run lines of ``results[i]`` (best first) for ``qids[i]`` (``data.formats``)."""
  return formats.format_trec_run(dict(zip(qids, results, strict=True)), tag)


def format_json(queries: list[tuple[str, str]], results, passages: dict[str, Passage]) -> str:
  out = []
  for (qid, question), ranking in zip(queries, results):
    rows = []
    for rank, (pid, score) in enumerate(ranking, 1):
      p = passages.get(pid)
      row = {"rank": rank, "score": score, "id": pid}
      if p is not None:
        row.update(title=p.title, text=p.text)
      rows.append(row)
    out.append({"id": qid, "question": question, "results": rows})
  return json.dumps(out, ensure_ascii=False, indent=1) + "\n"


def snippet(text: str, chars: int) -> str:
  text = " ".join(text.split())
  return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def format_text(
  queries: list[tuple[str, str]], results, passages: dict[str, Passage], chars: int
) -> str:
  lines = []
  for (qid, question), ranking in zip(queries, results):
    lines.append(f"query {qid}: {question}")
    for rank, (pid, score) in enumerate(ranking, 1):
      p = passages.get(pid)
      title = f"  {p.title}" if p is not None and p.title else ""
      lines.append(f"{rank:>4}  {score:8.4f}  {pid}{title}")
      if p is not None:
        lines.append(f"{'':>16}{snippet(p.text, chars)}")
    lines.append("")
  return "\n".join(lines)


def search_main(argv: list[str]) -> int:
  parser = search_parser()
  args = parse_args_with_gin(parser, argv)
  if not args.query and not args.queries:
    parser.error("give --query TEXT (repeatable) and/or --queries FILE")
  if args.output and os.path.isdir(args.output):
    parser.error(f"--output {args.output}: is a directory, expected a file path")
  fmt = args.format or ("trec" if args.output else "text")
  k = args.k or (10 if fmt == "text" else 100)
  # Everything the user gave is checked before the model loads (seconds to minutes).
  queries = read_search_queries(args)
  manifest = require_index(args.index)
  if args.checkpoint:
    require_checkpoint(args.checkpoint)
  corpus = corpus_for_results(args, manifest, fmt)
  retriever = Retriever.load(
    args.index,
    args.checkpoint,
    args.vocabulary,
    backend=args.backend,
    expected_config=bound_config_fields,
    check_vectors=not args.skip_vector_check,
  )
  from tqdm import tqdm  # noqa: PLC0415

  results = []
  step = retriever.params.batch_size
  quiet = not stderr_is_terminal() or len(queries) <= step
  for start in tqdm(range(0, len(queries), step), desc="search", unit="batch", disable=quiet):
    batch = [q for _, q in queries[start : start + step]]
    results.extend(retriever.search(batch, k, exact=args.exact))
  if fmt == "trec":
    text = format_trec([qid for qid, _ in queries], results, args.tag)
  elif fmt == "json":
    text = format_json(queries, results, lookup_passages(corpus, results))
  else:
    text = format_text(queries, results, lookup_passages(corpus, results), args.snippet_chars)
  if not args.output:
    sys.stdout.write(text)
    return 0
  atomic_write_bytes(args.output, text.encode("utf-8"), make_parents=True)
  print(f"wrote {args.output}: {len(queries)} queries, k={k}, format {fmt}")
  return 0
