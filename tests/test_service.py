"""The HTTP service: results equal the Python API's, and bad requests get clear 4xx JSON."""

import contextlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from xtr_jax.index.retriever import Retriever
from xtr_jax.index.service import ServiceLimits, make_server
from xtr_jax.index.testing import build_tiny_index, make_tiny_setup


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("svc"))
  setup = make_tiny_setup(root, num_passages=40)
  out = build_tiny_index(setup, os.path.join(root, "idx"))
  retriever = Retriever.load(out)
  limits = ServiceLimits(max_queries=4, max_k=50, max_body_bytes=4096, max_concurrent=1,
                         queue_timeout=0.2, read_timeout=1.0)  # fmt: skip
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
  yield url, retriever, original, slow, search
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
  url, _, original, _, _ = served
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
  url, _, _, slow, _ = served
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


# ----------------------------------------------------------------------------- abuse


@contextlib.contextmanager
def another_server(served, **limits):
  """A second server over the fixture's (slow-hooked) retriever with other limits."""
  retriever = served[1]
  server = make_server(retriever, "127.0.0.1", 0, ServiceLimits(**limits))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}", server
  finally:
    served[3].set()
    server.shutdown()
    server.server_close()


def _port(url):
  return int(url.rsplit(":", 1)[1])


def _trickle(port, data, gap):
  """Sends ``data`` a byte every ``gap`` s until the server answers; (first line, seconds)."""
  t0 = time.time()
  with socket.create_connection(("127.0.0.1", port), timeout=gap) as s:
    for i in range(len(data)):
      try:
        s.sendall(data[i : i + 1])
        got = s.recv(4096)
      except TimeoutError:
        continue
      except OSError:
        return b"closed", time.time() - t0
      return got.split(b"\r\n")[0], time.time() - t0
  return b"never", time.time() - t0


def test_slowloris_headers_and_slow_body_get_408_while_others_are_served(served):
  url = served[0]
  results = {}

  def slow_headers():
    data = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 3
    results["headers"] = _trickle(_port(url), data, 0.1)

  def slow_body():
    body = json.dumps({"queries": ["river king"], "k": 3}).encode()
    head = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as s:
      s.sendall(head)
      t0 = time.time()
      for b in body:  # 1 byte / 0.1 s: the body needs ~3 s, the limit is 1 s
        try:
          s.sendall(bytes([b]))
          time.sleep(0.1)
        except OSError:
          break
      try:
        results["body"] = (s.recv(4096).split(b"\r\n")[0], time.time() - t0)
      except OSError:
        results["body"] = (b"closed", time.time() - t0)

  threads = [threading.Thread(target=f) for f in (slow_headers, slow_body)]
  for t in threads:
    t.start()
  served_meanwhile = [call(url, "/search", {"queries": ["river"], "k": 3})[0] for _ in range(3)]
  for t in threads:
    t.join(30)
  assert served_meanwhile == [200, 200, 200]
  for key in ("headers", "body"):
    line, seconds = results[key]
    assert line == b"HTTP/1.1 408 Request Timeout", (key, line)
    assert seconds < 5, (key, seconds)  # read_timeout=1 s bounds the whole request


def test_idle_connection_is_dropped_after_read_timeout(served):
  with socket.create_connection(("127.0.0.1", _port(served[0])), timeout=10) as s:
    t0 = time.time()
    reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and 0.5 < time.time() - t0 < 5
    assert s.recv(4096) == b""  # and closed


def test_truncated_body_is_a_400(served):
  with socket.create_connection(("127.0.0.1", _port(served[0])), timeout=10) as s:
    s.sendall(b'POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"queries"')
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := s.recv(4096):
      reply += chunk
  assert reply.startswith(b"HTTP/1.1 400") and b"body ended after 10 of 100 bytes" in reply


def test_full_queue_is_refused_at_once(served):
  """max_concurrent=1, max_queue=1: one runs, one waits, the third gets 503 without waiting."""
  slow = served[3]
  slow.clear()
  with another_server(served, max_concurrent=1, max_queue=1, queue_timeout=10) as (url, _):
    out = {}

    def go(name, q):
      out[name] = call(url, "/search", {"queries": [q], "k": 3})

    first = threading.Thread(target=go, args=("running", "SLOW river"))
    first.start()
    time.sleep(0.5)
    second = threading.Thread(target=go, args=("queued", "river"))
    second.start()
    time.sleep(0.5)
    t0 = time.time()
    status, body = call(url, "/search", {"queries": ["river"], "k": 3})
    waited = time.time() - t0
    slow.set()
    first.join(30)
    second.join(30)
  assert status == 503 and "queue full" in body["error"] and waited < 2
  assert out["running"][0] == 200 and out["queued"][0] == 200  # the queued one is served


def test_connections_beyond_the_limit_get_503_then_recover(served):
  with another_server(served, max_connections=3, read_timeout=5) as (url, server):
    idle = [socket.create_connection(("127.0.0.1", _port(url)), timeout=5) for _ in range(3)]
    deadline = time.time() + 5
    while server.open_connections < 3 and time.time() < deadline:
      time.sleep(0.05)
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as extra:
      assert extra.recv(4096).startswith(b"HTTP/1.1 503")
    for s in idle:
      s.close()
    deadline = time.time() + 5
    while server.open_connections > 0 and time.time() < deadline:
      time.sleep(0.05)
    assert call(url, "/search", {"queries": ["river"], "k": 3})[0] == 200
