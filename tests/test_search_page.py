"""The search page in a real headless browser (Debian's Chromium, driven by Selenium).

Starts the service on a tiny index, types a query, waits for the results, and checks that
the page shows what the API returns: the same passages in the same order, the same scores,
and XTR's evidence (highlighted passage tokens, imputed query tokens, the score as the sum of
the shares); and that the API pages (``/docs``, ``/redoc``) render from the server's own
files. ``XTR_JAX_SCREENSHOT=PATH`` saves a screenshot there. The browser comes from
``tools/install_test_deps.sh``; without it the test skips, except under CI, where it fails.
"""

import json
import os
import shutil
import urllib.request

import pytest

from xtr_jax.index.corpus_text import CorpusTexts
from xtr_jax.index.retriever import Retriever, SearchParams
from xtr_jax.index.service import ServiceLimits, make_app, make_server, running
from xtr_jax.index.testing import build_tiny_index, make_tiny_setup

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
QUERY = "river king 東京"  # the page takes any script; the tiny vocabulary maps kanji to <unk>


def _need_browser():
  missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
  try:
    import selenium  # noqa: F401
  except ImportError:
    missing.append("the selenium package")
  if missing:
    message = f"{', '.join(missing)} missing: run tools/install_test_deps.sh"
    if os.environ.get("CI"):
      pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
  _need_browser()
  root = str(tmp_path_factory.mktemp("page"))
  index = build_tiny_index(make_tiny_setup(root, num_passages=40), os.path.join(root, "idx"))
  retriever = Retriever.load(index, params=SearchParams(token_top_k=12))
  limits = ServiceLimits(read_timeout=30)
  app = make_app(retriever, limits, CorpusTexts.for_index(retriever.index))
  server, sock = make_server(app, "127.0.0.1", 0, limits)
  with running(server, sock) as u:
    yield u


@pytest.fixture(scope="module")
def browser():
  _need_browser()
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service

  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1700", "--lang=en-US"):  # fmt: skip
    options.add_argument(arg)
  driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
  try:
    yield driver
  finally:
    driver.quit()


def api_search(url, body):
  req = urllib.request.Request(
    url + "/search", json.dumps(body).encode(), {"Content-Type": "application/json"}
  )
  with urllib.request.urlopen(req, timeout=60) as r:
    return json.loads(r.read())["results"][0]


def test_page_shows_the_apis_passages_scores_and_evidence(url, browser):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  browser.get(url + "/")
  box = browser.find_element(By.ID, "q")
  box.send_keys(QUERY)
  browser.find_element(By.ID, "go").click()
  WebDriverWait(browser, 60).until(
    lambda d: (
      d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
      or "error" in d.find_element(By.ID, "status").get_attribute("class")
    )
  )
  assert browser.find_element(By.ID, "status").get_attribute("class") != "error"
  expect = api_search(url, {"query": QUERY, "k": 10, "exact": False, "explain": True})

  hits = browser.find_elements(By.CSS_SELECTOR, "article.hit")
  assert [h.get_attribute("data-id") for h in hits] == [e["id"] for e in expect]
  imputed_rows = 0
  for hit, want in zip(hits, expect):
    assert float(hit.get_attribute("data-score")) == want["score"]
    assert hit.find_element(By.CSS_SELECTOR, ".hit-score").text == f"{want['score']:.4f}"
    assert hit.find_element(By.CSS_SELECTOR, ".title").text == want["title"]
    # The evidence: one row per query token, the score shown as the sum of the shares.
    ev = want["evidence"]
    rows = hit.find_elements(By.CSS_SELECTOR, "tr.ev-row")
    assert [r.get_attribute("data-status") for r in rows] == [t["status"] for t in ev["tokens"]]
    total = hit.find_element(By.CSS_SELECTOR, ".ev-sum")
    assert float(total.get_attribute("data-sum")) == pytest.approx(want["score"], abs=1e-5)
    # The passage's tokens that query tokens retrieved are highlighted, at their positions.
    marked = {
      int(t.get_attribute("data-pos"))
      for t in hit.find_elements(By.CSS_SELECTOR, ".passage .tok.hl")
    }
    retrieved = {t["passage_position"] for t in ev["tokens"] if t["status"] == "retrieved"}
    assert marked == retrieved and marked
    imputed_rows += sum(t["status"] == "imputed" for t in ev["tokens"])
  assert imputed_rows > 0  # with k'=12 some query tokens retrieved none of a passage's tokens
  first = hits[0].find_element(By.CSS_SELECTOR, ".passage .tok.hl")
  assert "→" in first.get_attribute("title")  # the hover text names query token and score
  if os.environ.get("XTR_JAX_SCREENSHOT"):
    browser.save_screenshot(os.environ["XTR_JAX_SCREENSHOT"])


@pytest.mark.parametrize(
  "path, operation",
  [
    ("/docs", ".opblock-summary-path[data-path='/search']"),
    ("/redoc", "[data-section-id^='operation/']"),
  ],
)
def test_api_pages_render_the_schema_from_local_files(url, browser, path, operation):
  """/docs (Swagger UI) and /redoc show the POST /search operation, every file they load
  coming from this server: no CDN, so they work offline (Swagger UI 5 renders OpenAPI 3.1)."""
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  browser.get(url + path)
  WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, operation))
  body = browser.find_element(By.TAG_NAME, "body").text
  assert "/search" in body and "Unable to render" not in body
  entries = browser.execute_script(
    "return performance.getEntriesByType('resource')"
    ".map(e => [e.name, e.initiatorType, e.responseStatus])"
  )
  assert any(name.startswith(f"{url}/static/docs/") for name, _, _ in entries), entries
  # Only an image may point elsewhere (ReDoc's sidebar logo, on its CDN), and the page's
  # Content-Security-Policy blocks it: nothing was fetched (ReDoc then hides the logo).
  outside = [e for e in entries if not e[0].startswith(url + "/")]
  assert all(kind == "img" and status == 0 for _, kind, status in outside), outside
  if path == "/docs":
    assert not outside
