"""``xtr-jax serve``: the search service (FastAPI on uvicorn) and its search page.

Endpoints: ``GET /`` the search page (``static/search.html``: a query box, ranked passages
and XTR's evidence for each); ``POST /search`` (``SearchRequest`` -> ``SearchResponse``:
passage id, score, title and text, and with ``explain`` the evidence of every score,
``index/explain.py``); ``GET /health``; ``GET /info`` (the index manifest); the OpenAPI
schema at ``/openapi.json`` and its pages at ``/docs`` (Swagger UI) and ``/redoc``. Those
pages load their JavaScript and CSS from this server (``/static/docs/``, the files of the
``fastapi-offline`` package), not from a CDN, so they work without internet; without that
package they answer 503 naming it. Errors are JSON
``{"detail": "..."}``: 400 for a malformed or invalid body, 405 for a wrong method, 413 for
a body over ``max_body_bytes`` or too many / too long queries.

Load: searches are micro-batched (``batching.SearchBatcher``): the requests that arrive
while a batch is encoding are encoded together in the next call, so the encoder's cost is
shared. At most ``max_queue`` requests wait for the encoder, one more gets 503 at once; a
request still waiting after ``queue_timeout`` s gets 503, one not answered within
``request_timeout`` s gets 504. Connections: at most ``max_connections`` open (uvicorn's
``limit_concurrency``; one more is answered 503 and closed), and every request (line,
headers, body) must arrive within ``read_timeout`` s of the connection opening or the
previous response, else 408 and the connection is closed (slowloris, slow bodies, idle
connections); an idle keep-alive connection is closed after ``read_timeout`` s. uvicorn
bounds an unfinished request head by ``max_header_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import pathlib
import socket
import threading
import time
from typing import Literal

import h11
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from uvicorn.protocols.http.h11_impl import H11Protocol

import gin
import xtr_jax.checkpoints.orbax_io  # noqa: F401  (its gin configurables, before flags lock gin)
from xtr_jax.cli import ArgumentParser, UsageError, add_skip_vector_check
from xtr_jax.gin_utils import bound_config_fields, parse_args_with_gin
from xtr_jax.index.batching import Busy, SearchBatcher
from xtr_jax.index.corpus_text import CorpusTexts
from xtr_jax.index.explain import Explainer
from xtr_jax.index.retriever import Retriever

PAGE = pathlib.Path(__file__).parent / "static" / "search.html"

# The API pages' assets, served by this app from the fastapi-offline package (Swagger UI 5,
# which renders FastAPI's OpenAPI 3.1 schema, and ReDoc): no CDN, so /docs works offline.
DOCS_PACKAGE = "fastapi-offline"
DOCS_STATIC = "/static/docs"
DOCS_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def docs_assets() -> pathlib.Path | None:
  """The folder holding ``DOCS_FILES`` (``fastapi_offline/static``), or None without it."""
  try:
    import fastapi_offline  # noqa: PLC0415
  except ImportError:
    return None
  folder = pathlib.Path(fastapi_offline.__file__).parent / "static"
  return folder if all((folder / name).is_file() for name in DOCS_FILES) else None


def _local_images_only(page: HTMLResponse) -> HTMLResponse:
  """Images from this server (or inline) only: ReDoc's sidebar shows a logo from its CDN
  (hidden by ReDoc when it fails to load), which would otherwise be fetched."""
  page.headers["Content-Security-Policy"] = "img-src 'self' data:"
  return page


def _docs_missing(page: str) -> HTMLResponse:
  html = (
    f"<!doctype html><title>{page}: unavailable</title><h1>API docs unavailable</h1>"
    f"<p>The {page} page serves its JavaScript and CSS from the <code>{DOCS_PACKAGE}</code> "
    f"package, which is not installed: <code>pip install {DOCS_PACKAGE}</code> (or "
    "<code>pip install -e '.[service]'</code>). The OpenAPI schema itself is at "
    '<a href="openapi.json">/openapi.json</a>.</p>'
  )
  return HTMLResponse(html, status_code=503)


def _add_docs_pages(app: FastAPI) -> None:
  """``/docs`` (Swagger UI) and ``/redoc`` with their assets served by ``app`` itself."""
  assets = docs_assets()
  if assets is not None:
    app.mount(DOCS_STATIC, StaticFiles(directory=assets), name="docs-assets")

  def page(request: Request, name: str, render) -> HTMLResponse:
    if assets is None:
      return _docs_missing(name)
    base = request.scope.get("root_path", "")  # behind a proxy that strips a path prefix
    return _local_images_only(render(base + app.openapi_url, base + DOCS_STATIC))

  @app.get("/docs", include_in_schema=False)
  async def swagger_page(request: Request) -> HTMLResponse:
    return page(request, "/docs", lambda schema, static: get_swagger_ui_html(
      openapi_url=schema,
      title=f"{app.title} - API",
      swagger_js_url=f"{static}/swagger-ui-bundle.js",
      swagger_css_url=f"{static}/swagger-ui.css",
      swagger_favicon_url=f"{static}/favicon.png",
      # No badge from validator.swagger.io: it sends the schema's URL out, and offline it is
      # a broken image.
      swagger_ui_parameters={"validatorUrl": None},
    ))  # fmt: skip

  @app.get("/redoc", include_in_schema=False)
  async def redoc_page(request: Request) -> HTMLResponse:
    return page(request, "/redoc", lambda schema, static: get_redoc_html(
      openapi_url=schema,
      title=f"{app.title} - API",
      redoc_js_url=f"{static}/redoc.standalone.js",
      redoc_favicon_url=f"{static}/favicon.png",
      with_google_fonts=False,
    ))  # fmt: skip


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ServiceLimits:
  max_body_bytes: int = 1 << 20
  max_header_bytes: int = 16 << 10  # an unfinished request line + headers (uvicorn's h11 cap)
  max_queries: int = 64
  max_query_chars: int = 2000
  max_k: int = 1000
  max_explain_k: int = 100  # explain=true costs a tokenisation per passage
  max_batch_queries: int = 0  # queries encoded in one call; 0: the retriever's batch_size
  max_queue: int = 16  # requests waiting for the encoder; one more gets 503 at once
  queue_timeout: float = 5.0  # seconds a request may wait for the encoder, else 503
  request_timeout: float = 60.0  # seconds for a whole search, else 504
  read_timeout: float = 10.0  # seconds to receive a whole request (line, headers, body)
  max_connections: int = 256  # open connections; one more gets 503 and is closed


# ----------------------------------------------------------------------------- API models


class SearchRequest(BaseModel):
  """One query (``query``) or several (``queries``); exactly one of the two."""

  model_config = ConfigDict(extra="forbid")
  query: StrictStr | None = Field(None, description="One query, in any language.")
  queries: list[StrictStr] | None = Field(None, description="Several queries, searched together.")
  k: StrictInt = Field(10, description="Passages per query.")
  exact: StrictBool = Field(False, description="Re-score the candidates by exact MaxSim.")
  explain: StrictBool = Field(False, description="Add XTR's evidence to every passage.")


class TokenEvidence(BaseModel):
  query_position: int
  query_piece: str = Field(description="The query token's vocabulary piece (▁ = word start).")
  status: Literal["retrieved", "imputed", "maxsim", "unused"] = Field(
    description="retrieved: this query token retrieved a token of the passage; imputed: it "
    "retrieved none, so its lowest retrieved score stands in; maxsim: exact mode, the best "
    "passage token; unused: it retrieved nothing at all and is not counted."
  )
  similarity: float = Field(description="Query token . passage token (or the imputed value).")
  contribution: float = Field(description="similarity / query_tokens: its share of the score.")
  passage_position: int | None = Field(description="Position of the passage token in the text.")
  passage_piece: str | None = Field(description="The passage token's piece.")
  source: Literal["passage", "xqg"] | None = Field(
    description="passage: a token of the text; xqg: an xQG question vector of the passage."
  )


class Evidence(BaseModel):
  mode: Literal["xtr", "exact"]
  query_tokens: int = Field(description="Query tokens the score averages over.")
  score: float = Field(description="Sum of the contributions: the passage's score.")
  tokens: list[TokenEvidence]
  passage_pieces: list[str] | None = Field(description="The passage's tokens, in order.")


class Hit(BaseModel):
  rank: int
  id: str
  score: float
  title: str | None = None
  text: str | None = None
  evidence: Evidence | None = None


class SearchResponse(BaseModel):
  results: list[list[Hit]] = Field(description="One ranked list per query, best first.")
  k: int


@dataclasses.dataclass(frozen=True)
class SearchJob:
  queries: list[str]
  k: int
  exact: bool
  explain: bool


# ----------------------------------------------------------------------------- searching


def search_batch(
  retriever: Retriever, explainer: Explainer, texts: CorpusTexts | None, jobs: list[SearchJob]
) -> list[list[list[dict]]]:
  """Per job, per query, its hits as dicts (``Hit``): all jobs' queries in one encoder call."""
  queries = [q for job in jobs for q in job.queries]
  owner = [j for j, job in enumerate(jobs) for _ in job.queries]
  vectors, mask = retriever.encode_queries(queries)
  ranked: list = [None] * len(queries)
  hits: list = [None] * len(queries)
  for exact in (False, True):
    idx = [i for i in range(len(queries)) if jobs[owner[i]].exact == exact]
    if idx:
      k = max(jobs[owner[i]].k for i in idx)  # each query's top k is a prefix of the top max-k
      group_hits: list = []
      found = retriever.search_vectors(vectors[idx], mask[idx], k, exact=exact, hits=group_hits)
      for i, r, h in zip(idx, found, group_hits):
        ranked[i], hits[i] = r, h
  out: list[list[list[dict]]] = [[] for _ in jobs]
  for i, (rows, scores) in enumerate(ranked):
    job = jobs[owner[i]]
    rows, scores = rows[: job.k].tolist(), scores[: job.k].tolist()
    evidence = (
      explainer.explain(queries[i], vectors[i], mask[i], hits[i], rows, job.exact)
      if job.explain
      else [None] * len(rows)
    )
    out[owner[i]].append([
      _hit(retriever, texts, rank, row, score, ev)
      for rank, (row, score, ev) in enumerate(zip(rows, scores, evidence), 1)
    ])  # fmt: skip
  return out


