"""The search service: results equal the Python API's, evidence adds up and matches a
brute-force reference, concurrent requests share encoder calls, and abuse is bounded."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from xtr_jax.index import service
from xtr_jax.index.batching import Busy, SearchBatcher
from xtr_jax.index.corpus_text import CorpusTexts
from xtr_jax.index.retriever import Retriever, SearchParams
from xtr_jax.index.service import ServiceLimits, make_app, make_server, running
from xtr_jax.index.testing import build_tiny_index, make_tiny_setup

TOKEN_K = 12  # small k' so that some query tokens retrieve none of a passage's tokens
QUERIES = ["river king", "football team song", "mountain bird", "ocean island music film",
           "school book", "train airport village", "church temple", "horse desert"]  # fmt: skip
BIG = json.dumps({"queries": ["x" * 1500] * 3}).encode()


class Gate:
  """Wraps ``encode_queries``: counts calls; while ``hold`` is set, the next call signals
  ``entered`` and waits for ``release`` (a search held in the encoder, deterministically)."""

  def __init__(self, retriever):
    self.encode = retriever.encode_queries
    self.calls = 0
    self.hold = threading.Event()
    self.entered = threading.Event()
    self.release = threading.Event()
    retriever.encode_queries = self

  def __call__(self, queries):
    self.calls += 1
    if self.hold.is_set():
      self.hold.clear()
      self.entered.set()
      assert self.release.wait(60), "test never released the encoder"
    return self.encode(queries)

  def block_next(self):
    self.entered.clear()
    self.release.clear()
    self.hold.set()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("svc"))
  tiny = make_tiny_setup(root, num_passages=40)
  index = build_tiny_index(tiny, os.path.join(root, "idx"))
  return tiny, index


@pytest.fixture(scope="module")
def retriever(setup):
  r = Retriever.load(setup[1], params=SearchParams(token_top_k=TOKEN_K))
  r.gate = Gate(r)
  return r


@contextlib.contextmanager
def serve(retriever, **limits):
  limits = ServiceLimits(**{"max_body_bytes": 4096, "max_queries": 4, "max_k": 50,
                            "read_timeout": 1.0, **limits})  # fmt: skip
  app = make_app(retriever, limits, CorpusTexts.for_index(retriever.index))
  server, sock = make_server(app, "127.0.0.1", 0, limits)
  app.state.server = server
  with running(server, sock) as url:
    yield url, app


@pytest.fixture(scope="module")
def url(retriever):
  with serve(retriever) as (u, _):
    yield u


def call(url, path, body=None, raw=None, method=None, timeout=30):
  data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
  req = urllib.request.Request(url + path, data=data, method=method)
  req.add_header("Content-Type", "application/json")
  try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
      return r.status, r.read()
  except urllib.error.HTTPError as e:
    return e.code, e.read()


def search(url, **body):
  status, data = call(url, "/search", body)
  assert status == 200, data
  return json.loads(data)["results"]


def port_of(url):
  return int(url.rsplit(":", 1)[1])


def read_corpus(path):
  with open(path, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:]
  return {pid: (title, text) for pid, text, title in rows}


# ----------------------------------------------------------------------------- API


def test_search_matches_python_api_with_titles_and_text(url, retriever, setup):
  corpus = read_corpus(setup[0].corpus)
  for exact in (False, True):
    got = search(url, queries=QUERIES[:2], k=5, exact=exact)
    expect = retriever.search(QUERIES[:2], 5, exact=exact)
    assert [[(h["id"], h["score"]) for h in r] for r in got] == expect
    for hits in got:
      assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
      for h in hits:
        assert (h["title"], h["text"]) == corpus[h["id"]] and h["evidence"] is None
  one = search(url, query=QUERIES[0], k=3)
  assert [[(h["id"], h["score"]) for h in r] for r in one] == retriever.search(QUERIES[:1], 3)


def test_methods_paths_and_openapi(url):
  status, body = call(url, "/search", method="GET")
  assert status == 405 and json.loads(body) == {"detail": "Method Not Allowed"}
  assert call(url, "/nope")[0] == 404
  assert json.loads(call(url, "/health")[1]) == {"status": "ok", "passages": 40}
  info = json.loads(call(url, "/info")[1])
  assert info["num_passages"] == 40 and info["format"] == "xtr_jax.token_index"
  spec = json.loads(call(url, "/openapi.json")[1])
  request = spec["components"]["schemas"]["SearchRequest"]["properties"]
  assert set(request) == {"query", "queries", "k", "exact", "explain"}
  assert "Evidence" in spec["components"]["schemas"] and "post" in spec["paths"]["/search"]
  status, page = call(url, "/docs")
  assert status == 200 and b"openapi.json" in page
  status, page = call(url, "/")
  assert status == 200 and b'id="search-form"' in page


@pytest.mark.parametrize(
  "path, script", [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_api_pages_load_only_this_servers_assets(url, path, script):
  """/docs and /redoc work offline: every script, stylesheet and icon comes from this server
  (the fastapi-offline package's files), none from a CDN."""
  with urllib.request.urlopen(url + path, timeout=30) as r:
    status, page, policy = r.status, r.read(), r.headers["Content-Security-Policy"]
  assert status == 200 and b"/openapi.json" in page, page[:300]
  assert policy == "img-src 'self' data:"  # ReDoc's CDN logo is never fetched
  text = page.decode()
  assert "cdn" not in text.lower() and "http" not in text.lower(), text
  if path == "/docs":
    assert '"validatorUrl": null' in text  # no badge fetched from validator.swagger.io
  assets = re.findall(r"<(?:script|link)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", text)
  assert f"/static/docs/{script}" in assets, assets
  assert all(a.startswith("/static/docs/") for a in assets), assets
  for asset in assets:
    status, body = call(url, asset)
    assert status == 200, asset
    if asset.endswith(".js"):
      assert len(body) > 100_000 and b"<html" not in body[:1000].lower(), asset
    elif asset.endswith(".css"):
      assert len(body) > 10_000 and b"{" in body, asset
    else:
      assert body.startswith(b"\x89PNG"), asset


def test_api_pages_without_their_package_answer_503_naming_it(retriever, monkeypatch):
  monkeypatch.setattr(service, "docs_assets", lambda: None)
  with serve(retriever) as (url, _):
    for path in ("/docs", "/redoc"):
      status, page = call(url, path)
      assert status == 503 and b"fastapi-offline" in page and b"pip install" in page, page
      assert b"http" not in page and b"<script" not in page
    assert call(url, "/static/docs/swagger-ui-bundle.js")[0] == 404
    assert call(url, "/openapi.json")[0] == 200 and call(url, "/health")[0] == 200


@pytest.mark.parametrize(
  "raw, status, detail",
  [
    (b"{not json", 400, "body is not JSON: Expecting property name enclosed in double quotes at char 1"),
    (b"\xff\xfe", 400, "body is not JSON: Expecting value at char 0"),
    (b"[1, 2]", 400, "body: Input should be a valid dictionary or object to extract fields from"),
    (b'{"queries": "one string"}', 400, "queries: Input should be a valid list"),
    (b'{"queries": []}', 400, "'queries' must be a non-empty list of strings"),
    (b'{"queries": [1]}', 400, "queries.0: Input should be a valid string"),
    (b'{"queries": ["a", " "]}', 400, "queries[1] must be a non-empty string"),
    (b'{"query": "a", "queries": ["b"]}', 400, "give exactly one of 'query' (a string) or 'queries' (a list)"),
    (b"{}", 400, "give exactly one of 'query' (a string) or 'queries' (a list)"),
    (b'{"queries": ["a"], "k": 0}', 400, "'k' must be an integer in [1, 50], got 0"),
    (b'{"queries": ["a"], "k": 51}', 400, "'k' must be an integer in [1, 50], got 51"),
    (b'{"query": "a", "k": 11, "explain": true}', 400, "'k' must be an integer in [1, 10] with explain, got 11"),
    (b'{"queries": ["a"], "k": "5"}', 400, "k: Input should be a valid integer"),
    (b'{"queries": ["a"], "k": true}', 400, "k: Input should be a valid integer"),
    (b'{"queries": ["a"], "k": 1e9}', 400, "k: Input should be a valid integer"),
    (b'{"queries": ["a"], "exact": "yes"}', 400, "exact: Input should be a valid boolean"),
    (b'{"queries": ["a"], "extra": 1}', 400, "extra: Extra inputs are not permitted"),
    (b'{"queries": ["a", "b", "c", "d", "e"]}', 413, "5 queries; at most 4 a request"),
    (json.dumps({"query": "x" * 2500}).encode(), 413, "query has 2500 chars; at most 2000"),
    (BIG, 413, f"body of {len(BIG)} bytes; at most 4096"),
  ],
)  # fmt: skip
def test_bad_requests_get_one_line_4xx(retriever, raw, status, detail):
  with serve(retriever, max_explain_k=10) as (url, _):
    got, body = call(url, "/search", raw=raw, method="POST")
    assert (got, json.loads(body)) == (status, {"detail": detail})
    assert call(url, "/health")[0] == 200


def test_oversized_body_is_refused_before_it_is_read(url):
  """A 50 MiB Content-Length with no body sent: 413 at once, not a read of 50 MiB."""
  with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as s:
    s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 52428800\r\n\r\n")  # fmt: skip
    assert s.recv(4096).startswith(b"HTTP/1.1 413 ")


# ----------------------------------------------------------------------------- evidence


def brute_force_evidence(retriever, query, row):
  """Independent XTR evidence: every token's similarity to the query tokens, top-k' by sort."""
  vecs, mask = retriever.gate.encode([query])
  q = vecs[0][mask[0]]
  v = np.asarray(retriever.index.vectors, np.float32)
  t2p = np.asarray(retriever.index.token_to_passage)
  mine = np.nonzero(t2p == row)[0]
  out = []
  for sims in q @ v.T:
    top = np.lexsort((np.arange(sims.size), -sims.astype(np.float64)))[:TOKEN_K]
    hit = np.intersect1d(top, mine)
    if hit.size:
      best = hit[np.argmax(sims[hit])]
      out.append(("retrieved", float(sims[best]), int(best - mine[0])))
    else:
      out.append(("imputed", float(sims[top[-1]]), None))
  return out


def passage_pieces(setup, pid):
  import sentencepiece as spm

  title, text = read_corpus(setup[0].corpus)[pid]
  sp = spm.SentencePieceProcessor(model_file=setup[0].vocabulary)
  return [sp.id_to_piece(i) for i in sp.encode(f"{title} {text}")] + ["</s>"]  # <unk> as seen


def test_explain_adds_up_and_matches_brute_force(url, retriever, setup):
  statuses = set()
  for query in QUERIES[:4]:
    (hits,) = search(url, query=query, k=6, explain=True)
    for h in hits:
      ev = h["evidence"]
      shares = [t["contribution"] for t in ev["tokens"]]
      assert sum(shares) == pytest.approx(h["score"], abs=1e-5) and ev["mode"] == "xtr"
      assert ev["score"] == pytest.approx(h["score"], abs=1e-5)
      assert ev["query_tokens"] == len(ev["tokens"])  # every token retrieved something
      row = retriever.index.passage_ids.index(h["id"])
      ref = brute_force_evidence(retriever, query, row)
      pieces = passage_pieces(setup, h["id"])
      assert ev["passage_pieces"] == pieces
      for t, (status, sim, pos) in zip(ev["tokens"], ref, strict=True):
        assert (t["status"], t["passage_position"]) == (status, pos)
        assert t["similarity"] == pytest.approx(sim, abs=1e-5)
        assert t["contribution"] == pytest.approx(sim / len(ref), abs=1e-6)
        if pos is not None:
          assert t["passage_piece"] == pieces[pos] and t["source"] == "passage"
        statuses.add(status)
      assert np.mean([s for _, s, _ in ref]) == pytest.approx(h["score"], abs=1e-5)
  assert statuses == {"retrieved", "imputed"}  # both kinds were exercised


def test_explain_exact_is_maxsim_over_all_passage_tokens(url, retriever):
  (hits,) = search(url, query=QUERIES[1], k=4, explain=True, exact=True)
  vecs, mask = retriever.gate.encode([QUERIES[1]])
  q = vecs[0][mask[0]]
  v = np.asarray(retriever.index.vectors, np.float32)
  t2p = np.asarray(retriever.index.token_to_passage)
  for h in hits:
    mine = np.nonzero(t2p == retriever.index.passage_ids.index(h["id"]))[0]
    sims = q @ v[mine].T
    ev = h["evidence"]
    assert ev["mode"] == "exact" and sum(t["contribution"] for t in ev["tokens"]) == pytest.approx(
      h["score"], abs=1e-5
    )
    assert [t["passage_position"] for t in ev["tokens"]] == sims.argmax(axis=1).tolist()
    assert [t["status"] for t in ev["tokens"]] == ["maxsim"] * len(q)


# ----------------------------------------------------------------------------- batching


def test_concurrent_requests_share_encoder_calls_and_equal_one_at_a_time(retriever):
  ks = [3 + i % 3 for i in range(len(QUERIES))]  # one batch, several k: each a top-max-k prefix
  alone = [retriever.search([q], k) for q, k in zip(QUERIES, ks)]
  gate = retriever.gate
  with serve(retriever, max_queries=8) as (url, app):
    out = {}

    def go(i):
      out[i] = search(url, queries=[QUERIES[i]], k=ks[i])

    gate.block_next()
    threads = [threading.Thread(target=go, args=(0,))]
    threads[0].start()
    assert gate.entered.wait(30)  # request 0 holds the encoder
    calls = gate.calls
    threads += [threading.Thread(target=go, args=(i,)) for i in range(1, len(QUERIES))]
    for t in threads[1:]:
      t.start()
    assert app.state.batcher.wait_until_queued(len(QUERIES) - 1, 30)
    gate.release.set()
    for t in threads:
      t.join(60)
  assert gate.calls - calls == 1  # the 7 waiting requests were encoded in one call
  for i, expect in enumerate(alone):
    (hits,) = out[i]
    assert [h["id"] for h in hits] == [p for p, _ in expect[0]]
    # The encodings are bit-identical (same padded shape); the token search of 7 queries'
    # tokens in one matmul rounds a few scores differently in the last float32 bit.
    assert [h["score"] for h in hits] == pytest.approx([s for _, s in expect[0]], abs=1e-6)


def test_batcher_splits_at_max_batch_skips_cancelled_jobs_and_passes_errors():
  held, release, calls = threading.Event(), threading.Event(), []

  def run(jobs):
    calls.append(list(jobs))
    if jobs == ["hold"]:
      held.set()
      assert release.wait(30)
    if "boom" in jobs:
      raise RuntimeError("boom")
    return [j.upper() for j in jobs]

  batcher = SearchBatcher(run, max_batch=3, max_queue=6, size=lambda job: 2 if job == "cc" else 1)
  first = batcher.submit("hold")
  assert held.wait(30)
  futures = [batcher.submit(j) for j in ("a", "b", "cc", "d", "e")]
  assert futures[-1].cancel()  # cancelled while queued: never run
  assert batcher.wait_until_queued(5, 30)
  release.set()
  assert first.result(30) == "HOLD"
  assert [f.result(30) for f in futures[:4]] == ["A", "B", "CC", "D"]
  assert calls == [["hold"], ["a", "b"], ["cc", "d"]]  # 3 query slots a call; "cc" takes 2
  with pytest.raises(RuntimeError, match="boom"):
    batcher.submit("boom").result(30)
  assert batcher.submit("f").result(30) == "F"  # the worker lives on
  batcher.close()
  with pytest.raises(Busy, match="shutting down"):
    batcher.submit("g")


def test_full_queue_is_refused_at_once_and_waiters_time_out(retriever):
  gate = retriever.gate
  with serve(retriever, max_queue=1, queue_timeout=30) as (url, app):
    out = {}
    gate.block_next()
    first = threading.Thread(target=lambda: out.update(a=call(url, "/search", {"query": "river"})))
    first.start()
    assert gate.entered.wait(30)
    second = threading.Thread(target=lambda: out.update(b=call(url, "/search", {"query": "king"})))
    second.start()
    assert app.state.batcher.wait_until_queued(1, 30)
    status, body = call(url, "/search", {"query": "bird"})
    gate.release.set()
    first.join(60)
    second.join(60)
  assert (status, json.loads(body)) == (
    503,
    {"detail": "server busy: 1 searches queued; retry later"},
  )
  assert out["a"][0] == 200 and out["b"][0] == 200
  with serve(retriever, queue_timeout=0.2) as (url, app):
    gate.block_next()
    first = threading.Thread(target=lambda: out.update(a=call(url, "/search", {"query": "river"})))
    first.start()
    assert gate.entered.wait(30)
    status, body = call(url, "/search", {"query": "king"})  # waits 0.2 s behind the held one
    gate.release.set()
    first.join(60)
  assert (status, json.loads(body)) == (
    503,
    {"detail": "server busy: waited 0.2 s for the encoder"},
  )
  assert out["a"][0] == 200


def test_slow_search_gets_504(retriever):
  gate = retriever.gate
  with serve(retriever, request_timeout=0.3) as (url, _):
    gate.block_next()
    status, body = call(url, "/search", {"query": "river"})
    gate.release.set()
    assert (status, json.loads(body)) == (504, {"detail": "search took over 0.3 s"})
    assert call(url, "/search", {"query": "river"})[0] == 200


# ----------------------------------------------------------------------------- abuse


def trickle(port, data: bytes, gap: float):
  """Sends ``data`` a byte per ``gap`` s until the server answers: (first line, bytes sent)."""
  stop = threading.Event()
  with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
    s.setblocking(False)
    for i in range(len(data)):
      try:
        got = s.recv(4096)
        return (got.split(b"\r\n")[0] if got else b"closed"), i
      except BlockingIOError:
        pass
      try:
        s.sendall(data[i : i + 1])
      except OSError:
        return b"closed", i
      stop.wait(gap)
    s.setblocking(True)
    got = s.recv(4096)
    return got.split(b"\r\n")[0], len(data)


def test_slowloris_and_slow_body_get_408_midway_while_others_are_served(url):
  head = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 2
  body = json.dumps({"query": "river king", "k": 3}).encode()
  slow_body = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
    len(body),
    body,
  )
  results = {}
  threads = [
    threading.Thread(target=lambda: results.update(head=trickle(port_of(url), head, 0.05))),
    threading.Thread(target=lambda: results.update(body=trickle(port_of(url), slow_body, 0.05))),
  ]
  for t in threads:
    t.start()
  served = [call(url, "/search", {"query": "river"})[0] for _ in range(3)]
  for t in threads:
    t.join(60)
  assert served == [200, 200, 200]
  for key, data in (("head", head), ("body", slow_body)):
    line, sent = results[key]
    # read_timeout (1 s) bounds the whole request: the 408 came before the client was done.
    assert line == b"HTTP/1.1 408 Request Timeout" and sent < len(data), (key, line, sent)


