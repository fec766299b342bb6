"""Generation settings: the fields of transformers' ``GenerationConfig`` that edgetf implements, and how
a pipeline resolves them (call options > construction options > task_specific_params > the bundle's
``generation_config.json`` > the pipeline's own defaults > global defaults), as transformers does.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import InvalidInputError


@dataclass
class GenerationConfig:
    """The generation parameters edgetf understands; defaults are transformers' global defaults."""

    # length
    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    early_stopping: bool | str = False
    # strategy
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    use_cache: bool = True
    # logits shaping
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    typical_p: float | None = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: list[list[int]] | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    remove_invalid_values: bool = False
    renormalize_logits: bool = False
    stop_strings: str | list[str] | None = None
    # special tokens
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | list[int] | None = None
    # keys read from generation_config.json that edgetf keeps but does not act on
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationConfig:
        """From a generation_config.json dict; unknown keys land in ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        config = cls()
        for key, value in data.items():
            if key in known:
                setattr(config, key, value)
            else:
                config.extra[key] = value
        return config

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> GenerationConfig:
        """What transformers derives from config.json when a model has no generation_config.json."""
        known = {f.name for f in fields(cls)} - {"extra"}
        defaults = cls()
        data = {}
        sources = [config]
        decoder = config.get("decoder")
        if isinstance(decoder, Mapping):  # composite models: the decoder's fields count too
            sources.append(decoder)
        for source in sources:
            for key in known:
                if key in source and source[key] != getattr(defaults, key):
                    data.setdefault(key, source[key])
        return cls.from_dict(data)

    def copy(self) -> GenerationConfig:
        return dataclasses.replace(self, extra=dict(self.extra))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return data

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the known fields among ``kwargs``; return the others (as transformers' ``update``)."""
        known = {f.name for f in fields(self)} - {"extra"}
        unused = {}
        for key, value in kwargs.items():
            if key in known:
                setattr(self, key, value)
            else:
                unused[key] = value
        return unused

    # -- derived values ----------------------------------------------------------------------------
    @property
    def eos_ids(self) -> list[int]:
        """EOS ids as a list ([] when there is none)."""
        eos = self.eos_token_id
        if eos is None:
            return []
        return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]

    @property
    def pad_id(self) -> int | None:
        """pad_token_id, else the first EOS id (transformers' rule for open-ended generation)."""
        if self.pad_token_id is not None:
            return int(self.pad_token_id)
        eos = self.eos_ids
        return eos[0] if eos else None

    def mode(self) -> str:
        """greedy | sample | beam | beam_sample."""
        if self.num_beams > 1:
            return "beam_sample" if self.do_sample else "beam"
        return "sample" if self.do_sample else "greedy"

    def validate(self) -> None:
        """Reject values transformers rejects, with an InvalidInputError naming the option."""

        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")

        if self.max_new_tokens is not None:
            if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool):
                raise InvalidInputError(f"max_new_tokens must be an integer > 0, got {self.max_new_tokens!r}")
            if self.max_new_tokens <= 0:
                raise InvalidInputError(f"max_new_tokens must be greater than 0, but is {self.max_new_tokens}")
        if self.max_length is not None:
            positive_int("max_length", self.max_length)
        positive_int("min_length", self.min_length, 0)
        if self.min_new_tokens is not None:
            positive_int("min_new_tokens", self.min_new_tokens, 0)
        positive_int("num_beams", self.num_beams)
        positive_int("num_return_sequences", self.num_return_sequences)
        if not isinstance(self.do_sample, bool):
            raise InvalidInputError(f"do_sample must be True or False, got {self.do_sample!r}")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise InvalidInputError(
                f"greedy search (do_sample=False, num_beams=1) returns one sequence per input; "
                f"num_return_sequences={self.num_return_sequences} needs do_sample=True or num_beams >= "
                f"{self.num_return_sequences}"
            )
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise InvalidInputError(
                f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams})"
            )
        if self.early_stopping not in (True, False, "never"):
            raise InvalidInputError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if not _is_number(self.length_penalty):
            raise InvalidInputError(f"length_penalty must be a number, got {self.length_penalty!r}")
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise InvalidInputError(f"repetition_penalty must be a number > 0, got {self.repetition_penalty!r}")
        positive_int("no_repeat_ngram_size", self.no_repeat_ngram_size or 0, 0)
        if self.do_sample:
            if not _is_number(self.temperature) or self.temperature <= 0:
                raise InvalidInputError(
                    f"temperature must be a number > 0 when do_sample=True, got {self.temperature!r} "
                    "(use do_sample=False for greedy decoding)"
                )
            if self.top_k is not None:
                positive_int("top_k", self.top_k, 0)
            if self.top_p is not None and (not _is_number(self.top_p) or not 0.0 <= self.top_p <= 1.0):
                raise InvalidInputError(f"top_p must be a number in [0, 1], got {self.top_p!r}")
            if self.min_p is not None and (not _is_number(self.min_p) or not 0.0 <= self.min_p <= 1.0):
                raise InvalidInputError(f"min_p must be a number in [0, 1], got {self.min_p!r}")
            if self.typical_p is not None and (not _is_number(self.typical_p) or not 0.0 < self.typical_p <= 1.0):
                raise InvalidInputError(f"typical_p must be a number in (0, 1], got {self.typical_p!r}")
        if self.bad_words_ids is not None and (
            not isinstance(self.bad_words_ids, list)
            or not self.bad_words_ids
            or not all(
                isinstance(seq, list) and seq and all(isinstance(t, int) and t >= 0 for t in seq)
                for seq in self.bad_words_ids
            )
        ):
            raise InvalidInputError(
                f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {self.bad_words_ids!r}"
            )
        if self.stop_strings is not None:
            stops = [self.stop_strings] if isinstance(self.stop_strings, str) else self.stop_strings
            if not isinstance(stops, list) or not stops or not all(isinstance(s, str) and s for s in stops):
                raise InvalidInputError(
                    f"stop_strings must be a non-empty str or list of str, got {self.stop_strings!r}"
                )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_GLOBAL = GenerationConfig()


