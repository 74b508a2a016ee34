#!/usr/bin/env bash
# System packages the test suite needs beyond the Python ones: Debian's Chromium and its
# chromedriver (tests/test_search_page.py drives the search page in a headless browser), and
# CJK fonts so that page screenshots render Japanese/Chinese text. Idempotent: installs only
# what is missing, and runs `apt-get update` only then. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

packages=(chromium chromium-driver fonts-noto-cjk)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test system packages present: ${packages[*]}"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "tools/install_test_deps.sh: no apt-get; install ${missing[*]} by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
