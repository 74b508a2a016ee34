"""xQG questions for every passage of a corpus, in many languages (the library behind
``xtr-jax generate``).

Each passage and language becomes the prompt ``Generate a {Language} question for this
passage: {title} {text}`` (``data/xqg_prompt.py``); an encoder-decoder generator (mT5, or the
BERT2BERT model warm-started from a pretrained encoder, ``models/bert2bert.py``) decodes
``num_questions`` questions per prompt with greedy, top-k sampling or beam search, batched
and sharded over the local devices.

Output: JSONL ``{"docid": ..., "generated_queries": {code: [question, ...]}}`` (the published
xQG layout), optionally also SWIM-IR records (``_id, lang, code, query, title, text``) so the
questions can train a retriever directly.

Crash safety: both files are append-only; after each batch they are flushed and fsynced and
then ``OUTPUT.progress.json`` (written atomically) records their byte sizes, the number of
passages done and the settings. A rerun with the same settings truncates the files to the
recorded sizes (dropping any half-written batch or line) and continues after the last finished
passage. Sampling keys are derived from the seed and the passage position, so a resumed run
writes the same bytes as an uninterrupted one.

Remote output (``--output gs://...``): an object store has no append or truncate, and an
object appears whole once uploaded. The recorded prefix of each file is read back once, new
batches are appended in memory, and a commit re-uploads each whole file and then the progress
file, once ``remote_commit_seconds`` have passed since the last (and at the end, or when the run
stops on an error), so a crash loses at most that much work, which the rerun regenerates byte
for byte.
Each commit uploads the whole file; a corpus too large for that is what ``scale/
beam_generate`` (one object per shard) is for.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from xtr_jax import io as xio
from xtr_jax.data.languages import language_name
from xtr_jax.data.readers import read_corpus
from xtr_jax.data.xqg_prompt import xqg_input
from xtr_jax.io import atomic_write_json
from xtr_jax.models import bert2bert, decoding
from xtr_jax.xqg import language_tags

PROGRESS_SUFFIX = ".progress.json"
GENERATOR_KINDS = ("mt5", "bert2bert")  # checkpoint model_kinds QuestionGenerator decodes


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  strategy: str = "topk"
  num_questions: int = 1
  top_k: int = 10
  temperature: float = 1.0
  beam_size: int = 4
  alpha: float = 0.6
  max_input_length: int = 256
  max_decode_length: int = 64
  language_tags: str = "auto"  # decoder starts from the language's tag: auto | yes | no
  # Never emit SentencePiece's unk piece: it detokenises to a literal "⁇", which carries no
  # content and, indexed, makes unrelated passages match each other on it.
  suppress_unk: bool = True

  def check(self) -> None:
    if self.strategy not in decoding.STRATEGIES:
      raise ValueError(f"--strategy={self.strategy!r}; expected one of {decoding.STRATEGIES}")
    if self.num_questions < 1:
      raise ValueError(f"--num_questions={self.num_questions} must be >= 1")
    if self.strategy == "greedy" and self.num_questions != 1:
      raise ValueError(
        f"--strategy=greedy gives one question per prompt; got --num_questions="
        f"{self.num_questions} (use topk or beam)"
      )
    if self.strategy == "beam" and self.num_questions > self.beam_size:
      raise ValueError(f"--num_questions={self.num_questions} exceeds --beam_size={self.beam_size}")
    if self.strategy == "topk" and self.temperature <= 0:
      raise ValueError(f"--temperature={self.temperature} must be > 0 for topk sampling")
    if self.language_tags not in ("auto", "yes", "no"):
      raise ValueError(f"--language_tags={self.language_tags!r}; expected auto, yes or no")
    if self.max_input_length < 2 or self.max_decode_length < 1:
      raise ValueError(
        f"--max_input_length={self.max_input_length} (>= 2) and --max_decode_length="
        f"{self.max_decode_length} (>= 1) out of range"
      )


def resolve_language_tags(settings: DecodeSettings, checkpoint_dir: str) -> DecodeSettings:
  """Turns ``language_tags='auto'`` into yes/no from the checkpoint's recorded metadata."""
  if settings.language_tags != "auto":
    return settings
  tagged = language_tags.trained_with_language_tags(checkpoint_dir)
  return dataclasses.replace(settings, language_tags="yes" if tagged else "no")


def _unk_id(tokenizer) -> int | None:
  """The tokenizer's unknown-piece id (SentencePiece or a ``tokenizers`` unigram model)."""
  if hasattr(tokenizer, "sp"):
    return tokenizer.sp.unk_id()
  return tokenizer.tokenizer.token_to_id("<unk>")