def _base_version(version: Any) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", str(version or "0"))[:3]
    return tuple(int(n) for n in numbers) or (0,)


def merge_model_defaults(
    config: GenerationConfig, model: GenerationConfig, *, always_merge: bool = False
) -> GenerationConfig:
    """Fields of ``config`` still at the global default take the model's non-default value.

    transformers does this when a pipeline passes its own generation config to ``generate`` and the
    model's generation_config.json was written by transformers >= 4.50; for older files only the
    special token ids are filled in. ``always_merge`` merges whatever version wrote the file (the ASR
    pipeline starts from the model's own generation config).
    """
    merged = config.copy()
    if always_merge or _base_version(model.extra.get("transformers_version")) >= (4, 50):
        for f in fields(GenerationConfig):
            if f.name == "extra":
                continue
            global_value = getattr(_GLOBAL, f.name)
            model_value = getattr(model, f.name)
            if getattr(merged, f.name) == global_value and model_value != global_value:
                setattr(merged, f.name, model_value)
        if merged.temperature == 0.0:
            merged.do_sample = False
    else:
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            if getattr(merged, name) is None:
                setattr(merged, name, getattr(model, name))
    return merged


def pipeline_generation_config(
    model: GenerationConfig,
    pipeline_defaults: Mapping[str, Any],
    construct_options: Mapping[str, Any],
    task_params: Mapping[str, Any] | None,
    tokenizer_pad_id: int | None,
    *,
    always_merge: bool = False,
) -> GenerationConfig:
    """The generation config a transformers pipeline holds after construction.

    model: the bundle's generation_config.json; pipeline_defaults: the pipeline class defaults
    (e.g. max_new_tokens=256, num_beams=4); construct_options: generation options given when the
    pipeline was built; task_params: ``task_specific_params[task]`` without its ``prefix``.
    """
    defaults = GenerationConfig()
    defaults.update(**pipeline_defaults)
    config = merge_model_defaults(defaults, model, always_merge=always_merge)
    config.update(**construct_options)
    default_new = pipeline_defaults.get("max_new_tokens")
    if (
        default_new is not None
        and config.max_new_tokens == default_new
        and config.max_length is not None
        and config.max_length != _GLOBAL.max_length
    ):
        config.max_new_tokens = None  # a model-specific max_length wins over the pipeline's length default
    if task_params:
        config.update(**{k: v for k, v in task_params.items() if k != "prefix"})
    if tokenizer_pad_id is not None and config.pad_token_id is None:
        config.pad_token_id = tokenizer_pad_id
    return config


def call_generation_config(
    base: GenerationConfig, model: GenerationConfig, call_options: Mapping[str, Any]
) -> GenerationConfig:
    """What ``generate(generation_config=base, **call_options)`` uses (before length preparation)."""
    config = merge_model_defaults(base, model)
    unused = config.update(**call_options)
    if unused:
        raise InvalidInputError(
            f"unknown generation option(s) {sorted(unused)}; accepted: "
            f"{sorted(f.name for f in fields(GenerationConfig) if f.name != 'extra')}"
        )
    return config


GENERATION_OPTIONS: tuple[str, ...] = tuple(f.name for f in fields(GenerationConfig) if f.name != "extra")
