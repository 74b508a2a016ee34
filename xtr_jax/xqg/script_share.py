"""Which Unicode script a generated question is written in: the xQG language check.

A question counts as "in script" when the script holding most of its letters is the one
expected for its language (Japanese: Kana or Han). Used by ``xtr-jax demo`` (stage 5) and
``benchmarks/xqg_script_share.py``.
"""

from __future__ import annotations

import collections

# (first, last) code point -> script
RANGES = [
  (0x0041, 0x005A, "Latin"),
  (0x0061, 0x007A, "Latin"),
  (0x00C0, 0x024F, "Latin"),
  (0x1E00, 0x1EFF, "Latin"),
  (0x0370, 0x03FF, "Greek"),
  (0x0400, 0x04FF, "Cyrillic"),
  (0x0600, 0x06FF, "Arabic"),
  (0x0750, 0x077F, "Arabic"),
  (0xFB50, 0xFDFF, "Arabic"),
  (0xFE70, 0xFEFF, "Arabic"),
  (0x0900, 0x097F, "Devanagari"),
  (0x0980, 0x09FF, "Bengali"),
  (0x0B80, 0x0BFF, "Tamil"),
  (0x0C00, 0x0C7F, "Telugu"),
  (0x0E00, 0x0E7F, "Thai"),
  (0x3040, 0x30FF, "Kana"),
  (0x3400, 0x4DBF, "Han"),
  (0x4E00, 0x9FFF, "Han"),
  (0x1100, 0x11FF, "Hangul"),
  (0xAC00, 0xD7AF, "Hangul"),
]
EXPECTED = {
  "ar": {"Arabic"}, "fa": {"Arabic"}, "ur": {"Arabic"}, "ps": {"Arabic"},
  "hi": {"Devanagari"}, "mr": {"Devanagari"}, "bn": {"Bengali"}, "ta": {"Tamil"},
  "te": {"Telugu"}, "th": {"Thai"}, "ja": {"Kana", "Han"}, "zh": {"Han"}, "ko": {"Hangul"},
  "ru": {"Cyrillic"}, "el": {"Greek"},
  "de": {"Latin"}, "es": {"Latin"}, "fi": {"Latin"}, "fr": {"Latin"}, "id": {"Latin"},
  "ro": {"Latin"}, "sw": {"Latin"}, "tr": {"Latin"}, "vi": {"Latin"}, "yo": {"Latin"},
  "en": {"Latin"},
}  # fmt: skip


def script_of(ch: str) -> str | None:
  cp = ord(ch)
  for lo, hi, name in RANGES:
    if lo <= cp <= hi:
      return name
  return None


def dominant_script(text: str) -> str | None:
  counts = collections.Counter(s for s in map(script_of, text) if s)
  return counts.most_common(1)[0][0] if counts else None


def in_script(text: str, code: str) -> bool:
  return dominant_script(text) in EXPECTED[code]


def shares(pairs) -> dict[str, tuple[int, int]]:
  """{code: (questions in the expected script, questions)} from (code, text) pairs."""
  out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
  for code, text in pairs:
    out[code][0] += in_script(text, code)
    out[code][1] += 1
  return {c: (a, b) for c, (a, b) in sorted(out.items())}


def share_table(gen: dict[str, tuple[int, int]], ref: dict | None = None) -> str:
  """Markdown table: per language, the share in the expected script (and the reference's)."""
  ref = ref or {}
  rows = ["| lang | expected script | generated in script | reference (human) in script |"]
  rows.append("|---|---|---:|---:|")
  for code, (a, n) in gen.items():
    r = ref.get(code)
    r_txt = f"{r[0] / r[1]:.1%} of {r[1]}" if r else "-"
    rows.append(f"| {code} | {'/'.join(sorted(EXPECTED[code]))} | {a / n:.1%} of {n} | {r_txt} |")
  a, n = sum(v[0] for v in gen.values()), sum(v[1] for v in gen.values())
  macro = sum(v[0] / v[1] for v in gen.values()) / max(len(gen), 1)
  rows.append(f"| all | | {a / max(n, 1):.1%} of {n} (macro {macro:.1%}) | |")
  return "\n".join(rows)