class QuestionGenerator:
  """Jitted, device-sharded prompt -> questions, for one encoder-decoder checkpoint.

  Works in the model's output ids: for a generator with a restricted output vocabulary
  (``Bert2BertConfig.output_vocab``) decoded ids are mapped back to the tokenizer's ids
  before detokenising, and the unk piece is suppressed by its output id.
  """

  def __init__(self, params, config, tokenizer, settings: DecodeSettings):
    settings.check()
    self.config, self.tokenizer, self.settings = config, tokenizer, settings
    devices = np.array(jax.devices())
    self.num_devices = devices.size
    mesh = Mesh(devices, ("data",))
    self.batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    self.params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    self.sp_size = tokenizer.vocab_size
    self.restricted = isinstance(config, bert2bert.Bert2BertConfig)
    if settings.language_tags == "auto":
      raise ValueError("resolve --language_tags=auto first (trained_with_language_tags)")
    self.use_tags = settings.language_tags == "yes"
    if self.use_tags and not language_tags.has_room(config.vocab_size, self.sp_size):
      raise ValueError(
        f"--language_tags=yes needs vocab_size >= {self.sp_size} + {language_tags.NUM_TAGS}; "
        f"the checkpoint has {config.vocab_size} (it was not trained with language tags)"
      )

  def round_rows(self, rows: int) -> int:
    return -(-rows // self.num_devices) * self.num_devices

  def output_id(self, token_id: int) -> int | None:
    """The model's output id of a tokenizer id (None: outside a restricted vocabulary)."""
    return self.config.output_id(token_id) if self.restricted else token_id

  def __call__(
    self, prompts: list[str], rng: jax.Array, rows: int, codes: list[str] | None = None
  ) -> list[list[str]]:
    """``num_questions`` questions per prompt; the batch is padded to ``rows`` (fixed shape).

    ``codes`` (each prompt's language) is needed when the model uses language tags.
    """
    s = self.settings
    decode_kw: dict = {}
    unk = _unk_id(self.tokenizer)
    unk = None if unk is None else self.output_id(unk)
    if s.suppress_unk and unk is not None:
      decode_kw["suppress_ids"] = (unk,)
    if self.use_tags:
      if codes is None or len(codes) != len(prompts):
        raise ValueError("a language-tagged generator needs one language code per prompt")
      start = np.zeros((rows,), np.int32)
      start[: len(codes)] = [language_tags.tag_id(c, self.sp_size) for c in codes]
      decode_kw.update(
        start_ids=jax.device_put(start, self.batch_sharding), vocab_limit=self.sp_size
      )
    ids = self.tokenizer.encode(prompts, s.max_input_length)
    batch = np.full((rows, s.max_input_length), self.tokenizer.pad_id, np.int32)
    for i, row in enumerate(ids):
      batch[i, : len(row)] = row
    out = decoding.generate(
      self.params,
      jax.device_put(batch, self.batch_sharding),
      rng,
      config=self.config,
      strategy=s.strategy,
      max_decode_length=s.max_decode_length,
      num_return=s.num_questions,
      top_k=s.top_k,
      temperature=s.temperature,
      beam_size=s.beam_size,
      alpha=s.alpha,
      **decode_kw,
    )
    tokens = np.asarray(out.tokens)
    return [[self.detokenize(t) for t in tokens[i]] for i in range(len(prompts))]

  def detokenize(self, tokens) -> str:
    """Text up to EOS. Output ids are mapped back to tokenizer ids (restricted vocabulary);
    ids past the tokenizer (mT5 pads its vocabulary, language tags) become unk."""
    ids = decoding.trim_at_eos(tokens, self.config.eos_token_id)
    if self.restricted and ids:
      ids = bert2bert.to_token_ids(self.config, np.asarray(ids)).tolist()
    unk = _unk_id(self.tokenizer)
    return self.tokenizer.decode([i if i < self.sp_size else unk for i in ids])


def check_generator_kind(model_kind: str, checkpoint_dir: str) -> None:
  """One-line ValueError unless ``model_kind`` is an encoder-decoder this module decodes."""
  if model_kind not in GENERATOR_KINDS:
    raise ValueError(
      f"{checkpoint_dir}: model_kind={model_kind!r}; generation needs an encoder-decoder "
      f"checkpoint ({', '.join(GENERATOR_KINDS)})"
    )


def load_generator(
  checkpoint_dir: str, settings: DecodeSettings, vocabulary: str | None = None
) -> tuple[QuestionGenerator, str]:
  """(generator, checkpoint fingerprint) for an mT5 or BERT2BERT checkpoint.

  Why one loader: the tokenizer differs by kind (a SentencePiece vocabulary for mT5, the
  checkpoint's own ``tokenizer.json`` for BERT2BERT), and ``tokenizer_for`` is what picks
  it; entry points that built a SentencePiece tokenizer themselves refused BERT2BERT.
  ``language_tags='auto'`` is resolved from the checkpoint's metadata, as the CLI does.
  """
  from xtr_jax.checkpoints.orbax_io import load_checkpoint  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: PLC0415

  ckpt = load_checkpoint(checkpoint_dir)
  check_generator_kind(ckpt.model_kind, checkpoint_dir)
  tokenizer = tokenizer_for(checkpoint_dir, ckpt.extra, ckpt.config, vocabulary)
  settings = resolve_language_tags(settings, checkpoint_dir)
  generator = QuestionGenerator(ckpt.params, ckpt.config, tokenizer, settings)
  return generator, ckpt.fingerprint


# ------------------------------------------------------------------------ resumable output


def _check_resumable(path: str, actual: int, size: int) -> None:
  if actual < size:
    raise RuntimeError(
      f"{path} has {actual} bytes but its progress file records {size}; the output was "
      "modified outside this command (delete it and its progress file to start over)"
    )


class _LocalOutput:
  """A local append-only file, truncated to the recorded size (``truncate`` and ``fsync``
  need a local file; remote paths get ``_RemoteOutput``)."""

  def __init__(self, path: str, size: int):
    _check_resumable(path, xio.getsize(path) if xio.exists(path) else 0, size)
    self.f = open(path, "ab")  # noqa: SIM115 (closed by close)
    self.f.truncate(size)  # drops partial work

  def write(self, data: bytes) -> None:
    self.f.write(data)

  def size(self) -> int:
    return self.f.tell()

  def sync(self, size: int) -> int:
    """Makes the first ``size`` bytes (all written so far, here) durable; returns ``size``."""
    self.f.flush()
    os.fsync(self.f.fileno())
    return size

  def close(self) -> None:
    self.f.close()


class _RemoteOutput:
  """A remote object grown in memory: its recorded prefix, then the new bytes. ``sync``
  uploads the object's first ``size`` bytes in one upload, so it is replaced whole."""

  def __init__(self, path: str, size: int):
    self.path = path
    actual = xio.getsize(path) if xio.exists(path) else 0
    _check_resumable(path, actual, size)
    self.data = bytearray()
    if size:
      with xio.open_file(path, "rb") as f:
        self.data += f.read(size)  # drops partial work (at the next upload)
    # -1: not yet as recorded (missing, or longer than the recorded size).
    self.synced = size if actual == size and xio.exists(path) else -1

  def write(self, data: bytes) -> None:
    self.data += data

  def size(self) -> int:
    return len(self.data)

  def sync(self, size: int) -> int:
    if self.synced != size:
      xio.atomic_write_bytes(self.path, bytes(self.data[:size]))
      self.synced = size
    return size

  def close(self) -> None:
    pass


def _open_for_resume(path: str, size: int) -> _LocalOutput | _RemoteOutput:
  """``path`` opened for appending after its first ``size`` bytes (later bytes dropped)."""
  return (_RemoteOutput if xio.is_remote(path) else _LocalOutput)(path, size)


def _batches(passages: Iterator, size: int) -> Iterator[list]:
  batch = []
  for p in passages:
    batch.append(p)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def generate_corpus(
  corpus: str,
  output: str,
  generator: QuestionGenerator,
  languages: list[str],
  *,
  batch_size: int = 16,
  seed: int = 0,
  swim_ir_output: str | None = None,
  fingerprint: str = "",
  progress: bool = True,
  max_batches: int | None = None,
  remote_commit_seconds: float = 60.0,
) -> dict:
  """Generates questions for every passage of ``corpus``; resumes from ``output``'s progress.

  ``batch_size`` counts passages; each step decodes ``batch_size * len(languages)`` prompts.
  ``max_batches`` stops early (for tests and for splitting a job into bounded runs). Local
  output is committed after every batch; remote output (``gs://``) at most every
  ``remote_commit_seconds`` (see the module docstring).
  """
  for code in languages:
    language_name(code)  # clear error for unknown codes
  settings = {
    "corpus": xio.abspath(corpus),
    "languages": languages,
    "batch_size": batch_size,
    "seed": seed,
    "swim_ir_output": xio.abspath(swim_ir_output) if swim_ir_output else None,
    "model_fingerprint": fingerprint,
    "decode": dataclasses.asdict(generator.settings),
  }
  progress_path = output + PROGRESS_SUFFIX
  state = {"passages": 0, "output_bytes": 0, "swim_ir_bytes": 0, "last_docid": None}
  if xio.exists(progress_path):
    saved = json.loads(xio.read_text(progress_path))
    diff = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
    if diff:
      raise ValueError(
        f"{progress_path}: cannot resume, settings differ: "
        + "; ".join(f"{k}: was {saved['settings'].get(k)!r}, now {settings[k]!r}" for k in diff)
      )
    state = saved["state"]
    logging.info("resuming %s after %d passages", output, state["passages"])
  elif xio.exists(output) and xio.getsize(output) > 0:
    raise FileExistsError(
      f"{output} exists but {progress_path} does not; refusing to overwrite (delete it first)"
    )
  out = _open_for_resume(output, state["output_bytes"])
  swim = _open_for_resume(swim_ir_output, state["swim_ir_bytes"]) if swim_ir_output else None
  rows = generator.round_rows(batch_size * len(languages))
  base_key = jax.random.PRNGKey(seed)
  passages = read_corpus(corpus)
  done = state["passages"]
  last = None
  for p in itertools.islice(passages, done):  # skip what is already written
    last = p.id
  if done and last != state["last_docid"]:
    raise ValueError(
      f"{corpus}: passage {done} is {last!r} but {output} ended with "
      f"{state['last_docid']!r}; the corpus changed since the run started"
    )
  bar = None
  if progress:
    from tqdm import tqdm  # noqa: PLC0415

    bar = tqdm(initial=done, unit="passage", desc="generate")
  t0, new = time.time(), 0
  remote = xio.is_remote(output) or (swim_ir_output is not None and xio.is_remote(swim_ir_output))
  last_commit, committed = time.monotonic(), state

  def commit() -> None:
    """Makes the finished batches durable, then records them in the progress file."""
    nonlocal last_commit, committed
    if swim is not None:
      swim.sync(state["swim_ir_bytes"])
    out.sync(state["output_bytes"])
    atomic_write_json(progress_path, {"settings": settings, "state": state})
    last_commit, committed = time.monotonic(), state

  try:
    for b, batch in enumerate(_batches(passages, batch_size)):
      if max_batches is not None and b >= max_batches:
        break
      prompts = [xqg_input(c, p.title, p.text) for p in batch for c in languages]
      codes = [c for _ in batch for c in languages]
      questions = generator(prompts, jax.random.fold_in(base_key, done), rows, codes)
      lines, swim_lines = [], []
      for i, p in enumerate(batch):
        per_lang = {c: questions[i * len(languages) + j] for j, c in enumerate(languages)}
        lines.append(json.dumps({"docid": p.id, "generated_queries": per_lang}, ensure_ascii=False))
        for c, qs in per_lang.items():
          for k, q in enumerate(qs):
            rec = {
              "_id": f"{p.id}-{c}-{k}",
              "lang": language_name(c),
              "code": c,
              "query": q,
              "title": p.title,
              "text": p.text,
            }
            swim_lines.append(json.dumps(rec, ensure_ascii=False))
      if swim is not None:
        swim.write(("\n".join(swim_lines) + "\n").encode("utf-8"))
      out.write(("\n".join(lines) + "\n").encode("utf-8"))
      done += len(batch)
      new += len(batch)
      sizes = {"output_bytes": out.size()}
      if swim is not None:
        sizes["swim_ir_bytes"] = swim.size()
      # One assignment: an interrupt leaves the state of the last batch or of this one.
      state = {**state, "passages": done, "last_docid": batch[-1].id, **sizes}
      if not remote or time.monotonic() - last_commit >= remote_commit_seconds:
        commit()
      if bar is not None:
        bar.update(len(batch))
    if state != committed:
      commit()
    elif remote:  # nothing new: still leave the files as recorded (as truncation does locally)
      out.sync(state["output_bytes"])
      if swim is not None:
        swim.sync(state["swim_ir_bytes"])
  except BaseException:
    if remote and state["passages"] != committed["passages"]:
      try:  # keep the finished batches of an interrupted remote run
        commit()
      except Exception:
        logging.exception("could not save the progress of %s", output)
    raise
  finally:
    out.close()
    if swim is not None:
      swim.close()
    if bar is not None:
      bar.close()
  seconds = time.time() - t0
  return {"passages": done, "new_passages": new, "seconds": seconds}
