"""The shipped TPU-scale run configs name SeqIO mixtures that are registered."""

import pathlib
import re

import pytest
import seqio

import tasks  # noqa: F401  (registers the tasks and mixtures)

GIN_RUNS = pathlib.Path(__file__).resolve().parent.parent / "gin" / "runs"


@pytest.mark.parametrize("name", ["train_xtr.gin", "train_xqg.gin"])
def test_run_config_mixture_is_registered(name):
  text = (GIN_RUNS / name).read_text()
  found = re.findall(r'^MIXTURE\s*=\s*"([^"]+)"', text, flags=re.M)
  assert found, f"{name} binds no MIXTURE macro"
  for mixture in found:
    assert seqio.get_mixture_or_task(mixture).name == mixture
