"""summarization, translation, text2text-generation: transformers' Text2TextGenerationPipeline family over
an encoder + merged decoder (BART, T5, Marian, ...).

The three differ only in their output key and in small defaults: the T5-style task prefix and
generation settings come from ``task_specific_params`` of config.json under the task's name
(``summarization``, ``translation_en_to_de``, ...), as in transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..batching import batched
from ..errors import InvalidInputError
from ..generation import GenerateOutput, GenerationConfig, Seq2SeqDecoder, generate
from ..text.tokenizer import check_text, pad_batch
from .base import given
from .generative import GenerativePipeline


class Text2TextGenerationPipeline(GenerativePipeline):
    """``pipe("question: ... context: ...")`` -> ``[{"generated_text": ...}]``.

    A str gives a list of ``num_return_sequences`` dicts; a list of str gives one dict per input (or one
    list per input when several sequences are returned), as transformers. Defaults: transformers'
    (beam search with 4 beams, 256 new tokens) unless the bundle's generation_config.json or the task's
    ``task_specific_params`` set them. Inputs longer than a learned-position encoder's window raise
    InvalidInputError unless ``truncation=True``.
    """

    pipeline_defaults: ClassVar[dict[str, Any]] = {"max_new_tokens": 256, "num_beams": 4}
    pipeline_options: ClassVar[tuple[str, ...]] = (
        "return_text",
        "return_tensors",
        "clean_up_tokenization_spaces",
        "truncation",
        "stop_sequence",
    )
    return_name: ClassVar[str] = "generated"
    main_component = "decoder_model_merged"

    def setup(self) -> None:
        super().setup()
        if not self.bundle.config.get("is_encoder_decoder", False):
            raise InvalidInputError(
                f"{self.task} needs an encoder-decoder model; {self.bundle.root} has is_encoder_decoder unset"
            )

    def demo_input(self) -> Any:
        return (
            "edgetf runs Hugging Face transformer models offline with onnxruntime. It exports each model once, "
            "quantizes it to eight-bit integers, checks it against the reference pipeline, and then runs it on "
            "laptops, desktops and small boards such as the Raspberry Pi without PyTorch."
        )

    # -- call ----------------------------------------------------------------------------------------
    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        pipe_opts, gen_opts = self.split_options(kwargs)
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        if not isinstance(texts, (list, tuple)) or not texts:
            raise InvalidInputError(f"{self.task} takes a str or a non-empty list of str, got {type(inputs).__name__}")
        texts = [check_text(t, "input") for t in texts]
        gen_call = dict(gen_opts)
        stop = given(pipe_opts, "stop_sequence", None)
        if stop is not None:
            ids = self.tokenizer.encode(check_text(stop, "stop_sequence"), add_special_tokens=False).ids
            if ids:
                gen_call["eos_token_id"] = ids[0]  # transformers: only the first token of the stop sequence
        gen = self.resolve(gen_call)
        given_max_length = "max_length" in gen_call
        rng = self.rng(kwargs)
        tensors = bool(given(pipe_opts, "return_tensors", False))
        clean = bool(given(pipe_opts, "clean_up_tokenization_spaces", False))
        results: list[list[dict[str, Any]]] = []
        for chunk in batched(texts, self.batch_size(pipe_opts)):
            out = self.generate_ids(chunk, gen, pipe_opts, given_max_length, rng)
            n = gen.num_return_sequences
            for i in range(len(chunk)):
                records = []
                for seq in out.sequences[i * n : (i + 1) * n]:
                    if tensors:
                        records.append({f"{self.return_name}_token_ids": [int(t) for t in seq]})
                    else:
                        records.append({f"{self.return_name}_text": self.decode(seq, clean=clean)})
                results.append(records)
        if single:
            return results[0]
        if all(len(r) == 1 for r in results):
            return [r[0] for r in results]
        return results

    def encode(self, texts: list[str], options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        prefix = self.prefix or ""
        truncation = given(options, "truncation", False)
        encodings = [self.tokenizer.encode(prefix + t, truncation=truncation) for t in texts]
        window = self.bundle.config.get("max_position_embeddings")
        longest = max(len(e.ids) for e in encodings)
        if isinstance(window, int) and longest > window:
            raise InvalidInputError(
                f"the input is {longest} tokens but the model reads at most {window}; pass truncation=True to cut it"
            )
        arrays = pad_batch([e.ids for e in encodings], None, self.tokenizer.pad_token_id, side="right")
        return {"input_ids": arrays["input_ids"], "attention_mask": arrays["attention_mask"]}

    def generate_ids(
        self,
        texts: list[str],
        gen: GenerationConfig,
        options: Mapping[str, Any],
        given_max_length: bool,
        rng: np.random.Generator,
    ) -> GenerateOutput:
        feeds = self.encode(texts, options)
        hidden = self.session("encoder_model").run(feeds)["last_hidden_state"]
        decoder = Seq2SeqDecoder(
            self.session("decoder_model_merged"), hidden, feeds["attention_mask"], self.bundle.config
        )
        start = gen.decoder_start_token_id if gen.decoder_start_token_id is not None else gen.bos_token_id
        if start is None:
            raise InvalidInputError(
                "the bundle's generation_config.json sets neither decoder_start_token_id nor bos_token_id; "
                "pass decoder_start_token_id="
            )
        start_ids = np.full((len(texts), 1), int(start), dtype=np.int64)
        return generate(
            decoder,
            start_ids,
            gen,
            max_length_given=given_max_length,
            max_positions=self.max_positions,
            decode=lambda ids: self.tokenizer.decode(ids),
            seed=rng,
        )


class SummarizationPipeline(Text2TextGenerationPipeline):
    """``pipe(article)`` -> ``[{"summary_text": ...}]``; T5 bundles get their "summarize: " prefix."""

    return_name = "summary"

    def params_key(self) -> str:
        return "summarization"


class TranslationPipeline(Text2TextGenerationPipeline):
    """``pipe(text)`` -> ``[{"translation_text": ...}]``.

    The task name picks ``task_specific_params`` (T5 prefixes): ``translation_en_to_de`` uses that entry;
    plain ``translation`` takes the first ``translation_*`` entry, as transformers' ``pipeline()`` does.
    ``src_lang``/``tgt_lang`` are accepted for compatibility; multilingual tokenizers that need language
    codes (mBART, NLLB, M2M100) are not supported yet and raise InvalidInputError when they are given.
    """

    return_name = "translation"
    pipeline_options = (*Text2TextGenerationPipeline.pipeline_options, "src_lang", "tgt_lang")

    def params_key(self) -> str:
        requested = self.requested_task
        if requested.startswith("translation_"):
            return requested
        params = self.bundle.config.get("task_specific_params") or {}
        for key in params:
            if key.startswith("translation"):
                return key
        return "translation"

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        for name in ("src_lang", "tgt_lang"):
            value = kwargs.get(name, self._defaults.get(name))
            if value is not None and self.tokenizer.config.get("src_lang") is not None:
                raise InvalidInputError(
                    f"{name}={value!r}: this tokenizer uses language codes, which edgetf does not support yet"
                )
        return super().__call__(inputs, **kwargs)
