"""The shipped multilingual sample: a small synthetic world in the SWIM-IR and XOR layouts.

The demo must run on a fresh machine with nothing downloaded, so the project writes its own
data. Passages are English "Wikipedia-like" paragraphs about invented towns; questions are in
the seven XOR-Retrieve languages (ar bn fi ja ko ru te: five scripts). Each town has two
passages (history/geography and culture/civic life), so a retriever must match both the
entity name and, across languages, what the question asks about. Everything is derived from
a seed, so the sample is the same on every machine.

Layout written by ``write_sample(out_dir)`` (or ``python -m xtr_jax.experiments.sample_data
--output DIR``)::

    corpus.tsv                         id \\t text \\t title (header), English passages
    swim_ir/cross_lingual/{code}.jsonl training pairs, SWIM-IR record layout
    xor/train.jsonl                    few-shot XOR-layout pairs (id, lang, question, answers, positive)
    xor/dev.jsonl                      dev queries (id, lang, question, answers)
    xor/dev.qrels                      TREC qrels for them (qid 0 pid 1)
    README.md                          what the sample is
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import sys

from xtr_jax.io import atomic_write_text as _atomic_write_text

LANGUAGES: dict[str, str] = {
  "ar": "Arabic",
  "bn": "Bengali",
  "fi": "Finnish",
  "ja": "Japanese",
  "ko": "Korean",
  "ru": "Russian",
  "te": "Telugu",
}

# Question templates per attribute and language; {x} is the town's (Latin-script) name.
TEMPLATES: dict[str, dict[str, str]] = {
  "founded": {
    "en": "When was {x} founded?",
    "ar": "متى تأسست {x}؟",
    "bn": "{x} কবে প্রতিষ্ঠিত হয়েছিল?",
    "fi": "Milloin {x} perustettiin?",
    "ja": "{x}はいつ設立されましたか？",
    "ko": "{x}은 언제 설립되었습니까?",
    "ru": "Когда был основан {x}?",
    "te": "{x} ఎప్పుడు స్థాపించబడింది?",
  },
  "river": {
    "en": "On which river does {x} lie?",
    "ar": "على أي نهر تقع {x}؟",
    "bn": "{x} কোন নদীর তীরে অবস্থিত?",
    "fi": "Minkä joen varrella {x} sijaitsee?",
    "ja": "{x}はどの川のほとりにありますか？",
    "ko": "{x}은 어느 강에 위치해 있습니까?",
    "ru": "На какой реке расположен {x}?",
    "te": "{x} ఏ నది ఒడ్డున ఉంది?",
  },
  "population": {
    "en": "What is the population of {x}?",
    "ar": "كم عدد سكان {x}؟",
    "bn": "{x}-এর জনসংখ্যা কত?",
    "fi": "Mikä on {x}:n väkiluku?",
    "ja": "{x}の人口は何人ですか？",
    "ko": "{x}의 인구는 얼마입니까?",
    "ru": "Каково население {x}?",
    "te": "{x} జనాభా ఎంత?",
  },
  "known_for": {
    "en": "What is {x} known for?",
    "ar": "بماذا تشتهر {x}؟",
    "bn": "{x} কিসের জন্য বিখ্যাত?",
    "fi": "Mistä {x} tunnetaan?",
    "ja": "{x}は何で知られていますか？",
    "ko": "{x}은 무엇으로 유명합니까?",
    "ru": "Чем известен {x}?",
    "te": "{x} దేనికి ప్రసిద్ధి చెందింది?",
  },
  "mayor": {
    "en": "Who is the mayor of {x}?",
    "ar": "من هو عمدة {x}؟",
    "bn": "{x}-এর মেয়র কে?",
    "fi": "Kuka on {x}:n pormestari?",
    "ja": "{x}の市長は誰ですか？",
    "ko": "{x}의 시장은 누구입니까?",
    "ru": "Кто мэр {x}?",
    "te": "{x} మేయర్ ఎవరు?",
  },
}
# Which of a town's two passages answers each attribute.
PASSAGE_OF = {"founded": 0, "river": 0, "population": 0, "known_for": 1, "mayor": 1}

_ONSETS = ["b", "d", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "n", "r", "l", "s", "m", "sk", "th"]
_PRODUCTS = [
  "glass workshops",
  "woollen textiles",
  "clockmaking",
  "a spring music festival",
  "salt mines",
  "its stone bridge",
  "apple orchards",
  "a medieval library",
  "shipbuilding",
  "copper engraving",
  "horse breeding",
  "a botanical garden",
]
_REGIONS = ["Northmarch", "Eastvale", "the Highlands", "the Coastlands", "Lowmere", "the Plains"]


def _name(rng: random.Random, syllables: int) -> str:
  parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
  return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def make_world(num_towns: int = 120, seed: int = 17) -> list[dict]:
  """Invented towns with attributes; names are unique."""
  rng = random.Random(seed)
  towns, seen = [], set()
  while len(towns) < num_towns:
    name = _name(rng, rng.choice([2, 3]))
    if name in seen or len(name) < 5:
      continue
    seen.add(name)
    river, mayor_first, mayor_last = _name(rng, 2), _name(rng, 2), _name(rng, 3)
    towns.append(
      dict(
        name=name,
        region=rng.choice(_REGIONS),
        river=river,
        founded=str(rng.randint(1100, 1950)),
        population=f"{rng.randint(2, 400)},{rng.randint(0, 9)}00",
        known_for=rng.choice(_PRODUCTS),
        mayor=f"{mayor_first} {mayor_last}",
      )
    )
  return towns


def passages_of(town: dict) -> tuple[str, str]:
  x = town
  history = (
    f"{x['name']} is a town in {x['region']}, on the banks of the {x['river']} river. "
    f"It was founded in {x['founded']} and has a population of {x['population']}. "
    f"Travellers reach {x['name']} by the old road along the {x['river']}."
  )
  culture = (
    f"{x['name']} is known for {x['known_for']}, which draws visitors every year. "
    f"The current mayor of {x['name']} is {x['mayor']}, elected by the town council. "
    f"Local schools in {x['name']} teach the history of {x['known_for']}."
  )
  return history, culture


def answer_of(town: dict, attribute: str) -> str:
  return town[attribute]


def _jsonl(rows: list[dict]) -> str:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_sample(
  out_dir: str | os.PathLike,
  num_towns: int = 120,
  dev_fraction: float = 0.25,
  dev_languages_per_question: int = 2,
  fewshot_per_language: int = 8,
  seed: int = 17,
) -> dict[str, str]:
  """Writes the sample under ``out_dir`` and returns the paths of its files."""
  out = pathlib.Path(out_dir)
  rng = random.Random(seed + 1)
  towns = make_world(num_towns, seed)
  num_dev = max(1, int(round(num_towns * dev_fraction)))
  dev_towns, train_towns = towns[:num_dev], towns[num_dev:]

  corpus_rows, pid_of = ["id\ttext\ttitle"], {}
  for t_index, town in enumerate(towns):
    for p_index, text in enumerate(passages_of(town)):
      pid = f"sample{t_index:04d}_{p_index}"
      pid_of[(town["name"], p_index)] = pid
      corpus_rows.append(f"{pid}\t{text}\t{town['name']}")

  attributes = list(TEMPLATES)
  swim: dict[str, list[dict]] = {code: [] for code in LANGUAGES}
  for town in train_towns:
    for attr in attributes:
      p_index = PASSAGE_OF[attr]
      text = passages_of(town)[p_index]
      for code, lang in LANGUAGES.items():
        swim[code].append(
          {
            "_id": f"{pid_of[(town['name'], p_index)]}-{attr}-{code}",
            "lang": lang,
            "code": code,
            "query": TEMPLATES[attr][code].format(x=town["name"]),
            "title": town["name"],
            "text": text,
          }
        )

  # Few-shot XOR-layout training pairs: a handful per language, from training towns.
  xor_train = []
  for code in LANGUAGES:
    pool = [(t, a) for t in train_towns for a in attributes]  # fewer for a tiny world
    picks = rng.sample(pool, min(fewshot_per_language, len(pool)))
    for town, attr in picks:
      p_index = PASSAGE_OF[attr]
      xor_train.append(
        {
          "id": f"train-{code}-{town['name']}-{attr}",
          "lang": code,
          "question": TEMPLATES[attr][code].format(x=town["name"]),
          "answers": [answer_of(town, attr)],
          "positive": {
            "id": pid_of[(town["name"], p_index)],
            "title": town["name"],
            "text": passages_of(town)[p_index],
          },
        }
      )

  dev, qrels = [], []
  codes = list(LANGUAGES)
  for town in dev_towns:
    for attr in attributes:
      for code in rng.sample(codes, dev_languages_per_question):
        qid = f"dev-{code}-{town['name']}-{attr}"
        dev.append(
          {
            "id": qid,
            "lang": code,
            "question": TEMPLATES[attr][code].format(x=town["name"]),
            "answers": [answer_of(town, attr)],
          }
        )
        qrels.append(f"{qid} 0 {pid_of[(town['name'], PASSAGE_OF[attr])]} 1")

  paths = {
    "corpus": out / "corpus.tsv",
    "xor_train": out / "xor" / "train.jsonl",
    "dev": out / "xor" / "dev.jsonl",
    "qrels": out / "xor" / "dev.qrels",
    "swim_ir_dir": out / "swim_ir" / "cross_lingual",
    "readme": out / "README.md",
  }
  _atomic_write_text(paths["corpus"], "\n".join(corpus_rows) + "\n")
  for code, rows in swim.items():
    _atomic_write_text(paths["swim_ir_dir"] / f"{code}.jsonl", _jsonl(rows))
  _atomic_write_text(paths["xor_train"], _jsonl(xor_train))
  _atomic_write_text(paths["dev"], _jsonl(dev))
  _atomic_write_text(paths["qrels"], "\n".join(qrels) + "\n")
  _atomic_write_text(
    paths["readme"],
    (
      "# xtr_jax shipped sample (synthetic)\n\n"
      f"{len(towns)} invented towns, {len(corpus_rows) - 1} English passages, "
      f"{sum(len(v) for v in swim.values())} SWIM-IR-layout training pairs in "
      f"{', '.join(LANGUAGES)}, {len(xor_train)} few-shot XOR pairs, {len(dev)} dev queries.\n"
      "Written by xtr_jax.experiments.sample_data (seeded); not real data.\n"
    ),
  )
  return {k: str(v) for k, v in paths.items()}


def main(argv: list[str] | None = None) -> int:
  """Writes the sample on its own: a small multilingual corpus with queries, qrels and
  training pairs to try the other subcommands on in seconds, without running the demo."""
  from xtr_jax.cli import ArgumentParser, positive_int  # noqa: PLC0415

  parser = ArgumentParser(prog="xtr-jax sample-data", description=__doc__.split("\n")[0])
  parser.add_argument("--output", required=True, help="Folder to write (created).")
  parser.add_argument(
    "--num_towns", type=positive_int, default=120, help="Invented towns, two passages each."
  )
  parser.add_argument("--seed", type=int, default=17, help="Seed of the invented world.")
  args = parser.parse_args(argv)
  paths = write_sample(args.output, num_towns=args.num_towns, seed=args.seed)
  print(pathlib.Path(paths["readme"]).read_text(encoding="utf-8").split("\n\n", 1)[1].strip())
  for key in ("corpus", "swim_ir_dir", "xor_train", "dev", "qrels"):
    print(f"  {key}: {paths[key]}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
