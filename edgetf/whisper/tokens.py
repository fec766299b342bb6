"""Whisper's vocabulary roles: special tokens as named properties, the language and task tables, the
Whisper fields of generation_config.json, and the decoder prompt (transformers' ``_retrieve_init_tokens``).

The prompt is ``<|startoftranscript|>`` + language + task (+ ``<|notimestamps|>`` without timestamps),
from the ``language``/``task`` options, else the generation config's ``forced_decoder_ids``; a
multilingual model with no language given detects it (the caller's ``detect``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BundleError, InvalidInputError
from ..text.tokenizer import TextTokenizer

# fmt: off
LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}
ALIASES: dict[str, str] = {
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht",
    "letzeburgesch": "lb", "pushto": "ps", "panjabi": "pa", "moldavian": "ro",
    "moldovan": "ro", "sinhalese": "si", "castilian": "es", "mandarin": "zh",
}
# fmt: on
TO_LANGUAGE_CODE: dict[str, str] = {**{name: code for code, name in LANGUAGES.items()}, **ALIASES}
TASKS = ("translate", "transcribe")


_TIMESTAMP_TEXT = re.compile(r"<\|(\d+\.\d+)\|>")


class WhisperTokens:
    """The special-token roles of a Whisper :class:`TextTokenizer` (as faster-whisper's tokenizer)."""

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer

        def need(token: str) -> int:
            found = tokenizer.token_to_id(token)
            if found is None:
                raise BundleError(f"the Whisper tokenizer has no {token} token")
            return found

        self._no_timestamps = need("<|notimestamps|>")
        self._sot = need("<|startoftranscript|>")
        self._sot_prev = tokenizer.token_to_id("<|startofprev|>")
        self._special = frozenset(tokenizer.all_special_ids)

    @property
    def sot(self) -> int:
        """<|startoftranscript|>, the first prompt token."""
        return self._sot

    @property
    def sot_prev(self) -> int | None:
        """<|startofprev|>, which opens a previous-text prompt (None when the vocabulary lacks it)."""
        return self._sot_prev

    @property
    def eot(self) -> int | None:
        """<|endoftext|>, the end of a transcript."""
        return self.tokenizer.token_to_id("<|endoftext|>")

    @property
    def no_timestamps(self) -> int:
        """<|notimestamps|>, the prompt's last token when no timestamps are wanted."""
        return self._no_timestamps

    @property
    def timestamp_begin(self) -> int:
        """<|0.00|>: ids from here on are timestamps, one per time-precision step."""
        return self._no_timestamps + 1

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special

    def language_token(self, code: str) -> int | None:
        """The id of ``<|code|>``, if the vocabulary has it."""
        return self.tokenizer.token_to_id(f"<|{code}|>")

    def language_of(self, token: int) -> str | None:
        """The language name of a language token id, else None."""
        text = self.tokenizer.decode([int(token)])
        return LANGUAGES.get(text[2:-2])

    def decode(self, ids: Sequence[int]) -> str:
        """WhisperTokenizerFast.decode(ids): text with timestamp markup removed."""
        return _TIMESTAMP_TEXT.sub("", self.tokenizer.decode([int(i) for i in ids]))

    def strip_prompt(self, ids: list[int]) -> list[int]:
        """Drop a <|startofprev|> prompt: keep from <|startoftranscript|> on (nothing if it is missing)."""
        if ids and ids[0] == self.sot_prev:
            return ids[ids.index(self.sot) :] if self.sot in ids else []
        return ids


@dataclass(frozen=True)
class WhisperSettings:
    """The Whisper fields of generation_config.json (kept in GenerationConfig.extra)."""

    no_timestamps_id: int | None
    lang_to_id: dict[str, int] | None
    task_to_id: dict[str, int] | None
    is_multilingual: bool | None
    forced_decoder_ids: list[list[Any]] | None
    max_initial_timestamp_index: int | None
    return_timestamps: bool
    language: str | None
    task: str | None

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> WhisperSettings:
        return cls(
            no_timestamps_id=extra.get("no_timestamps_token_id"),
            lang_to_id=extra.get("lang_to_id"),
            task_to_id=extra.get("task_to_id"),
            is_multilingual=extra.get("is_multilingual"),
            forced_decoder_ids=extra.get("forced_decoder_ids"),
            max_initial_timestamp_index=extra.get("max_initial_timestamp_index"),
            return_timestamps=bool(extra.get("return_timestamps", False)),
            language=extra.get("language"),
            task=extra.get("task"),
        )


def language_id(language: str, lang_to_id: Mapping[str, int]) -> int:
    """Id of a language given as a token (<|fr|>), a code (fr) or a name (french)."""
    if not isinstance(language, str):
        raise InvalidInputError(f"language must be a str such as 'en', 'english' or '<|en|>', got {language!r}")
    lowered = language.lower()
    if lowered in lang_to_id:
        token = lowered
    elif lowered in TO_LANGUAGE_CODE:
        token = f"<|{TO_LANGUAGE_CODE[lowered]}|>"
    elif lowered in LANGUAGES:
        token = f"<|{lowered}|>"
    else:
        accepted = list(LANGUAGES) if len(lowered) == 2 else list(TO_LANGUAGE_CODE)
        raise InvalidInputError(f"unsupported language {language!r}; use one of {accepted}")
    if token not in lang_to_id:
        raise InvalidInputError(f"{token} is not a language of this model (generation_config.json lang_to_id)")
    return int(lang_to_id[token])


def prompt_tokens(
    settings: WhisperSettings,
    start_id: int,
    *,
    language: str | None,
    task: str | None,
    return_timestamps: bool,
    detect: Callable[[], int],
) -> list[int]:
    """The decoder prompt (transformers' ``_retrieve_init_tokens``) for one input."""
    if settings.is_multilingual is False and (task is not None or language is not None):
        raise InvalidInputError("cannot set task or language for an English-only Whisper model")
    if language is not None and settings.lang_to_id is None:
        raise InvalidInputError("this model's generation_config.json has no lang_to_id: language cannot be set")
    if task is not None and settings.task_to_id is None:
        raise InvalidInputError("this model's generation_config.json has no task_to_id: task cannot be set")
    tokens: list[Any] = [start_id]
    if task is None and language is None and settings.forced_decoder_ids:
        forced = [list(pair) for pair in settings.forced_decoder_ids]
        if forced[0][0] == 1:
            position = 1
            while forced and forced[0][0] == position:
                tokens.append(forced.pop(0)[1])
                position += 1
            if forced:
                raise BundleError(f"forced_decoder_ids {settings.forced_decoder_ids} do not follow Whisper's prompt")
    language_undefined = len(tokens) <= 1 or tokens[1] is None
    lang: int | None = None
    if language is not None:
        lang = language_id(language, settings.lang_to_id or {})
    elif settings.lang_to_id is not None and language_undefined:
        lang = detect()
    if lang is not None:
        if len(tokens) > 1:
            tokens[1] = lang
        else:
            tokens.append(lang)
    task_ids = settings.task_to_id or {}
    if task is not None:
        if task not in TASKS:
            raise InvalidInputError(f"task {task!r} is not supported; use one of {list(TASKS)}")
        tokens.append(task_ids[task])
    elif language is not None and task_ids and not any(t in tokens for t in task_ids.values()):
        tokens.append(task_ids["transcribe"])
    no_ts = settings.no_timestamps_id
    if not return_timestamps and no_ts is not None and tokens[-1] != no_ts:
        tokens.append(no_ts)
    elif return_timestamps and tokens[-1] == no_ts:
        tokens = tokens[:-1]
    return [int(t) for t in tokens if t is not None]
