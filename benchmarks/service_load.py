"""``xtr-jax serve`` under load and abuse, from loopback only.

Builds a tiny index (self-made corpus, vocabulary and XTR model; brute-force token search),
starts ``xtr-jax serve`` as a subprocess and measures:

1. Load: an open-loop generator offers POST /search (one query, k=10) at increasing rates;
   per rate: achieved throughput, p50/p99 latency (from the *scheduled* send time, so
   queueing counts), errors (anything but 200/503), 503s (shed load) and server RSS. It
   stops after the throughput has stopped growing (two rates below 90% of the offer).
2. Abuse: while one well-behaved client keeps searching (4 per second), malformed bodies,
   wrong types, huge bodies, slowloris (headers trickled), slow bodies, many idle
   connections and a connection flood beyond ``max_connections``. Reported: the status each
   abusive request got (or how long until the server dropped it) and the good client's
   success rate and latency in every phase.
3. Soak: a steady rate at about half the saturation throughput for ``--soak_seconds``;
   server RSS sampled every 5 s (flat memory = no leak).

Usage: ``python benchmarks/service_load.py [--rates 5,10,20,40,80,160] [--soak_seconds 120]``.
The client shares the machine's cores with the server: on a 2-core VM the saturation point
is the pair's, not the server's alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import pathlib
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
QUERIES = ["river king", "football team song", "mountain lake city", "old market bridge",
           "the famous writer", "island music festival", "red train station"]  # fmt: skip


# ----------------------------------------------------------------------------- server


def build_index(root: str, passages: int) -> str:
  from xtr_jax.index.testing import build_tiny_index, make_tiny_setup

  setup = make_tiny_setup(os.path.join(root, "fx"), num_passages=passages)
  return build_tiny_index(setup, os.path.join(root, "idx"))


@contextlib.contextmanager
def serve(index: str, log: str, limits: dict):
  """Runs ``xtr-jax serve`` on a free loopback port; yields (port, pid)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  args = [sys.executable, "-m", "xtr_jax.cli", "serve", f"--index={index}", f"--port={port}",
          "--backend=brute_force", *[f"--gin.ServiceLimits.{k}={v}" for k, v in limits.items()]]  # fmt: skip
  with open(log, "ab") as out:
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=out, stderr=out)
  try:
    deadline = time.time() + 300
    while time.time() < deadline:
      if proc.poll() is not None:
        raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
      with contextlib.suppress(OSError):
        if request(port, "GET", "/health", timeout=2)[0] == 200:
          break
      time.sleep(0.5)
    else:
      raise RuntimeError(f"server not up within 300 s; see {log}")
    yield port, proc.pid
  finally:
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def rss_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def threads_of(pid: int) -> int:
  return len(os.listdir(f"/proc/{pid}/task"))


def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30):
  """(status, seconds) of one request on a fresh connection."""
  t0 = time.perf_counter()
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
  try:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status, time.perf_counter() - t0
  finally:
    conn.close()


def search_body(rng: random.Random) -> bytes:
  return json.dumps({"queries": [rng.choice(QUERIES)], "k": 10}).encode()


def pct(xs: list[float], q: float) -> float:
  if not xs:
    return float("nan")
  xs = sorted(xs)
  return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


# ----------------------------------------------------------------------------- load


