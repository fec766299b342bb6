"""The base of the generation pipelines (text-generation, text2text, summarization, translation).

:class:`GenerativePipeline` resolves generation options the way a transformers pipeline does (its
class defaults < the bundle's generation_config.json < task_specific_params < construction options <
call options); the subclasses tokenize, run :func:`edgetf.generation.generate` and decode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..batching import check_batch_size
from ..generation import GenerationConfig, call_generation_config, pipeline_generation_config
from ..generation.config import GENERATION_OPTIONS
from ..generation.search import as_rng
from ..text import TextTokenizer
from .base import UNSET, Pipeline, given


def model_generation_config(bundle: Any) -> GenerationConfig:
    """The bundle's generation_config.json, else what transformers derives from config.json."""
    data = bundle.read_json_optional("generation_config.json")
    if data is not None:
        return GenerationConfig.from_dict(data)
    return GenerationConfig.from_model_config(bundle.config)


def context_window(config: Mapping[str, Any]) -> int | None:
    """The decoder's number of positions (None for relative-position models such as T5)."""
    for key in ("n_positions", "max_position_embeddings", "max_target_positions"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


class GenerativePipeline(Pipeline):
    """Option handling shared by the generation pipelines.

    ``pipeline_options`` are the pipeline's own options; every transformers generation option
    (GenerationConfig field) is accepted too, plus ``seed`` (int or numpy Generator) for sampling.
    """

    pipeline_defaults: ClassVar[dict[str, Any]] = {}
    pipeline_options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = (*cls.pipeline_options, *GENERATION_OPTIONS, "seed", "batch_size")
        cls.options_accepted = dict.fromkeys(names, UNSET)

    def setup(self) -> None:
        self.tokenizer = TextTokenizer.from_bundle(self.bundle)
        self.model_generation = model_generation_config(self.bundle)
        task_params = self.task_params()
        construct = {k: v for k, v in self._defaults.items() if k in GENERATION_OPTIONS}
        self.generation_config = pipeline_generation_config(
            self.model_generation,
            self.pipeline_defaults,
            construct,
            task_params,
            self.tokenizer.token_id("pad_token"),
        )
        prefix = self.bundle.config.get("prefix")
        if task_params and "prefix" in task_params:
            prefix = task_params["prefix"]
        self.prefix: str | None = prefix
        self.max_positions = context_window(self.bundle.config)
        seed = self._defaults.get("seed")
        self._rng = as_rng(seed) if seed is not None else None

    def params_key(self) -> str:
        """The task_specific_params entry this pipeline reads (transformers: the task name)."""
        return self.task

    def task_params(self) -> dict[str, Any] | None:
        params = self.bundle.config.get("task_specific_params") or {}
        found = params.get(self.params_key())
        return dict(found) if isinstance(found, dict) else None

    # -- options -------------------------------------------------------------------------------------
    def split_options(self, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(pipeline options, call-time generation options): construction defaults <- call options."""
        call = self.check_options(kwargs)
        pipe = {k: v for k, v in self._defaults.items() if k not in GENERATION_OPTIONS}
        pipe.update({k: v for k, v in call.items() if k not in GENERATION_OPTIONS})
        gen = {k: v for k, v in call.items() if k in GENERATION_OPTIONS}
        return pipe, gen

    def resolve(self, call_generation: Mapping[str, Any]) -> GenerationConfig:
        return call_generation_config(self.generation_config, self.model_generation, call_generation)

    def rng(self, call_kwargs: Mapping[str, Any]) -> np.random.Generator:
        """A call's ``seed`` gives a fresh generator; else the pipeline's own (seeded at construction, or not)."""
        seed = call_kwargs.get("seed")
        if seed is not None:
            return as_rng(seed)
        if self._rng is None:
            self._rng = as_rng(None)
        return self._rng

    def decode(self, ids: Any, *, skip_special_tokens: bool = True, clean: bool = False) -> str:
        return self.tokenizer.decode(
            [int(i) for i in ids], skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean
        )

    def batch_size(self, options: Mapping[str, Any]) -> int:
        return check_batch_size(given(options, "batch_size", 1))