def _hit(retriever, texts, rank: int, row: int, score: float, evidence) -> dict:
  passage = texts.get(row) if texts is not None else None
  return {
    "rank": rank,
    "id": retriever.index.passage_ids[row],
    "score": float(score),
    "title": passage.title if passage else None,
    "text": passage.text if passage else None,
    "evidence": evidence,
  }


def _check(req: SearchRequest, limits: ServiceLimits) -> list[str]:
  """The request's queries; raises 400/413 ``HTTPException`` naming the field."""
  if (req.query is None) == (req.queries is None):
    raise HTTPException(400, "give exactly one of 'query' (a string) or 'queries' (a list)")
  queries = [req.query] if req.query is not None else req.queries
  if not queries:
    raise HTTPException(400, "'queries' must be a non-empty list of strings")
  if len(queries) > limits.max_queries:
    raise HTTPException(413, f"{len(queries)} queries; at most {limits.max_queries} a request")
  name = "query" if req.query is not None else "queries[{}]"
  for i, q in enumerate(queries):
    if not q.strip():
      raise HTTPException(400, f"{name.format(i)} must be a non-empty string")
    if len(q) > limits.max_query_chars:
      raise HTTPException(
        413, f"{name.format(i)} has {len(q)} chars; at most {limits.max_query_chars}"
      )
  top = limits.max_explain_k if req.explain else limits.max_k
  if not 1 <= req.k <= top:
    what = " with explain" if req.explain else ""
    raise HTTPException(400, f"'k' must be an integer in [1, {top}]{what}, got {req.k}")
  return queries