def open_loop(port: int, pid: int, rate: float, seconds: float, seed: int) -> dict:
  """Offers ``rate`` req/s for ``seconds`` (Poisson arrivals); latency from scheduled time."""
  rng = random.Random(seed)
  t, times = 0.0, []
  while t < seconds:
    t += rng.expovariate(rate)
    times.append(t)
  bodies = [search_body(rng) for _ in times]
  results: list[tuple[int, float]] = []
  lock = threading.Lock()
  rss = [rss_mib(pid)]

  def one(scheduled: float, body: bytes) -> None:
    try:
      status, _ = request(port, "POST", "/search", body, timeout=30)
    except (OSError, http.client.HTTPException):
      status = -1
    with lock:
      results.append((status, time.perf_counter() - scheduled))

  workers = min(256, max(16, int(rate * 2)))
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for at, body in zip(times, bodies):
      delay = start + at - time.perf_counter()
      if delay > 0:
        time.sleep(delay)
      pool.submit(one, start + at, body)
    rss.append(rss_mib(pid))
  wall = time.perf_counter() - start
  ok = [lat for s, lat in results if s == 200]
  return {
    "offered": rate,
    "sent": len(times),
    "throughput": len(ok) / wall,
    "p50_ms": 1000 * pct(ok, 50),
    "p99_ms": 1000 * pct(ok, 99),
    "errors": sum(1 for s, _ in results if s not in (200, 503)),
    "shed_503": sum(1 for s, _ in results if s == 503),
    "rss_mib": max(rss),
    "threads": threads_of(pid),
  }


# ----------------------------------------------------------------------------- abuse


class GoodClient:
  """One well-behaved client: a search every ``period`` s; results kept per phase label."""

  def __init__(self, port: int, period: float = 0.25):
    self.port, self.period = port, period
    self.phase = "baseline"
    self.log: dict[str, list[tuple[int, float]]] = {}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self) -> None:
    rng = random.Random(1)
    while not self._stop.is_set():
      t0 = time.perf_counter()
      try:
        status, lat = request(self.port, "POST", "/search", search_body(rng), timeout=30)
      except (OSError, http.client.HTTPException):
        status, lat = -1, time.perf_counter() - t0
      self.log.setdefault(self.phase, []).append((status, lat))
      self._stop.wait(max(0.0, self.period - (time.perf_counter() - t0)))

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join(60)

  def summary(self) -> list[dict]:
    rows = []
    for phase, log in self.log.items():
      ok = [lat for s, lat in log if s == 200]
      rows.append({
        "phase": phase, "requests": len(log), "ok": len(ok),
        "p50_ms": 1000 * pct(ok, 50), "p99_ms": 1000 * pct(ok, 99),
      })  # fmt: skip
    return rows


MALFORMED = [
  b"{not json", b"\xff\xfe", b"[1, 2]", b'{"queries": "one string"}', b'{"queries": []}',
  b'{"queries": [1]}', b'{"queries": ["a"], "k": "5"}', b'{"queries": ["a"], "k": 1e9}',
  b'{"queries": ["a"], "exact": "yes"}', b'{"queries": ["a"], "extra": 1}', b"null", b"",
  json.dumps({"queries": ["x"] * 1000}).encode(), json.dumps({"queries": ["x" * 5000]}).encode(),
]  # fmt: skip


def raw_exchange(port: int, data: bytes, timeout: float = 30) -> int:
  """Sends raw bytes, returns the status of the reply (-1: closed without one)."""
  with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
    with contextlib.suppress(OSError):
      s.sendall(data)
    try:
      head = s.recv(4096)
    except OSError:
      return -1
  return _status_of(head)


def _status_of(head: bytes) -> int:
  try:
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else -1
  except (IndexError, ValueError):
    return -1


def trickle(port: int, chunks: list[bytes], gap: float, limit: float) -> tuple[int, float]:
  """Sends ``chunks`` ``gap`` s apart until the server answers or drops us: (status, secs).

  Status -1: closed without a reply; 0: still connected, unanswered after ``limit`` s.
  """
  t0 = time.perf_counter()
  with socket.create_connection(("127.0.0.1", port), timeout=gap) as s:
    for chunk in chunks:
      try:
        s.sendall(chunk)
        got = s.recv(4096)
      except TimeoutError:
        if time.perf_counter() - t0 > limit:
          return 0, time.perf_counter() - t0
        continue
      except OSError:
        return -1, time.perf_counter() - t0
      return _status_of(got), time.perf_counter() - t0
    s.settimeout(max(0.1, limit - (time.perf_counter() - t0)))
    try:
      got = s.recv(4096)
    except TimeoutError:
      return 0, time.perf_counter() - t0
    except OSError:
      return -1, time.perf_counter() - t0
    return _status_of(got), time.perf_counter() - t0


