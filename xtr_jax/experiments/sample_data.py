"""The shipped multilingual sample: a small synthetic world in the SWIM-IR and XOR layouts.

The demo must run on a fresh machine with nothing downloaded, so the project writes its own
data. Passages are English "Wikipedia-like" paragraphs about invented towns; questions are in
the seven XOR-Retrieve languages (ar bn fi ja ko ru te: five scripts). Everything is derived
from a seed, so the sample is the same on every machine.

It is built so that matching surface words is not enough, as in XOR-Retrieve itself:

- Three passages per town, written from near-identical templates: history/geography and
  culture/civic life answer the questions; a transport passage answers none, but names the
  town twice, mentions two neighbouring towns, and carries near-miss facts (the year the
  station opened, passengers a day) beside the founding year and the population.
- Names come in families that share a stem ("Soudovom", "Soudolair", "Soudobein", ...),
  towns of a region often share a river, and some towns share their whole name with a town
  in another region (as real place names do); a question about such a town says which one
  in its own language ("Briputeim (Побережье)"), so only the meaning of the region's name
  tells the two apart, and every passage of the town names its region.
- A share of the questions in ar bn ja ko ru te (``NATIVE_NAME_SHARE``) name the town in
  their own script, a regular transliteration of its syllables ("Briputeim" is "Брипутейм",
  "ブリプテイム", "브리푸테임", ...), as real XOR questions do; Finnish and Russian inflect
  the name ("Briputeimin väkiluku", "население Брипутейма"), and Japanese and Korean glue
  particles to it.
- Most questions do not name the town at all (``DESCRIBED_SHARE``): they pick it out by
  another fact of the passage that answers them, a fact only that town has ("What is the
  population of the town founded in 1375?", "What is the town whose mayor is Noukrour Stoubusi
  known for?"), while every other history passage gives a founding year and every
  transport passage the year its station opened. Mayor questions, and those whose fact another town
  shares, name the town. Questions share no other word with the passages: they are in other
  languages.

So a word-matching baseline finds the gold passage only when the question writes the name or
the number as the passage does, and a multilingual encoder has to match the question's
meaning (which fact, which number) rather than one invented name: at the demo's 240 towns
multilingual-E5-small zero-shot is clearly below Recall@20 100, and BM25 further below
(results/sample_difficulty.md has both, per size and knob).

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

import collections
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

# Question templates per attribute and language. {x}: the town as the question names it
# (Latin letters or the language's script, with the region when the name is shared); {xg}:
# its genitive (fi, ru); {top}: the Korean topic particle that fits its last sound.
TEMPLATES: dict[str, dict[str, str]] = {
  "founded": {
    "en": "When was {x} founded?",
    "ar": "متى تأسست {x}؟",
    "bn": "{x} কবে প্রতিষ্ঠিত হয়েছিল?",
    "fi": "Milloin {x} perustettiin?",
    "ja": "{x}はいつ設立されましたか？",
    "ko": "{x}{top} 언제 설립되었습니까?",
    "ru": "Когда был основан {x}?",
    "te": "{x} ఎప్పుడు స్థాపించబడింది?",
  },
  "river": {
    "en": "On which river does {x} lie?",
    "ar": "على أي نهر تقع {x}؟",
    "bn": "{x} কোন নদীর তীরে অবস্থিত?",
    "fi": "Minkä joen varrella {x} sijaitsee?",
    "ja": "{x}はどの川のほとりにありますか？",
    "ko": "{x}{top} 어느 강에 위치해 있습니까?",
    "ru": "На какой реке расположен {x}?",
    "te": "{x} ఏ నది ఒడ్డున ఉంది?",
  },
  "population": {
    "en": "What is the population of {x}?",
    "ar": "كم عدد سكان {x}؟",
    "bn": "{x}-এর জনসংখ্যা কত?",
    "fi": "Mikä on {xg} väkiluku?",
    "ja": "{x}の人口は何人ですか？",
    "ko": "{x}의 인구는 얼마입니까?",
    "ru": "Каково население {xg}?",
    "te": "{x} జనాభా ఎంత?",
  },
  "known_for": {
    "en": "What is {x} known for?",
    "ar": "بماذا تشتهر {x}؟",
    "bn": "{x} কিসের জন্য বিখ্যাত?",
    "fi": "Mistä {x} tunnetaan?",
    "ja": "{x}は何で知られていますか？",
    "ko": "{x}{top} 무엇으로 유명합니까?",
    "ru": "Чем известен {x}?",
    "te": "{x} దేనికి ప్రసిద్ధి చెందింది?",
  },
  "mayor": {
    "en": "Who is the mayor of {x}?",
    "ar": "من هو عمدة {x}؟",
    "bn": "{x}-এর মেয়র কে?",
    "fi": "Kuka on {xg} pormestari?",
    "ja": "{x}の市長は誰ですか？",
    "ko": "{x}의 시장은 누구입니까?",
    "ru": "Кто мэр {xg}?",
    "te": "{x} మేయర్ ఎవరు?",
  },
}
# Described questions: the town is not named but picked out by another fact of the passage
# that answers (attribute -> that fact), so only the question's meaning finds the passage.
# {d}: the fact (a year, a population, the mayor's name). Mayor questions always name the town.
DESCRIBED_BY = {
  "founded": "population",
  "population": "founded",
  "river": "founded",
  "known_for": "mayor",
}
DESCRIBED_TEMPLATES: dict[str, dict[str, str]] = {
  "founded": {
    "en": "When was the town with a population of {d} founded?",
    "ar": "متى تأسست المدينة التي يبلغ عدد سكانها {d}؟",
    "bn": "{d} জনসংখ্যার শহরটি কবে প্রতিষ্ঠিত হয়েছিল?",
    "fi": "Milloin perustettiin kaupunki, jonka väkiluku on {d}?",
    "ja": "人口{d}人の町はいつ設立されましたか？",
    "ko": "인구 {d}명의 도시는 언제 설립되었습니까?",
    "ru": "Когда был основан город с населением {d}?",
    "te": "{d} జనాభా ఉన్న పట్టణం ఎప్పుడు స్థాపించబడింది?",
  },
  "population": {
    "en": "What is the population of the town founded in {d}?",
    "ar": "كم عدد سكان المدينة التي تأسست عام {d}؟",
    "bn": "{d} সালে প্রতিষ্ঠিত শহরটির জনসংখ্যা কত?",
    "fi": "Mikä on vuonna {d} perustetun kaupungin väkiluku?",
    "ja": "{d}年に設立された町の人口は何人ですか？",
    "ko": "{d}년에 설립된 도시의 인구는 얼마입니까?",
    "ru": "Каково население города, основанного в {d} году?",
    "te": "{d}లో స్థాపించబడిన పట్టణం జనాభా ఎంత?",
  },
  "river": {
    "en": "On which river lies the town founded in {d}?",
    "ar": "على أي نهر تقع المدينة التي تأسست عام {d}؟",
    "bn": "{d} সালে প্রতিষ্ঠিত শহরটি কোন নদীর তীরে অবস্থিত?",
    "fi": "Minkä joen varrella sijaitsee vuonna {d} perustettu kaupunki?",
    "ja": "{d}年に設立された町はどの川のほとりにありますか？",
    "ko": "{d}년에 설립된 도시는 어느 강에 위치해 있습니까?",
    "ru": "На какой реке расположен город, основанный в {d} году?",
    "te": "{d}లో స్థాపించబడిన పట్టణం ఏ నది ఒడ్డున ఉంది?",
  },
  "known_for": {
    "en": "What is the town whose mayor is {d} known for?",
    "ar": "بماذا تشتهر المدينة التي عمدتها {d}؟",
    "bn": "যে শহরের মেয়র {d}, সেটি কিসের জন্য বিখ্যাত?",
    "fi": "Mistä tunnetaan kaupunki, jonka pormestari on {d}?",
    "ja": "{d}が市長を務める町は何で知られていますか？",
    "ko": "시장이 {d}인 도시는 무엇으로 유명합니까?",
    "ru": "Чем известен город, мэр которого {d}?",
    "te": "{d} మేయర్‌గా ఉన్న పట్టణం దేనికి ప్రసిద్ధి చెందింది?",
  },
}
# Which of a town's passages answers each attribute; its third (transport) answers none.
PASSAGE_OF = {"founded": 0, "river": 0, "population": 0, "known_for": 1, "mayor": 1}
PASSAGES_PER_TOWN = 3

# The mix that sets how far surface matching gets (module docstring; BM25 numbers there).
NATIVE_NAME_SHARE = 0.3  # of the questions in ar bn ja ko ru te: the town in their script
HOMONYM_SHARE = 0.1  # chance that a new town takes the name of one in another region
FAMILY_SIZE = 5  # towns per name stem, on average
SHARED_RIVER_SHARE = 0.4  # chance that a new town lies on a river of its region already used
DESCRIBED_SHARE = 1.0  # of the questions with a DESCRIBED_BY fact: no name, that fact instead

# Regions: English name (in titles and ids) -> the passages' phrase ("en") and the label a
# question in each language uses to say which of two namesakes it means.
REGIONS: dict[str, dict[str, str]] = {
  "Highlands": {
    "en": "the Highlands",
    "ar": "المرتفعات",
    "bn": "পার্বত্য অঞ্চল",
    "fi": "Ylänkö",
    "ja": "高地地方",
    "ko": "고원 지방",
    "ru": "Нагорье",
    "te": "పర్వత ప్రాంతం",
  },
  "Coastlands": {
    "en": "the Coastlands",
    "ar": "الساحل",
    "bn": "উপকূল অঞ্চল",
    "fi": "Rannikko",
    "ja": "沿岸地方",
    "ko": "해안 지방",
    "ru": "Побережье",
    "te": "తీర ప్రాంతం",
  },
  "Lake District": {
    "en": "the Lake District",
    "ar": "منطقة البحيرات",
    "bn": "হ্রদ অঞ্চল",
    "fi": "Järviseutu",
    "ja": "湖水地方",
    "ko": "호수 지방",
    "ru": "Озёрный край",
    "te": "సరస్సుల ప్రాంతం",
  },
  "Great Valley": {
    "en": "the Great Valley",
    "ar": "الوادي الكبير",
    "bn": "বড় উপত্যকা",
    "fi": "Iso laakso",
    "ja": "大渓谷",
    "ko": "큰 계곡",
    "ru": "Большая долина",
    "te": "పెద్ద లోయ",
  },
  "Plains": {
    "en": "the Plains",
    "ar": "السهول",
    "bn": "সমভূমি",
    "fi": "Tasanko",
    "ja": "平野部",
    "ko": "평야 지대",
    "ru": "Равнина",
    "te": "మైదాన ప్రాంతం",
  },
  "Forest Country": {
    "en": "the Forest Country",
    "ar": "بلاد الغابات",
    "bn": "বনাঞ্চল",
    "fi": "Metsämaa",
    "ja": "森林地方",
    "ko": "숲 지방",
    "ru": "Лесной край",
    "te": "అటవీ ప్రాంతం",
  },
}

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

# A name is syllables (onset, vowel) and a coda; each script writes those parts its own way.
Parts = tuple[tuple[tuple[str, str], ...], str]


def _name_parts(rng: random.Random, syllables: int) -> Parts:
  return tuple((rng.choice(_ONSETS), rng.choice(_VOWELS)) for _ in range(syllables)), rng.choice(
    _CODAS
  )


def _latin(parts: Parts) -> str:
  syllables, coda = parts
  return ("".join(o + v for o, v in syllables) + coda).capitalize()


def _coda_letters(coda: str) -> tuple[str, ...]:
  return ("th",) if coda == "th" else tuple(coda)


# Alphabets: a letter (or two) per Latin consonant and vowel.
_CYRILLIC = dict(
  zip("bdklmnprstvz", "бдклмнпрствз", strict=True),
  th="т",
  a="а",
  e="е",
  i="и",
  o="о",
  u="у",
  ai="ай",
  ei="ей",
  ou="оу",
)
_ARABIC = dict(
  zip("bdklmnprstvz", "بدكلمنبرستفز", strict=True),
  th="ث",
  a="ا",
  e="ي",
  i="ي",
  o="و",
  u="و",
  ai="اي",
  ei="ي",
  ou="و",
)


def _alphabet(parts: Parts, letters: dict[str, str]) -> str:
  syllables, coda = parts
  word = "".join("".join(letters[c] for c in o) + letters[v] for o, v in syllables)
  word += "".join(letters[c] for c in _coda_letters(coda))
  return word[0].upper() + word[1:]


# Abugidas: consonant letters, dependent vowel signs, and the virama that joins a cluster.
_BENGALI = (
  dict(zip("bdklmnprstvz", "বডকলমনপরসটভজ", strict=True), th="থ"),
  dict(a="া", e="ে", i="ি", o="ো", u="ু", ai="াই", ei="েই", ou="ৌ"),
  "্",
  False,  # a final consonant is written bare
)
_TELUGU = (
  dict(zip("bdklmnprstvz", "బడకలమనపరసటవజ", strict=True), th="త"),
  dict(a="ా", e="ె", i="ి", o="ో", u="ు", ai="ై", ei="ే", ou="ౌ"),
  "్",
  True,  # ... with a virama
)


def _abugida(parts: Parts, script: tuple) -> str:
  consonants, signs, virama, final_virama = script
  syllables, coda = parts
  word = "".join(virama.join(consonants[c] for c in o) + signs[v] for o, v in syllables)
  if coda:
    word += virama.join(consonants[c] for c in _coda_letters(coda))
    word += virama if final_virama else ""
  return word


# Syllabaries: a diphthong is its first vowel plus a kana/Hangul glide; a cluster's first
# consonant gets its own syllable (Japanese "ブ", Korean "브").
_KANA = {
  "b": "バビブベボ",
  "k": "カキクケコ",
  "l": "ラリルレロ",
  "m": "マミムメモ",
  "n": "ナニヌネノ",
  "p": "パピプペポ",
  "r": "ラリルレロ",
  "s": "サシスセソ",
  "z": "ザジズゼゾ",
}
_KANA_SPECIAL = {
  "d": ["ダ", "ディ", "ドゥ", "デ", "ド"],
  "t": ["タ", "ティ", "トゥ", "テ", "ト"],
  "v": ["ヴァ", "ヴィ", "ヴ", "ヴェ", "ヴォ"],
}
_KANA_CLUSTER = dict(b="ブ", d="ド", k="ク", s="ス", t="ト")
_KANA_CODA = {
  "": "",
  "n": "ン",
  "r": "ル",
  "l": "ル",
  "s": "ス",
  "m": "ム",
  "sk": "スク",
  "th": "ス",
}
_KANA_GLIDE = dict(i="イ", u="ー")


def _katakana(parts: Parts) -> str:
  syllables, coda = parts
  word = ""
  for onset, vowel in syllables:
    if len(onset) == 2:
      word += _KANA_CLUSTER[onset[0]]
    row = _KANA_SPECIAL.get(onset[-1]) or list(_KANA[onset[-1]])
    word += row["aiueo".index(vowel[0])] + (_KANA_GLIDE[vowel[1]] if len(vowel) == 2 else "")
  return word + _KANA_CODA[coda]


_HANGUL_INITIAL = dict(b=7, d=3, k=15, l=5, m=6, n=2, p=17, r=5, s=9, t=16, v=7, z=12)
_HANGUL_MEDIAL = dict(a=0, e=5, i=20, o=8, u=13)
_HANGUL_EU, _HANGUL_IEUNG = 18, 11  # the vowel of a bare consonant; the silent initial
# Coda -> (consonants written as syllables of their own, final consonant of the last block).
_HANGUL_CODA = {
  "": ("", 0),
  "n": ("", 4),
  "l": ("", 8),
  "m": ("", 16),
  "r": ("r", 0),
  "s": ("s", 0),
  "sk": ("sk", 0),
  "th": ("s", 0),
}


def _hangul(parts: Parts) -> str:
  syllables, coda = parts
  blocks = []  # [initial, medial, final] per syllable block
  for onset, vowel in syllables:
    if len(onset) == 2:
      blocks.append([_HANGUL_INITIAL[onset[0]], _HANGUL_EU, 0])
    blocks.append([_HANGUL_INITIAL[onset[-1]], _HANGUL_MEDIAL[vowel[0]], 0])
    if len(vowel) == 2:
      blocks.append([_HANGUL_IEUNG, _HANGUL_MEDIAL[vowel[1]], 0])
  extra, final = _HANGUL_CODA[coda]
  blocks[-1][2] = final
  blocks += [[_HANGUL_INITIAL[c], _HANGUL_EU, 0] for c in extra]
  return "".join(chr(0xAC00 + (i * 21 + m) * 28 + f) for i, m, f in blocks)


# How each non-Latin-script language writes a town's name (Finnish keeps the Latin one).
SCRIPT_OF = {
  "ar": lambda p: _alphabet(p, _ARABIC),
  "bn": lambda p: _abugida(p, _BENGALI),
  "ja": _katakana,
  "ko": _hangul,
  "ru": lambda p: _alphabet(p, _CYRILLIC),
  "te": lambda p: _abugida(p, _TELUGU),
}


def name_in_script(town: dict, code: str) -> str:
  """The town's name as a question in ``code`` writes it in that language's own script."""
  to_script = SCRIPT_OF.get(code)
  return to_script(town["parts"]) if to_script else town["name"]


def mayor_in_script(town: dict, code: str) -> str:
  """The mayor's first and last name in ``code``'s script (Latin for Finnish)."""
  to_script = SCRIPT_OF.get(code, _latin)
  return " ".join(to_script(parts) for parts in town["mayor_parts"])


def _genitive(code: str, name: str, native: bool) -> str:
  if code == "fi":  # Lanor -> Lanorin, Kesta -> Kestan
    return name + ("n" if name[-1] in "aeiouy" else "in")
  if code == "ru" and native:  # Ланор -> Ланора, Кеста -> Кесты; other vowels do not decline
    if name[-1] == "а":
      return name[:-1] + ("и" if name[-2:-1] in "кгхжшщч" else "ы")
    return name[:-1] + "я" if name[-1] == "й" else name + ("а" if name[-1] not in "еиоу" else "")
  return name


def _topic_particle(text: str) -> str:
  """Korean 은 after a final consonant, 는 after a vowel (of the last letter that is one)."""
  for ch in reversed(text):
    if "\uac00" <= ch <= "\ud7a3":
      return "은" if (ord(ch) - 0xAC00) % 28 else "는"
    if ch.isalpha():
      return "는" if ch.lower() in "aeiou" else "은"
  return "은"


def question(town: dict, attribute: str, code: str, native: bool = False) -> str:
  """The question about ``attribute`` of ``town`` in ``code``; ``native``: the town's name
  in the language's script. A town that shares its name is told apart by its region."""
  name = name_in_script(town, code) if native else town["name"]
  genitive = _genitive(code, name, native)
  if town["namesakes"]:
    label = REGIONS[town["region"]][code]
    label = f"（{label}）" if code == "ja" else f" ({label})"
    name, genitive = name + label, genitive + label
  return TEMPLATES[attribute][code].format(x=name, xg=genitive, top=_topic_particle(name))