# ----------------------------------------------------------------------------- the app


class BodyCap:
  """413 for a request body over ``max_bytes``: at once for a declared length (nothing of
  it is read), after ``max_bytes`` for a chunked body (read here, then handed on)."""

  def __init__(self, app, max_bytes: int):
    self.app, self.max_bytes = app, max_bytes

  async def __call__(self, scope, receive, send) -> None:
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    headers = dict(scope["headers"])
    declared = headers.get(b"content-length")
    if declared is not None:
      if declared.isdigit() and int(declared) > self.max_bytes:
        return await self._too_large(scope, receive, send, f"body of {int(declared)} bytes")
      return await self.app(scope, receive, send)
    if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
      return await self.app(scope, receive, send)
    chunks, size, more = [], 0, True
    while more:
      message = await receive()
      if message["type"] != "http.request":
        return  # the client went away
      chunks.append(message.get("body", b""))
      size += len(chunks[-1])
      more = message.get("more_body", False)
      if size > self.max_bytes:
        return await self._too_large(scope, receive, send, f"body of over {size - 1} bytes")
    replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replayed():
      return replay.pop() if replay else await receive()

    await self.app(scope, replayed, send)

  async def _too_large(self, scope, receive, send, what: str) -> None:
    detail = f"{what}; at most {self.max_bytes}"
    response = JSONResponse({"detail": detail}, 413, headers={"connection": "close"})
    await response(scope, receive, send)


