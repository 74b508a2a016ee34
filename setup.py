"""xtr_jax: multilingual, cross-lingual token retrieval (XTR, xQG) in JAX/Flax."""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent


def _requirements(name: str) -> list[str]:
  lines = (HERE / name).read_text().splitlines()
  return [ln.strip() for ln in lines if ln.strip() and not ln.startswith(("#", "-r"))]


setuptools.setup(
  name="xtr_jax",
  version="0.1.0",
  description="XTR token retrieval and xQG query generation on mT5, in JAX/Flax.",
  long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
  long_description_content_type="text/markdown",
  python_requires=">=3.11,<3.12",
  packages=setuptools.find_packages(include=["xtr_jax", "xtr_jax.*", "tasks", "tasks.*"]),
  package_data={"xtr_jax": ["assets/**/*", "assets/*"]},
  include_package_data=True,
  install_requires=_requirements("requirements.txt"),
  extras_require={
    # Reference tests compare against the PyTorch/transformers implementation.
    "test": [
      r
      for r in _requirements("requirements-test.txt")
      if r not in _requirements("requirements.txt")
    ],
    # Beam pipelines (xtr_jax/scale); resolves protobuf 6.x / pyarrow 25 (docs/readme_scale.md).
    "beam": ["apache-beam[gcp]==2.77.0"],
  },
  entry_points={"console_scripts": ["xtr-jax = xtr_jax.cli:main"]},
)