def test_idle_connections_are_closed(url):
  with socket.create_connection(("127.0.0.1", port_of(url)), timeout=30) as s:
    assert s.recv(4096).startswith(b"HTTP/1.1 408 ")  # never sent a byte
    assert s.recv(4096) == b""
  body = json.dumps({"query": "river"}).encode()
  with socket.create_connection(("127.0.0.1", port_of(url)), timeout=30) as s:
    s.sendall(
      b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    reply = b""
    while not reply.endswith(b']],"k":10}'):
      reply += s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert s.recv(4096) == b""  # the idle keep-alive connection is closed


def test_connections_beyond_the_limit_get_503_then_recover(retriever):
  with serve(retriever, max_connections=3, read_timeout=30) as (url, app):
    idle = [socket.create_connection(("127.0.0.1", port_of(url)), timeout=30) for _ in range(2)]
    assert call(url, "/health")[0] == 200  # the third connection is still served
    idle.append(socket.create_connection(("127.0.0.1", port_of(url)), timeout=30))
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=30) as extra:
      assert extra.recv(4096).startswith(b"HTTP/1.1 503 ")  # the fourth is refused at once
    for s in idle:
      s.close()
    open_now = app.state.server.server_state.connections
    gone, wait = threading.Event(), 0
    while open_now and wait < 3000:  # until the server has seen the closes (not a timing test)
      gone.wait(0.01)
      wait += 1
    assert not open_now
    assert call(url, "/health")[0] == 200


