"""Language codes and names of SWIM-IR and XOR-TyDi (from the SWIM-IR data card and XOR paper)."""

from __future__ import annotations

# ISO code -> English name, used in xQG prompts ("Generate a Japanese question ...").
LANGUAGE_NAMES: dict[str, str] = {
  "ar": "Arabic",
  "as": "Assamese",
  "bho": "Bhojpuri",
  "bn": "Bengali",
  "de": "German",
  "el": "Greek",
  "en": "English",
  "es": "Spanish",
  "fa": "Persian",
  "fi": "Finnish",
  "fr": "French",
  "gom": "Konkani",
  "gu": "Gujarati",
  "hi": "Hindi",
  "id": "Indonesian",
  "ja": "Japanese",
  "kn": "Kannada",
  "ko": "Korean",
  "mai": "Maithili",
  "ml": "Malayalam",
  "mni": "Manipuri",
  "mr": "Marathi",
  "or": "Odia",
  "pa": "Punjabi",
  "ps": "Pashto",
  "ro": "Romanian",
  "ru": "Russian",
  "sa": "Sanskrit",
  "sw": "Swahili",
  "ta": "Tamil",
  "te": "Telugu",
  "th": "Thai",
  "tr": "Turkish",
  "ur": "Urdu",
  "vi": "Vietnamese",
  "yo": "Yoruba",
  "zh": "Chinese",
}

# The 18 MIRACL languages: SWIM-IR's monolingual setting (query and passage in the language).
SWIM_IR_MONOLINGUAL: tuple[str, ...] = (
  "ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi",
  "id", "ja", "ko", "ru", "sw", "te", "th", "yo", "zh",
)  # fmt: skip

# The 15 Indo-European languages added from XTREME-UP (cross-lingual only).
SWIM_IR_INDIC: tuple[str, ...] = (
  "as", "bho", "gom", "gu", "kn", "mai", "ml", "mni", "mr", "or", "pa", "ps", "sa", "ta", "ur",
)  # fmt: skip

# Cross-lingual setting: query in the language, passage from English Wikipedia (TyDi-QA split).
SWIM_IR_CROSS_LINGUAL: tuple[str, ...] = (
  tuple(c for c in SWIM_IR_MONOLINGUAL if c != "en") + SWIM_IR_INDIC
)

# All 33 SWIM-IR languages (the data card's count, English included).
SWIM_IR_LANGUAGES: tuple[str, ...] = tuple(sorted(set(SWIM_IR_MONOLINGUAL) | set(SWIM_IR_INDIC)))

# XQuAD languages found in the project's real-data layout but not in SWIM-IR; tasks are also
# registered for them so the 13-language real-data mixture runs.
EXTRA_CROSS_LINGUAL: tuple[str, ...] = ("el", "ro", "tr", "vi")

SETTINGS: dict[str, tuple[str, ...]] = {
  "cross_lingual": SWIM_IR_CROSS_LINGUAL,
  "monolingual": SWIM_IR_MONOLINGUAL,
}

# XOR-Retrieve query languages.
XOR_LANGUAGES: tuple[str, ...] = ("ar", "bn", "fi", "ja", "ko", "ru", "te")


def language_name(code: str) -> str:
  """English name of an ISO code, with an error that lists the known codes."""
  try:
    return LANGUAGE_NAMES[code]
  except KeyError:
    raise ValueError(
      f"unknown language code {code!r}; known codes: {', '.join(sorted(LANGUAGE_NAMES))}"
    ) from None


def check_setting(setting: str, code: str | None = None) -> None:
  """Raises a ValueError naming the valid settings / languages when the pair is unknown."""
  if setting not in SETTINGS:
    raise ValueError(f"unknown SWIM-IR setting {setting!r}; valid settings: {', '.join(SETTINGS)}")
  if code is not None and code not in SETTINGS[setting]:
    raise ValueError(
      f"language {code!r} is not in SWIM-IR {setting}; valid languages: "
      f"{', '.join(SETTINGS[setting])}"
    )
