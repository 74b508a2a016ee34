"""TFDS builders: ``swim_ir`` (one config per setting x language) and ``xor_tydi_retrieve``.

Both read ``manual_dir`` first (layouts in docs/readme_data.md); when files are missing they
download the official release if the host is reachable, and otherwise fail naming the files
they expected and where. The XOR corpus streams its TSV; config ``corpus_beam`` builds it with
Apache Beam (imported only there; ``pip install apache-beam`` to use it).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socket
import urllib.parse

import tensorflow_datasets as tfds

from xtr_jax.data import languages, locations, readers

SWIM_IR_URL = "http://storage.googleapis.com/gresearch/swim-ir/swim_ir_v1.tar.gz"
XOR_URLS = {
  "train": "https://nlp.cs.washington.edu/xorqa/XORQA_site/data/xor_train_retrieve_eng_span.jsonl",
  "dev": "https://nlp.cs.washington.edu/xorqa/XORQA_site/data/xor_dev_retrieve_eng_span_v1_1.jsonl",
  "test": (
    "https://nlp.cs.washington.edu/xorqa/XORQA_site/data/"
    "xor_test_retrieve_eng_span_q_only_v1_1.jsonl"
  ),
  "corpus": "https://dl.fbaipublicfiles.com/dpr/wikipedia_split/psgs_w100.tsv.gz",
}


def _online(url: str, timeout: float = 3.0) -> bool:
  """Whether the URL's host answers; downloads are skipped offline (env XTR_JAX_OFFLINE=1)."""
  if os.environ.get("XTR_JAX_OFFLINE") == "1":
    return False
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (443 if parsed.scheme == "https" else 80)
  try:
    with socket.create_connection((parsed.hostname, port), timeout=timeout):
      return True
  except OSError:
    return False


def _manual_dir(dl_manager) -> pathlib.Path | None:
  try:
    path = dl_manager.manual_dir
  except (AssertionError, ValueError, FileNotFoundError):
    return None
  return pathlib.Path(path) if path and os.path.isdir(path) else None


def swim_ir_candidates(root: pathlib.Path, setting: str, code: str) -> list[pathlib.Path]:
  """Accepted file names for one (setting, language) under a root."""
  return [
    root / setting / f"{code}.jsonl",
    root / setting / f"{code}.jsonl.gz",
    root / setting / code / "train.jsonl",
    root / setting.replace("_", "-") / f"{code}.jsonl",
  ]


@dataclasses.dataclass
class SwimIrConfig(tfds.core.BuilderConfig):
  setting: str = "cross_lingual"
  code: str = "ja"


def _swim_ir_configs() -> list[SwimIrConfig]:
  return [
    SwimIrConfig(
      name=f"{setting}_{code}",
      description=f"SWIM-IR {setting}, queries in {languages.language_name(code)}",
      setting=setting,
      code=code,
    )
    for setting, codes in languages.SETTINGS.items()
    for code in codes
  ]