def test_truncated_body_gets_no_reply_and_the_server_lives_on(url):
  with socket.create_connection(("127.0.0.1", port_of(url)), timeout=30) as s:
    s.sendall(b'POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"queries"')
    s.shutdown(socket.SHUT_WR)
    assert s.recv(4096) == b""  # closed: the request can never be completed
  assert call(url, "/health")[0] == 200


# ----------------------------------------------------------------------------- the command


def test_serve_command_answers_then_stops_on_sigint(setup):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "xtr_jax.cli", "serve", "--index", setup[1], "--port", "0"]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
  try:
    line = proc.stdout.readline()
    assert line.startswith(f"serving {setup[1]} on http://127.0.0.1:"), line + proc.stderr.read()
    url = line.split(" on ")[1].split("/ ")[0]
    (hits,) = search(url, query="river king", k=3, explain=True)
    assert len(hits) == 3 and hits[0]["title"] and hits[0]["evidence"]["tokens"]
    assert b"xtr-jax search" in call(url, "/")[1]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
  finally:
    proc.kill()
    proc.wait()


def test_serve_help_shows_every_default():
  out = subprocess.run(
    [sys.executable, "-m", "xtr_jax.cli", "serve", "--help"], capture_output=True, text=True
  )
  assert out.returncode == 0
  text = " ".join(out.stdout.split())
  assert "Address to listen on. (default: 127.0.0.1)" in text
  assert "Port to listen on (0: a free one). (default: 8080)" in text
