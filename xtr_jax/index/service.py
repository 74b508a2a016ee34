"""``xtr-jax serve``: a small HTTP JSON search service over one index.

Endpoints: ``POST /search`` with ``{"queries": ["...", ...], "k": 10, "exact": false}`` ->
``{"results": [[{"id": pid, "score": s}, ...], ...]}``; ``GET /health``; ``GET /info`` (the
index manifest). Every bad request gets a 4xx JSON ``{"error": ...}``; at most
``max_concurrent`` searches run at once, at most ``max_queue`` more wait for a slot (any
beyond get 503 at once) and a waiting request that gets no slot within ``queue_timeout``
seconds gets 503; a search slower than ``request_timeout`` gets 504. A client must send a
whole request (line, headers, body) within ``read_timeout`` seconds, else it gets 408 and
is disconnected (slowloris, idle keep-alive); at most ``max_connections`` connections are
open at once, one more gets 503 and is closed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gin
from xtr_jax.gin_utils import parse_args_with_gin
from xtr_jax.index.retriever import Retriever


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ServiceLimits:
  max_body_bytes: int = 1 << 20
  max_queries: int = 64
  max_query_chars: int = 2000
  max_k: int = 1000
  max_concurrent: int = 2
  max_queue: int = 16  # requests waiting for a search slot; more get 503 at once
  queue_timeout: float = 5.0
  request_timeout: float = 60.0  # seconds for one search
  read_timeout: float = 10.0  # seconds to receive a whole request (line, headers, body)
  max_connections: int = 256  # open connections (each holds a thread)


class BadRequest(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def parse_search_request(body: bytes, limits: ServiceLimits) -> tuple[list[str], int, bool]:
  """Validated (queries, k, exact) of a /search body; raises ``BadRequest``."""
  try:
    req = json.loads(body.decode("utf-8"))
  except UnicodeDecodeError:
    raise BadRequest(400, "body is not UTF-8") from None
  except json.JSONDecodeError as e:
    raise BadRequest(
      400, f"body is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
    ) from None
  if not isinstance(req, dict):
    raise BadRequest(400, f"body must be a JSON object, got {type(req).__name__}")
  unknown = sorted(set(req) - {"queries", "k", "exact"})
  if unknown:
    raise BadRequest(400, f"unknown fields {unknown}; expected queries, k, exact")
  queries = req.get("queries")
  if not isinstance(queries, list) or not queries:
    raise BadRequest(400, "'queries' must be a non-empty list of strings")
  if len(queries) > limits.max_queries:
    raise BadRequest(413, f"{len(queries)} queries; at most {limits.max_queries} a request")
  for i, q in enumerate(queries):
    if not isinstance(q, str) or not q.strip():
      raise BadRequest(400, f"queries[{i}] must be a non-empty string")
    if len(q) > limits.max_query_chars:
      raise BadRequest(413, f"queries[{i}] has {len(q)} chars; at most {limits.max_query_chars}")
  k = req.get("k", 10)
  if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limits.max_k:
    raise BadRequest(400, f"'k' must be an integer in [1, {limits.max_k}], got {k!r}")
  exact = req.get("exact", False)
  if not isinstance(exact, bool):
    raise BadRequest(400, f"'exact' must be true or false, got {exact!r}")
  return queries, k, exact


def make_server(
  retriever: Retriever, host: str = "127.0.0.1", port: int = 8080, limits=None
) -> ThreadingHTTPServer:
  """A ready (not yet serving) server; ``port=0`` picks a free port."""
  limits = limits or ServiceLimits()
  slots = threading.BoundedSemaphore(limits.max_concurrent)
  pool = concurrent.futures.ThreadPoolExecutor(limits.max_concurrent, "search")
  search_lock = threading.Lock()  # the index and jitted encoder are used by one search at a time
  admitted = [0]  # searches running or waiting for a slot
  admitted_lock = threading.Lock()

  def admit() -> bool:
    with admitted_lock:
      if admitted[0] >= limits.max_concurrent + limits.max_queue:
        return False
      admitted[0] += 1
      return True

  def leave() -> None:
    with admitted_lock:
      admitted[0] -= 1

  def run_search(queries, k, exact):
    with search_lock:
      return retriever.search(queries, k, exact=exact)

  class Handler(BaseHTTPRequestHandler):
    # Per socket read. Longer than the watchdog's deadline so that on an idle or trickling
    # connection the watchdog always answers 408 first (its shutdown then ends the read);
    # with equal timeouts the handler could close the socket before the 408 went out.
    timeout = 2 * limits.read_timeout + 1
    protocol_version = "HTTP/1.1"
    _watchdog: threading.Timer | None = None

    def handle_one_request(self):
      # Trickled bytes each reset a per-read timeout; a deadline for the whole request does not.
      self._read_state = threading.Lock()
      # "" until whichever comes first sets it: "read" (the full request) or "expired" (408).
      self._read_done = ""
      self._watchdog = threading.Timer(limits.read_timeout, self._read_expired)
      self._watchdog.daemon = True
      self._watchdog.start()
      try:
        super().handle_one_request()
      finally:
        self.request_read()

    def request_read(self) -> bool:
      """Marks the request as received; False when the deadline already answered 408."""
      if self._watchdog is not None:
        self._watchdog.cancel()
        self._watchdog = None
      with self._read_state:
        expired = self._read_done == "expired"
        self._read_done = self._read_done or "read"
      return not expired

    def _read_expired(self) -> None:
      with self._read_state:
        if self._read_done:
          return  # the request arrived in time; its reply is the handler's
        self._read_done = "expired"
      body = json.dumps(
        {"error": f"request not received within {limits.read_timeout} s", "status": 408}
      ).encode()
      head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
      )
      try:
        self.connection.sendall(head.encode() + body)
      except OSError:
        pass
      try:
        self.connection.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass

    def log_message(self, fmt, *args):
      logging.info("%s %s", self.address_string(), fmt % args)

    def reply(self, status: int, obj) -> None:
      if not self.request_read():
        self.close_connection = True
        return  # the deadline already answered 408 and shut the socket
      data = json.dumps(obj).encode("utf-8")
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def error(self, status: int, message: str) -> None:
      self.reply(status, {"error": message, "status": status})

    def do_GET(self):
      if self.path == "/health":
        self.reply(200, {"status": "ok", "passages": retriever.index.num_passages})
      elif self.path == "/info":
        self.reply(200, retriever.index.manifest)
      else:
        self.error(404, f"no such path {self.path!r}; try POST /search, GET /health, /info")

    def do_POST(self):
      try:
        if self.path != "/search":
          raise BadRequest(404, f"no such path {self.path!r}; POST /search")
        length = self.headers.get("Content-Length")
        if length is None:
          raise BadRequest(411, "Content-Length header required")
        try:
          n = int(length)
        except ValueError:
          raise BadRequest(400, f"bad Content-Length {length!r}") from None
        if n < 0 or n > limits.max_body_bytes:
          self.close_connection = True
          raise BadRequest(413, f"body of {n} bytes; at most {limits.max_body_bytes}")
        body = self.rfile.read(n)
        if len(body) < n:
          self.close_connection = True
          raise BadRequest(400, f"body ended after {len(body)} of {n} bytes")
        if not self.request_read():
          self.close_connection = True
          return  # the deadline fired first and already answered 408
        queries, k, exact = parse_search_request(body, limits)
        if not admit():
          raise BadRequest(503, "server busy: search queue full; retry later")
        try:
          if not slots.acquire(timeout=limits.queue_timeout):
            raise BadRequest(503, "server busy: too many searches in flight; retry later")
          try:
            future = pool.submit(run_search, queries, k, exact)
            try:
              results = future.result(timeout=limits.request_timeout)
            except concurrent.futures.TimeoutError:
              raise BadRequest(504, f"search took over {limits.request_timeout} s") from None
          finally:
            slots.release()
        finally:
          leave()
        self.reply(
          200,
          {"results": [[{"id": p, "score": s} for p, s in r] for r in results], "k": k},
        )
      except BadRequest as e:
        self.error(e.status, str(e))
      except (TimeoutError, OSError):  # read timeout, or the watchdog shut the socket
        self.close_connection = True
      except Exception as e:  # never let one request take the server down
        logging.exception("search failed")
        self.error(500, f"internal error: {type(e).__name__}: {e}")

  server = _BoundedServer((host, port), Handler, limits.max_connections)
  server.daemon_threads = True
  return server


class _BoundedServer(ThreadingHTTPServer):
  """A thread per connection, at most ``max_connections``; one more gets 503 and is closed."""

  request_queue_size = 128  # listen backlog (socketserver's 5 drops SYNs under bursts)

  _BUSY_BODY = b'{"error": "server busy: too many open connections", "status": 503}'
  BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
  )

  def __init__(self, address, handler, max_connections: int):
    self.max_connections = max_connections
    self._open = 0
    self._open_lock = threading.Lock()
    super().__init__(address, handler)

  @property
  def open_connections(self) -> int:
    return self._open

  def process_request(self, request, client_address):
    with self._open_lock:
      full = self._open >= self.max_connections
      if not full:
        self._open += 1
    if full:
      try:
        request.settimeout(1.0)
        request.sendall(self.BUSY)
      except OSError:
        pass
      self.shutdown_request(request)
      return
    try:
      super().process_request(request, client_address)
    except Exception:
      self._closed()
      raise

  def process_request_thread(self, request, client_address):
    try:
      super().process_request_thread(request, client_address)
    finally:
      self._closed()

  def _closed(self) -> None:
    with self._open_lock:
      self._open -= 1


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="xtr-jax serve", description=__doc__)
  parser.add_argument("--index", required=True, help="Index directory.")
  parser.add_argument("--checkpoint", help="Model checkpoint (default: the manifest's).")
  parser.add_argument("--vocabulary", help="SentencePiece model (default: the manifest's).")
  parser.add_argument("--backend", choices=["scann", "brute_force"])
  parser.add_argument("--host", default="127.0.0.1")
  parser.add_argument("--port", type=int, default=8080)
  args = parse_args_with_gin(parser, argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  retriever = Retriever.load(args.index, args.checkpoint, args.vocabulary, backend=args.backend)
  retriever.search(["warm up"], 1)  # compile before the first request
  server = make_server(retriever, args.host, args.port)
  host, port = server.server_address[:2]
  print(f"serving {args.index} on http://{host}:{port} (POST /search, GET /health, /info)")
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0