class SwimIr(tfds.core.GeneratorBasedBuilder):
  """SWIM-IR: synthetic (PaLM 2) multilingual query-passage pairs (Thakur et al. 2023)."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = _swim_ir_configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Place {setting}/{code}.jsonl (SWIM-IR records: _id, lang, code, query, title, text) in "
    f"manual_dir, e.g. from the extracted {SWIM_IR_URL}."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=tfds.features.FeaturesDict(
        {"_id": text, "lang": text, "code": text, "query": text, "title": text, "text": text}
      ),
      supervised_keys=("query", "text"),
      homepage="https://github.com/google-research-datasets/swim-ir",
    )

  def _find(self, dl_manager) -> pathlib.Path:
    cfg = self.builder_config
    roots = [r for r in [_manual_dir(dl_manager)] if r is not None]
    looked = [c for r in roots for c in swim_ir_candidates(r, cfg.setting, cfg.code)]
    for c in looked:
      if c.is_file():
        return c
    if _online(SWIM_IR_URL):
      extracted = pathlib.Path(dl_manager.download_and_extract(SWIM_IR_URL))
      for name in (f"{cfg.code}.jsonl", f"{cfg.code}.jsonl.gz", "train.jsonl"):
        for c in sorted(extracted.rglob(name)):
          if cfg.setting.split("_")[0] in str(c).replace("-", "_"):
            return c
      raise FileNotFoundError(
        f"downloaded {SWIM_IR_URL} to {extracted} but found no {cfg.setting} file for {cfg.code!r}"
      )
    raise FileNotFoundError(
      f"SWIM-IR {cfg.setting}/{cfg.code}: expected one of "
      + (", ".join(str(c) for c in looked) or f"{cfg.setting}/{cfg.code}.jsonl in manual_dir")
      + f" (manual_dir={roots[0] if roots else 'not set'}; offline, so {SWIM_IR_URL} was not "
      "downloaded)"
    )

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(self._find(dl_manager))}

  def _generate_examples(self, path):
    for r in readers.read_swim_ir(path):
      yield (
        r.id,
        {
          "_id": r.id,
          "lang": r.lang,
          "code": r.code,
          "query": r.query,
          "title": r.title,
          "text": r.text,
        },
      )


@dataclasses.dataclass
class XorConfig(tfds.core.BuilderConfig):
  part: str = "queries"  # queries | corpus
  use_beam: bool = False


def _read_corpus_file(path: str):
  for p in readers.read_corpus(path):
    yield p.id, {"id": p.id, "text": p.text, "title": p.title}


class XorTydiRetrieve(tfds.core.GeneratorBasedBuilder):
  """XOR-TyDi XOR-Retrieve (Asai et al. 2021): questions in 7 languages, English passages."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
    XorConfig(
      name="queries", description="XOR-Retrieve questions (train/dev/test).", part="queries"
    ),
    XorConfig(name="corpus", description="English passages (id, text, title).", part="corpus"),
    XorConfig(
      name="corpus_beam",
      description="English passages, built with Apache Beam (for the 18M-passage corpus).",
      part="corpus",
      use_beam=True,
    ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Place the official XOR-Retrieve files in manual_dir: "
    + "; ".join(f"{k}: one of {', '.join(v)}" for k, v in locations.XOR_FILES.items())
  )

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    if self.builder_config.part == "queries":
      features = {
        "id": text,
        "lang": text,
        "question": text,
        "answers": tfds.features.Sequence(text),
      }
    else:
      features = {"id": text, "text": text, "title": text}
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=tfds.features.FeaturesDict(features),
      homepage="https://nlp.cs.washington.edu/xorqa/",
    )

  def _find(self, dl_manager, kind: str, required: bool) -> pathlib.Path | None:
    root = _manual_dir(dl_manager)
    if root is not None:
      for name in locations.XOR_FILES[kind]:
        if (root / name).is_file():
          return root / name
    if _online(XOR_URLS[kind]):
      return pathlib.Path(dl_manager.download(XOR_URLS[kind]))
    if not required:
      return None
    raise FileNotFoundError(
      f"XOR-TyDi {kind}: expected one of {', '.join(locations.XOR_FILES[kind])} in "
      f"manual_dir={root or 'not set'} (offline, so {XOR_URLS[kind]} was not downloaded)"
    )

  def _split_generators(self, dl_manager):
    if self.builder_config.part == "corpus":
      return {"train": self._generate_examples(self._find(dl_manager, "corpus", True))}
    found = {s: self._find(dl_manager, s, False) for s in ("train", "dev", "test")}
    found = {s: p for s, p in found.items() if p is not None}
    if not found:
      root = _manual_dir(dl_manager)
      raise FileNotFoundError(
        "XOR-TyDi queries: no split found; expected any of "
        + "; ".join(f"{s}: {', '.join(locations.XOR_FILES[s])}" for s in ("train", "dev", "test"))
        + f" in manual_dir={root or 'not set'}"
      )
    return {split: self._generate_examples(path) for split, path in found.items()}

  def _generate_examples(self, path):
    if self.builder_config.part == "corpus":
      if self.builder_config.use_beam:
        try:
          import apache_beam as beam
        except ImportError as e:
          raise ImportError(
            "xor_tydi_retrieve/corpus_beam needs apache-beam (pip install apache-beam); "
            "use config 'corpus' to stream the TSV without it"
          ) from e
        return beam.Create([str(path)]) | beam.FlatMap(_read_corpus_file)
      return _read_corpus_file(str(path))
    return self._queries(path)

  def _queries(self, path):
    for q in readers.read_xor_queries(path):
      yield (
        q.id,
        {
          "id": q.id,
          "lang": q.lang,
          "question": q.question,
          "answers": list(q.answers or ()),
        },
      )
