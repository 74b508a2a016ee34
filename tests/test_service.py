"""The HTTP service: results equal the Python API's, and bad requests get clear 4xx JSON."""

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from xtr_jax.index.cli import build_from_corpus
from xtr_jax.index.encode import EncodeParams, Tokenizer
from xtr_jax.index.retriever import Retriever, load_model
from xtr_jax.index.service import ServiceLimits, make_server
from xtr_jax.index.testing import make_tiny_setup


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("svc"))
  setup = make_tiny_setup(root, num_passages=40)
  params, config, proj_dim, fp, _ = load_model(setup.checkpoint)
  out = os.path.join(root, "idx")
  build_from_corpus(
    setup.corpus, out, params, config, proj_dim=proj_dim, model_fingerprint=fp,
    tokenizer=Tokenizer(setup.vocabulary), checkpoint=setup.checkpoint,
    encode_params=EncodeParams(buckets=(64,)), backend="brute_force", progress=False,
  )  # fmt: skip
  retriever = Retriever.load(out)
  limits = ServiceLimits(max_queries=4, max_k=50, max_body_bytes=4096, max_concurrent=1,
                         queue_timeout=0.2)  # fmt: skip
  slow = threading.Event()
  original = retriever.search

  def search(queries, k, exact=False):
    if "SLOW" in queries[0]:
      slow.wait(5)
    return original(queries, k, exact=exact)

  retriever.search = search
  server = make_server(retriever, "127.0.0.1", 0, limits)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  url = f"http://127.0.0.1:{server.server_address[1]}"
  yield url, retriever, original, slow
  slow.set()
  server.shutdown()
  server.server_close()


def call(url, path, body=None, raw=None, method=None):
  data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
  req = urllib.request.Request(url + path, data=data, method=method)
  req.add_header("Content-Type", "application/json")
  try:
    with urllib.request.urlopen(req, timeout=30) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_search_matches_python_api(served):
  url, _, original, _ = served
  queries = ["river king", "football team song"]
  status, out = call(url, "/search", {"queries": queries, "k": 5})
  assert status == 200
  expect = original(queries, 5)
  got = [[(r["id"], r["score"]) for r in res] for res in out["results"]]
  assert [[p for p, _ in r] for r in got] == [[p for p, _ in r] for r in expect]
  for g, e in zip(got, expect):
    assert [s for _, s in g] == pytest.approx([s for _, s in e], rel=1e-6)


def test_health_and_info(served):
  url = served[0]
  assert call(url, "/health") == (200, {"status": "ok", "passages": 40})
  status, info = call(url, "/info")
  assert status == 200 and info["num_passages"] == 40 and info["format"] == "xtr_jax.token_index"
  assert call(url, "/nope")[0] == 404


@pytest.mark.parametrize(
  "raw, status, needle",
  [
    (b"{not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "UTF-8"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"queries": "one string"}', 400, "non-empty list"),
    (b'{"queries": []}', 400, "non-empty list"),
    (b'{"queries": [1]}', 400, "queries[0]"),
    (b'{"queries": ["a", ""]}', 400, "queries[1]"),
    (b'{"queries": ["a"], "k": 0}', 400, "'k'"),
    (b'{"queries": ["a"], "k": 51}', 400, "'k'"),
    (b'{"queries": ["a"], "k": "5"}', 400, "'k'"),
    (b'{"queries": ["a"], "k": true}', 400, "'k'"),
    (b'{"queries": ["a"], "exact": "yes"}', 400, "'exact'"),
    (b'{"queries": ["a"], "extra": 1}', 400, "unknown fields"),
    (b'{"queries": ["a", "b", "c", "d", "e"]}', 413, "at most 4"),
    (json.dumps({"queries": ["x" * 1500] * 3}).encode(), 413, "4096"),
    (json.dumps({"queries": ["x" * 2500]}).encode(), 413, "chars"),
  ],
)
def test_bad_requests_get_clear_4xx(served, raw, status, needle):
  url = served[0]
  got_status, body = call(url, "/search", raw=raw, method="POST")
  assert got_status == status and needle in body["error"]
  assert call(url, "/health")[0] == 200  # still alive


def test_missing_content_length_and_truncated_body(served):
  host, port = served[0][len("http://") :].split(":")
  with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 411 " in s.recv(4096).split(b"\r\n")[0] + b" "
  with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert b"400" in s.recv(4096).split(b"\r\n")[0]
  assert call(served[0], "/health")[0] == 200


def test_busy_server_answers_503(served):
  url, _, _, slow = served
  slow.clear()
  results = {}

  def first():
    results["slow"] = call(url, "/search", {"queries": ["SLOW river"], "k": 3})

  t = threading.Thread(target=first)
  t.start()
  time.sleep(0.5)  # the slow search holds the only slot
  status, body = call(url, "/search", {"queries": ["river"], "k": 3})
  slow.set()
  t.join(30)
  assert status == 503 and "busy" in body["error"]
  assert results["slow"][0] == 200