def make_app(
  retriever: Retriever, limits: ServiceLimits | None = None, texts: CorpusTexts | None = None
) -> FastAPI:
  """The ASGI app over one retriever (``texts`` supplies titles and passage texts)."""
  limits = limits or ServiceLimits()
  explainer = Explainer(retriever, texts)
  batcher = SearchBatcher(
    functools.partial(search_batch, retriever, explainer, texts),
    max_batch=limits.max_batch_queries or retriever.params.batch_size,
    max_queue=limits.max_queue,
    size=lambda job: len(job.queries),
  )

  @contextlib.asynccontextmanager
  async def lifespan(_app):
    yield
    batcher.close()
    if texts is not None:
      texts.close()

  app = FastAPI(
    title="xtr-jax search",
    summary="XTR token retrieval over one index, with the evidence of every score.",
    lifespan=lifespan,
    strict_content_type=False,  # a JSON body without a Content-Type header is still JSON
    docs_url=None,  # FastAPI's own pages load Swagger UI / ReDoc from a CDN: ours below
    redoc_url=None,
  )
  app.add_middleware(BodyCap, max_bytes=limits.max_body_bytes)
  app.state.batcher = batcher
  app.state.limits = limits
  page = PAGE.read_text(encoding="utf-8")

  @app.exception_handler(RequestValidationError)
  async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    detail = f"{where}: {first['msg']}"
    if first.get("type") == "json_invalid":
      detail = (
        f"body is not JSON: {first.get('ctx', {}).get('error', '')} at char {first['loc'][-1]}"
      )
    return JSONResponse({"detail": detail}, status_code=400)

  @app.get("/", response_class=HTMLResponse, include_in_schema=False)
  async def search_page() -> str:
    return page

  _add_docs_pages(app)

  @app.get("/health")
  async def health() -> dict:
    return {"status": "ok", "passages": retriever.index.num_passages}

  @app.get("/info")
  async def info() -> dict:
    return retriever.index.manifest

  @app.post(
    "/search",
    response_model=SearchResponse,
    responses={
      code: {"description": what}
      for code, what in [
        (400, "Malformed or invalid body"),
        (408, "Request not received within read_timeout"),
        (413, "Body, query count or query length over the limit"),
        (503, "Queue full or queue_timeout passed"),
        (504, "Search over request_timeout"),
      ]
    },  # fmt: skip
  )
  async def search(req: SearchRequest) -> SearchResponse:
    """Ranked passages for each query; with ``explain``, XTR's evidence for each score."""
    t0 = time.monotonic()
    queries = _check(req, limits)
    try:
      job = batcher.submit(SearchJob(queries, req.k, req.exact, req.explain))
    except Busy as e:
      raise HTTPException(503, str(e)) from None
    waiter = asyncio.wrap_future(job)
    patience = min(limits.queue_timeout, limits.request_timeout)
    done, _ = await asyncio.wait({waiter}, timeout=patience)
    if not done and job.cancel():  # still queued: it never reached the encoder
      raise HTTPException(503, f"server busy: waited {patience:g} s for the encoder")
    left = limits.request_timeout - (time.monotonic() - t0)
    done, _ = await asyncio.wait({waiter}, timeout=max(left, 0.0))
    if not done:
      raise HTTPException(504, f"search took over {limits.request_timeout} s")
    return SearchResponse(results=waiter.result(), k=req.k)

  return app


# ----------------------------------------------------------------------------- the server


def _refusal(status: int, reason: str, detail: str) -> bytes:
  body = json.dumps({"detail": detail}).encode()
  head = (
    f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
  )
  return head.encode() + body


class ReadDeadlineProtocol(H11Protocol):
  """uvicorn's h11 protocol with a deadline for receiving each whole request.

  uvicorn times out idle keep-alive connections only after a response, so a client that
  opens a connection and sends nothing, or trickles its headers or body a byte at a time,
  would hold a connection slot for ever; with ``max_connections`` of them nobody else is
  served. Here a request must be fully received ``read_timeout`` s after the connection
  opened (or the previous response ended), else 408 and close. A connection beyond
  ``max_connections`` is refused with 503 at once, not left open until it sends a request.
  """

  def __init__(self, *args, read_timeout: float, max_connections: int, **kwargs):
    super().__init__(*args, **kwargs)
    self.read_timeout, self.max_connections = read_timeout, max_connections
    self._deadline: asyncio.TimerHandle | None = None

  def connection_made(self, transport) -> None:
    super().connection_made(transport)
    if len(self.connections) > self.max_connections:
      self._refuse(503, "Service Unavailable", "server busy: too many open connections")
      return
    self._arm()

  def data_received(self, data: bytes) -> None:
    super().data_received(data)
    if self._request_read():
      self._disarm()

  def on_response_complete(self) -> None:
    super().on_response_complete()
    if not self.transport.is_closing() and not self._request_read():
      self._arm()

  def connection_lost(self, exc) -> None:
    self._disarm()
    super().connection_lost(exc)

  def _request_read(self) -> bool:
    return self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)

  def _arm(self) -> None:
    self._disarm()
    self._deadline = self.loop.call_later(self.read_timeout, self._expired)

  def _disarm(self) -> None:
    if self._deadline is not None:
      self._deadline.cancel()
      self._deadline = None

  def _expired(self) -> None:
    self._deadline = None
    if self.transport.is_closing() or self._request_read():
      return
    if self.cycle is not None and self.cycle.response_started:
      self.transport.close()
      return
    self._refuse(408, "Request Timeout", f"request not received within {self.read_timeout:g} s")

  def _refuse(self, status: int, reason: str, detail: str) -> None:
    self.transport.write(_refusal(status, reason, detail))
    self.transport.close()