def abuse(port: int, pid: int, read_timeout: float, max_connections: int) -> dict:
  out: dict = {}
  with GoodClient(port) as good:
    time.sleep(8)
    good.phase = "malformed"
    statuses = [raw_exchange(port, _post(b)) for b in MALFORMED for _ in range(20)]
    out["malformed"] = _count(statuses)
    time.sleep(1)

    good.phase = "huge bodies"
    claimed = raw_exchange(port, _post(b"", length=50 << 20))  # only the header is sent
    sent = raw_exchange(port, _post(b"x" * (5 << 20)))
    out["huge_body"] = {"claimed 50 MiB": claimed, "sent 5 MiB": sent}

    good.phase = "slowloris"
    head = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
      chunks = [head[i : i + 1] for i in range(len(head))]
      lor = list(pool.map(lambda _: trickle(port, chunks, 0.5, 60), range(30)))
      body = json.dumps({"queries": ["river king"], "k": 5}).encode()
      slow_body = [_post(b"", length=len(body))] + [body[i : i + 1] for i in range(len(body))]
      slow = list(pool.map(lambda _: trickle(port, slow_body, 0.5, 60), range(10)))
    out["slowloris_headers"] = {"statuses": _count([s for s, _ in lor]),
                                "max_seconds": round(max(t for _, t in lor), 1)}  # fmt: skip
    out["slow_body"] = {"statuses": _count([s for s, _ in slow]),
                        "max_seconds": round(max(t for _, t in slow), 1)}  # fmt: skip

    good.phase = "idle connections"
    idle = []
    for _ in range(max_connections // 2):
      idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    out["idle"] = {"opened": len(idle), "server_threads": threads_of(pid)}
    time.sleep(min(read_timeout, 8))
    dropped = 0
    time.sleep(read_timeout)
    for s in idle:
      s.setblocking(False)
      try:
        dropped += s.recv(4096) is not None
      except BlockingIOError:
        pass
      except OSError:
        dropped += 1
      s.close()
    out["idle"]["dropped_by_server"] = dropped

    good.phase = "connection flood"
    flood = [
      socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(max_connections + 50)
    ]
    time.sleep(1)
    busy = 0
    for s in flood:
      s.setblocking(False)
      with contextlib.suppress(BlockingIOError, OSError):
        busy += s.recv(4096).startswith(b"HTTP/1.1 503")
    out["flood"] = {"opened": len(flood), "got_503": busy, "server_threads": threads_of(pid)}
    for s in flood:
      s.close()
    time.sleep(2)

    good.phase = "after"
    time.sleep(8)
  out["good_client"] = good.summary()
  out["rss_after_abuse_mib"] = rss_mib(pid)
  return out


def _post(body: bytes, length: int | None = None) -> bytes:
  n = len(body) if length is None else length
  return (
    b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (n, body)
  )


def _count(statuses) -> dict:
  out: dict = {}
  for s in statuses:
    out[str(s)] = out.get(str(s), 0) + 1
  return dict(sorted(out.items()))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--rates", default="5,10,20,40,80,160", help="Offered req/s, in order.")
  parser.add_argument("--seconds", type=float, default=10.0, help="Seconds per rate.")
  parser.add_argument("--soak_seconds", type=float, default=120.0)
  parser.add_argument("--passages", type=int, default=200)
  parser.add_argument("--read_timeout", type=float, default=5.0)
  parser.add_argument("--max_connections", type=int, default=256)
  parser.add_argument("--max_queue", type=int, default=16, help="Requests waiting to encode.")
  parser.add_argument("--no_abuse", action="store_true", help="Skip the abuse phase.")
  parser.add_argument("--workdir", help="Keep files here (default: a temporary folder).")
  parser.add_argument("--out", help="Also write the measurements as JSON here.")
  args = parser.parse_args(argv)
  limits = {"read_timeout": args.read_timeout, "max_connections": args.max_connections,
            "max_queue": args.max_queue, "queue_timeout": 5.0}  # fmt: skip
  report: dict = {"limits": limits}
  with tempfile.TemporaryDirectory(prefix="svc_load_") as tmp:
    root = args.workdir or tmp
    os.makedirs(root, exist_ok=True)
    t0 = time.time()
    index = build_index(root, args.passages)
    print(f"index built in {time.time() - t0:.0f} s ({args.passages} passages)", flush=True)
    with serve(index, os.path.join(root, "server.log"), limits) as (port, pid):
      for _ in range(20):  # warm up (compile every shape on the path)
        request(port, "POST", "/search", search_body(random.Random(0)))
      print(f"\nserver pid {pid}, RSS {rss_mib(pid):.0f} MiB after warm-up\n")
      print("| offered req/s | sent | throughput req/s | p50 ms | p99 ms | errors | 503 shed | RSS MiB | threads |")  # fmt: skip
      print("|---|---|---|---|---|---|---|---|---|", flush=True)
      rows, below = [], 0
      for i, rate in enumerate(float(r) for r in args.rates.split(",")):
        r = open_loop(port, pid, rate, args.seconds, seed=i)
        rows.append(r)
        print(f"| {r['offered']:g} | {r['sent']} | {r['throughput']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['errors']} | {r['shed_503']} | {r['rss_mib']:.0f} | "
              f"{r['threads']} |", flush=True)  # fmt: skip
        # Saturated: below 90% of what was sent and no >10% gain over the best so far.
        best = max((x["throughput"] for x in rows[:-1]), default=0.0)
        sent_rate = r["sent"] / args.seconds
        flat = r["throughput"] < 0.9 * sent_rate and r["throughput"] < 1.1 * best
        below = below + 1 if flat else 0
        time.sleep(2)  # let the queue drain
        if below >= 2:
          break
      report["load"] = rows
      saturation = max(r["throughput"] for r in rows)
      print(f"\nsaturation throughput ~{saturation:.1f} req/s\n", flush=True)

      if not args.no_abuse:
        ab = abuse(port, pid, args.read_timeout, args.max_connections)
        report["abuse"] = ab
        print("abuse (status -> count; -1 closed without reply, 0 never answered):")
        for key in ("malformed", "huge_body", "slowloris_headers", "slow_body", "idle", "flood"):
          print(f"- {key}: {json.dumps(ab[key])}")
        print("\n| good client phase | requests | ok | p50 ms | p99 ms |\n|---|---|---|---|---|")
        for g in ab["good_client"]:
          print(f"| {g['phase']} | {g['requests']} | {g['ok']} | {g['p50_ms']:.0f} | {g['p99_ms']:.0f} |")  # fmt: skip
        print(f"RSS after abuse: {ab['rss_after_abuse_mib']:.0f} MiB\n", flush=True)

      if args.soak_seconds > 0:
        rate = max(1.0, round(saturation / 2))
        samples, soak = [], []
        t_end = time.time() + args.soak_seconds
        while time.time() < t_end:
          r = open_loop(port, pid, rate, 5.0, seed=len(soak) + 100)
          soak.append(r)
          samples.append(round(rss_mib(pid), 1))
        ok = sum(r["sent"] - r["errors"] - r["shed_503"] for r in soak)
        errors = sum(r["errors"] for r in soak)
        shed = sum(r["shed_503"] for r in soak)
        p99 = max(r["p99_ms"] for r in soak)
        half = len(samples) // 2
        drift = statistics.mean(samples[half:]) - statistics.mean(samples[:half])
        report["soak"] = {"rate": rate, "seconds": args.soak_seconds, "ok": ok, "errors": errors,
                          "shed_503": shed, "worst_p99_ms": p99, "rss_mib": samples,
                          "rss_drift_second_half_mib": round(drift, 1)}  # fmt: skip
        print(f"soak at {rate:g} req/s for {args.soak_seconds:.0f} s: {ok} ok, {errors} errors, "
              f"{shed} shed, worst 5-s p99 {p99:.0f} ms")  # fmt: skip
        print(f"RSS MiB every 5 s: {samples}")
        print(f"RSS drift (mean of 2nd half - 1st half): {drift:+.1f} MiB", flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
