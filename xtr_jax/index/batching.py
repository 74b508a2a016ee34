"""Micro-batching of searches: requests that arrive while the encoder is busy go in one call.

A query encoder call costs about the same for one query as for a full batch (the Retriever
pads every call to ``SearchParams.batch_size`` rows), and so does a brute-force token search
(it reads the whole token table per call), so a service that searches each request on its own
is bound by calls, not queries (results/reliability_service.md: 15.7 req/s before batching). ``SearchBatcher`` has one worker thread: it takes every waiting job (up
to ``max_batch`` queries), runs them in one ``run(jobs)`` call and hands each job its share
of the results. There is no waiting window: a lone request runs at once, and requests pile up
into the next batch only while a batch is running. At most ``max_queue`` jobs wait; one more
is refused (``Busy``) rather than queued without bound.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any


class Busy(Exception):
  """The queue is full (or the batcher closed): the caller should answer 503."""


class SearchBatcher:
  """One worker thread running ``run(jobs) -> results`` (one result per job) over batches."""

  def __init__(
    self,
    run: Callable[[list[Any]], Sequence[Any]],
    max_batch: int,
    max_queue: int,
    size: Callable[[Any], int] = lambda job: 1,
  ):
    if max_batch < 1 or max_queue < 1:
      raise ValueError(f"max_batch={max_batch} and max_queue={max_queue} must be >= 1")
    self._run, self.max_batch, self.max_queue, self._size = run, max_batch, max_queue, size
    self._queue: collections.deque[tuple[Any, concurrent.futures.Future]] = collections.deque()
    self._cond = threading.Condition()
    self._closed = False
    self.calls = 0  # run() calls so far (one per batch)
    self._thread = threading.Thread(target=self._loop, name="search-batcher", daemon=True)
    self._thread.start()

  def submit(self, job) -> concurrent.futures.Future:
    """Queues ``job``; its future gets the result. A future cancelled while still queued is
    dropped (a client that gave up costs nothing). Raises ``Busy`` when the queue is full."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    with self._cond:
      if self._closed:
        raise Busy("server shutting down")
      if len(self._queue) >= self.max_queue:
        raise Busy(f"server busy: {len(self._queue)} searches queued; retry later")
      self._queue.append((job, future))
      self._cond.notify_all()
    return future

  def queued(self) -> int:
    with self._cond:
      return len(self._queue)

  def wait_until_queued(self, n: int, timeout: float) -> bool:
    """Blocks until ``n`` jobs wait (tests: make a batch form deterministically)."""
    with self._cond:
      return self._cond.wait_for(lambda: len(self._queue) >= n, timeout)

  def close(self, timeout: float = 10.0) -> None:
    """Stops taking jobs; the queued ones are still run. Waits for the worker."""
    with self._cond:
      self._closed = True
      self._cond.notify_all()
    self._thread.join(timeout)

  def _take(self) -> list[tuple[Any, concurrent.futures.Future]]:
    """Called with the lock held: the next batch, skipping jobs cancelled while queued."""
    batch, total = [], 0
    while self._queue:
      job, future = self._queue[0]
      if batch and total + self._size(job) > self.max_batch:
        break
      self._queue.popleft()
      if future.set_running_or_notify_cancel():
        batch.append((job, future))
        total += self._size(job)
    return batch

  def _loop(self) -> None:
    while True:
      with self._cond:
        self._cond.wait_for(lambda: self._queue or self._closed)
        if not self._queue:
          return
        batch = self._take()
        self._cond.notify_all()
      if batch:
        self._run_batch(batch)

  def _run_batch(self, batch) -> None:
    self.calls += 1
    try:
      results = self._run([job for job, _ in batch])
      if len(results) != len(batch):
        raise RuntimeError(f"run() returned {len(results)} results for {len(batch)} jobs")
    except Exception as e:  # every waiting request gets the error, the worker lives on
      for _, future in batch:
        future.set_exception(e)
      return
    for (_, future), result in zip(batch, results):
      future.set_result(result)
