"""gin_utils.parse_gin: includes resolve through gin/ without false ERROR log lines."""

from __future__ import annotations

import logging

import pytest

import gin
from xtr_jax import gin_utils


def test_included_run_files_parse_without_error_records(caplog):
  # train_xqg_cpu.gin includes runs/train_xtr_cpu.gin; gin probes it as a package resource
  # first, which used to log "ERROR:root:Path not found" on every run.
  caplog.set_level(logging.INFO)
  try:
    gin_utils.parse_gin(["runs/train_xqg_cpu_qt.gin"], [], finalize=False)
    assert gin.query_parameter("%TRAIN_STEPS") == 2400
  finally:
    gin.clear_config()
  assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
  assert gin_utils._IncludeProbeFilter not in {type(f) for f in logging.getLogger().filters}


def test_missing_include_is_still_a_clear_error(tmp_path):
  path = tmp_path / "bad.gin"
  path.write_text('include "runs/no_such_run.gin"\n')
  try:
    with pytest.raises((ValueError, OSError), match="no_such_run.gin"):
      gin_utils.parse_gin([str(path)], [], finalize=False)
  finally:
    gin.clear_config()
