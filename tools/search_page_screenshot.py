"""A screenshot of the search page (``xtr-jax serve``'s ``/``) for one query, in headless Chromium.

Usage: ``python tools/search_page_screenshot.py --index DIR --query TEXT --out PAGE.png``.
Serves the index in this process (``index/service.py``), opens the page in Debian's Chromium
(``tools/install_test_deps.sh``) through Selenium, types the query, waits for the ranked
passages and their evidence, and saves the window.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--index", required=True, help="Index directory.")
  parser.add_argument("--query", required=True, help="The query to type.")
  parser.add_argument("--out", required=True, help="PNG to write.")
  parser.add_argument("--k", default="5", choices=["5", "10", "20", "50"], help="Passages.")
  parser.add_argument("--backend", choices=["scann", "brute_force"], help="Token search.")
  parser.add_argument("--height", type=int, default=1800, help="Window height in pixels.")
  args = parser.parse_args(argv)

  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import Select, WebDriverWait

  from xtr_jax.index.corpus_text import CorpusTexts
  from xtr_jax.index.retriever import Retriever
  from xtr_jax.index.service import ServiceLimits, make_app, make_server, running

  retriever = Retriever.load(args.index, backend=args.backend)
  retriever.search(["warm up"], 1)
  limits = ServiceLimits(read_timeout=60)
  app = make_app(retriever, limits, CorpusTexts.for_index(retriever.index))
  server, sock = make_server(app, "127.0.0.1", 0, limits)
  options = webdriver.ChromeOptions()
  options.binary_location = "/usr/bin/chromium"
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size=1280,{args.height}", "--lang=en-US"):  # fmt: skip
    options.add_argument(arg)
  with running(server, sock) as url:
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
      driver.get(url + "/")
      Select(driver.find_element(By.ID, "k")).select_by_visible_text(args.k)
      driver.find_element(By.ID, "q").send_keys(args.query)
      driver.find_element(By.ID, "go").click()
      WebDriverWait(driver, 300).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
      )
      driver.save_screenshot(args.out)
    finally:
      driver.quit()
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