def described_question(town: dict, attribute: str, code: str, native: bool = False) -> str:
  """The question about ``attribute`` that picks ``town`` out by its ``DESCRIBED_BY`` fact
  instead of its name (the mayor's name in the language's script when ``native``)."""
  fact = DESCRIBED_BY[attribute]
  value = mayor_in_script(town, code) if fact == "mayor" and native else town[fact]
  return DESCRIBED_TEMPLATES[attribute][code].format(d=value)


def make_world(num_towns: int = 120, seed: int = 17, family_size: int = FAMILY_SIZE) -> list[dict]:
  """Invented towns with attributes. A name is shared by at most two towns, in different
  regions (``namesakes``: True for both); ``key`` is unique and ``title`` tells them apart.
  ``family_size``: towns per name stem on average; larger families make names more alike."""
  if family_size < 1:
    raise ValueError(f"family_size: {family_size} is not a positive number of towns")
  rng = random.Random(seed)
  towns: list[dict] = []
  count: dict[str, int] = {}
  rivers: dict[str, list[str]] = {r: [] for r in REGIONS}
  # Name families: towns share a stem ("Lano-": Lanotrais, Lanobeth, ...), as place names do.
  stems = [_name_parts(rng, rng.choice([1, 2]))[0] for _ in range(max(1, num_towns // family_size))]
  while len(towns) < num_towns:
    region = rng.choice(list(REGIONS))
    parts = None
    if towns and rng.random() < HOMONYM_SHARE:
      pool = [t for t in towns if count[t["name"]] == 1 and t["region"] != region]
      parts = rng.choice(pool)["parts"] if pool else None
    if parts is None:
      ending, coda = _name_parts(rng, 1)
      parts = (rng.choice(stems) + ending, coda)
      if _latin(parts) in count or len(_latin(parts)) < 5:
        continue
    name = _latin(parts)
    count[name] = count.get(name, 0) + 1
    if rivers[region] and rng.random() < SHARED_RIVER_SHARE:
      river = rng.choice(rivers[region])
    else:
      river = _latin(_name_parts(rng, 2))
      rivers[region].append(river)
    mayor_parts = (_name_parts(rng, 2), _name_parts(rng, 3))
    founded = rng.randint(1100, 1950)
    towns.append(
      dict(
        name=name,
        parts=parts,
        region=region,
        river=river,
        founded=str(founded),
        population=f"{rng.randint(2, 400)},{rng.randint(0, 9)}00",
        known_for=rng.choice(_PRODUCTS),
        mayor=" ".join(_latin(p) for p in mayor_parts),
        mayor_parts=mayor_parts,
        station_opened=str(rng.randint(max(founded + 1, 1840), 2010)),
        passengers=f"{rng.randint(2, 90) * 100:,}",
      )
    )
  for town in towns:
    town["namesakes"] = count[town["name"]] > 1
    town["title"] = f"{town['name']} ({town['region']})" if town["namesakes"] else town["name"]
    town["key"] = town["title"].replace(" (", "-").replace(")", "").replace(" ", "")
    # Two neighbours on the railway, from the same region when it has them.
    same = [t["name"] for t in towns if t["region"] == town["region"] and t is not town]
    pool = same if len(same) >= 2 else [t["name"] for t in towns if t is not town]
    neighbours = rng.sample(pool, min(2, len(pool)))
    while len(neighbours) < 2:  # a tiny world: villages that are not towns of the sample
      neighbours.append(_latin(_name_parts(rng, 2)))
    town["neighbours"] = neighbours
  return towns


def passages_of(town: dict) -> tuple[str, str, str]:
  x = town
  region = REGIONS[x["region"]]["en"]
  history = (
    f"{x['name']} is a town in {region}, on the banks of the {x['river']} river. "
    f"It was founded in {x['founded']} and has a population of {x['population']}. "
    f"Travellers reach the town by the old road along the {x['river']}."
  )
  culture = (
    f"{x['name']} is known for {x['known_for']}, which draws visitors from across {region} "
    f"every year. The current mayor, {x['mayor']}, was elected by the town council. "
    f"Local schools teach the history of {x['known_for']}."
  )
  a, b = x["neighbours"]
  transport = (
    f"{x['name']} station, opened in {x['station_opened']}, is on the {x['region']} railway "
    f"between {a} and {b}. About {x['passengers']} passengers use it daily; buses link "
    f"{x['name']} with {a} every hour."
  )
  return history, culture, transport


def answer_of(town: dict, attribute: str) -> str:
  return town[attribute]


def _unique_facts(towns: list[dict]) -> dict[str, set[str]]:
  """Per describing fact, the values that only one town has: a described question must
  have one gold passage."""
  out = {}
  for fact in set(DESCRIBED_BY.values()):
    counts = collections.Counter(t[fact] for t in towns)
    out[fact] = {value for value, n in counts.items() if n == 1}
  return out


def _jsonl(rows: list[dict]) -> str:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_sample(
  out_dir: str | os.PathLike,
  num_towns: int = 120,
  dev_fraction: float = 0.25,
  dev_languages_per_question: int = 2,
  fewshot_per_language: int = 8,
  seed: int = 17,
  native_name_share: float = NATIVE_NAME_SHARE,
  family_size: int = FAMILY_SIZE,
  described_share: float = DESCRIBED_SHARE,
) -> dict[str, str]:
  """Writes the sample under ``out_dir`` and returns the paths of its files. The defaults are
  the shipped sample's; ``native_name_share``, ``family_size`` and ``described_share`` make it
  harder or easier (results/sample_difficulty.md measures them)."""
  for name, share in (
    ("native_name_share", native_name_share),
    ("described_share", described_share),
  ):
    if not 0.0 <= share <= 1.0:
      raise ValueError(f"{name}: {share} is not between 0 and 1")
  out = pathlib.Path(out_dir)
  rng = random.Random(seed + 1)
  script_rng = random.Random(seed + 2)  # which questions write the name in their script
  described_rng = random.Random(seed + 3)  # which questions describe the town instead
  towns = make_world(num_towns, seed, family_size)
  num_dev = max(1, int(round(num_towns * dev_fraction)))
  dev_towns, train_towns = towns[:num_dev], towns[num_dev:]
  unique = _unique_facts(towns)

  def ask(town: dict, attr: str, code: str) -> str:
    native = code in SCRIPT_OF and script_rng.random() < native_name_share
    if attr in DESCRIBED_BY and described_rng.random() < described_share:
      if town[DESCRIBED_BY[attr]] in unique[DESCRIBED_BY[attr]]:
        return described_question(town, attr, code, native)
    return question(town, attr, code, native)

  corpus_rows, pid_of = ["id\ttext\ttitle"], {}
  for t_index, town in enumerate(towns):
    for p_index, text in enumerate(passages_of(town)):
      pid = f"sample{t_index:04d}_{p_index}"
      pid_of[(town["key"], p_index)] = pid
      corpus_rows.append(f"{pid}\t{text}\t{town['title']}")

  attributes = list(TEMPLATES)
  swim: dict[str, list[dict]] = {code: [] for code in LANGUAGES}
  for town in train_towns:
    for attr in attributes:
      p_index = PASSAGE_OF[attr]
      text = passages_of(town)[p_index]
      for code, lang in LANGUAGES.items():
        swim[code].append(
          {
            "_id": f"{pid_of[(town['key'], p_index)]}-{attr}-{code}",
            "lang": lang,
            "code": code,
            "query": ask(town, attr, code),
            "title": town["title"],
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
          "id": f"train-{code}-{town['key']}-{attr}",
          "lang": code,
          "question": ask(town, attr, code),
          "answers": [answer_of(town, attr)],
          "positive": {
            "id": pid_of[(town["key"], p_index)],
            "title": town["title"],
            "text": passages_of(town)[p_index],
          },
        }
      )

  dev, qrels = [], []
  codes = list(LANGUAGES)
  for town in dev_towns:
    for attr in attributes:
      for code in rng.sample(codes, dev_languages_per_question):
        qid = f"dev-{code}-{town['key']}-{attr}"
        dev.append(
          {
            "id": qid,
            "lang": code,
            "question": ask(town, attr, code),
            "answers": [answer_of(town, attr)],
          }
        )
        qrels.append(f"{qid} 0 {pid_of[(town['key'], PASSAGE_OF[attr])]} 1")

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
  shared = sum(t["namesakes"] for t in towns)
  native = ", ".join(c for c in LANGUAGES if c in SCRIPT_OF)
  _atomic_write_text(
    paths["readme"],
    (
      "# xtr_jax shipped sample (synthetic)\n\n"
      f"{len(towns)} invented towns, {len(corpus_rows) - 1} English passages, "
      f"{sum(len(v) for v in swim.values())} SWIM-IR-layout training pairs in "
      f"{', '.join(LANGUAGES)}, {len(xor_train)} few-shot XOR pairs, {len(dev)} dev queries.\n"
      f"{PASSAGES_PER_TOWN} passages per town (history, culture: the answers; transport: "
      f"none), {shared} towns sharing their name with one in another region (their questions "
      f"name the region), about {native_name_share:.0%} of the questions in {native} naming "
      f"the town in their own script, about {described_share:.0%} of those about "
      f"{', '.join(DESCRIBED_BY)} picking the town out by another fact of the passage "
      "instead of its name.\n"
      "Written by xtr_jax.experiments.sample_data (seeded); not real data.\n"
    ),
  )
  return {k: str(v) for k, v in paths.items()}


def main(argv: list[str] | None = None) -> int:
  """Writes the sample on its own: a small multilingual corpus with queries, qrels and
  training pairs to try the other subcommands on in seconds, without running the demo."""
  from xtr_jax.cli import ArgumentParser, fraction, positive_int  # noqa: PLC0415

  parser = ArgumentParser(prog="xtr-jax sample-data", description=__doc__.split("\n")[0])
  parser.add_argument("--output", required=True, help="Folder to write (created).")
  parser.add_argument(
    "--num_towns",
    type=positive_int,
    default=120,
    help=f"Invented towns, {PASSAGES_PER_TOWN} passages each.",
  )
  parser.add_argument("--seed", type=int, default=17, help="Seed of the invented world.")
  parser.add_argument(
    "--native_name_share",
    type=fraction,
    default=NATIVE_NAME_SHARE,
    help="Share of the questions in ar bn ja ko ru te that write the town in their script.",
  )
  parser.add_argument(
    "--family_size",
    type=positive_int,
    default=FAMILY_SIZE,
    help="Towns per name stem on average (larger: more alike names).",
  )
  parser.add_argument(
    "--described_share",
    type=fraction,
    default=DESCRIBED_SHARE,
    help=f"Share of the questions about {', '.join(DESCRIBED_BY)} that do not name the town "
    "but give another fact of its passage (a year, a population, the mayor).",
  )
  args = parser.parse_args(argv)
  paths = write_sample(
    args.output,
    num_towns=args.num_towns,
    seed=args.seed,
    native_name_share=args.native_name_share,
    family_size=args.family_size,
    described_share=args.described_share,
  )
  print(pathlib.Path(paths["readme"]).read_text(encoding="utf-8").split("\n\n", 1)[1].strip())
  for key in ("corpus", "swim_ir_dir", "xor_train", "dev", "qrels"):
    print(f"  {key}: {paths[key]}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