def make_server(
  app: FastAPI, host: str = "127.0.0.1", port: int = 8080, limits: ServiceLimits | None = None
) -> tuple[uvicorn.Server, socket.socket]:
  """A uvicorn server for ``app`` and its listening socket (``port=0``: a free one).

  The socket is bound and listening on return, so clients may connect before
  ``server.run([sock])`` starts (they wait in the backlog).
  """
  limits = limits or ServiceLimits()
  sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  sock.bind((host, port))
  sock.listen(128)
  config = uvicorn.Config(
    app,
    http=functools.partial(
      ReadDeadlineProtocol,
      read_timeout=limits.read_timeout,
      max_connections=limits.max_connections,
    ),
    ws="none",
    lifespan="on",
    # uvicorn answers a request 503 once connections (its own included) or running requests
    # reach this; the protocol already keeps connections <= max_connections.
    limit_concurrency=limits.max_connections + 1,
    timeout_keep_alive=limits.read_timeout,
    timeout_graceful_shutdown=5,
    h11_max_incomplete_event_size=limits.max_header_bytes,
    backlog=128,
    access_log=logging.getLogger().isEnabledFor(logging.DEBUG),
    log_level="warning",
    log_config=None,
  )
  return uvicorn.Server(config), sock


@contextlib.contextmanager
def running(server: uvicorn.Server, sock: socket.socket):
  """Serves in a thread (tests, benchmarks); yields the base URL, stops on exit."""
  thread = threading.Thread(target=server.run, args=([sock],), name="uvicorn", daemon=True)
  thread.start()
  host, port = sock.getsockname()[:2]
  try:
    yield f"http://{host}:{port}"
  finally:
    server.should_exit = True
    thread.join(30)
    sock.close()


def main(argv: list[str]) -> int:
  parser = ArgumentParser(
    prog="xtr-jax serve",
    description="Serve one index over HTTP: the search page at /, POST /search, /docs.",
  )
  parser.add_argument("--index", required=True, help="Index directory (xtr-jax index).")
  parser.add_argument("--checkpoint", help="Model checkpoint (default: the manifest's).")
  parser.add_argument("--vocabulary", help="SentencePiece model (default: the manifest's).")
  parser.add_argument(
    "--backend", choices=["scann", "brute_force"], help="Token search (default: the manifest's)."
  )
  add_skip_vector_check(parser)
  parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
  parser.add_argument("--port", type=int, default=8080, help="Port to listen on (0: a free one).")
  args = parse_args_with_gin(parser, argv)
  if not 0 <= args.port <= 65535:
    raise UsageError(f"--port {args.port}: expected 0..65535")
  if not os.path.isdir(args.index):
    raise UsageError(f"--index {args.index}: no such directory")
  retriever = Retriever.load(
    args.index,
    args.checkpoint,
    args.vocabulary,
    backend=args.backend,
    expected_config=bound_config_fields,
    check_vectors=not args.skip_vector_check,
  )
  retriever.search(["warm up"], 1)  # compile before the first request
  limits = ServiceLimits()
  app = make_app(retriever, limits, CorpusTexts.for_index(retriever.index))
  try:
    server, sock = make_server(app, args.host, args.port, limits)
  except OSError as e:
    raise UsageError(
      f"--host {args.host} --port {args.port}: cannot listen ({e.strerror})"
    ) from None
  host, port = sock.getsockname()[:2]
  print(
    f"serving {args.index} on http://{host}:{port}/ (search page; API docs at /docs)", flush=True
  )
  try:
    server.run([sock])
  except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down for
    pass
  finally:
    sock.close()
  return 0
