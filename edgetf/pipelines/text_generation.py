"""text-generation: transformers' TextGenerationPipeline over a decoder-only ONNX model with a KV cache.

Shared with the text2text pipelines: :class:`GenerativePipeline`, which resolves generation options the
way a transformers pipeline does (its class defaults < the bundle's generation_config.json <
task_specific_params < construction options < call options) and runs :func:`edgetf.generation.generate`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from ..generation import (
    CausalLM,
    GenerateOutput,
    GenerationConfig,
    IncrementalDecoder,
    call_generation_config,
    generate,
    pipeline_generation_config,
)
from ..generation.config import GENERATION_OPTIONS
from ..generation.search import as_rng
from ..text import TextTokenizer
from ..text.chat import TEMPLATE_FILE, Chat, ChatTemplate, bundle_template, is_chat, is_chat_batch, special_tokens_map
from ..text.tokenizer import check_text, pad_batch
from .base import Pipeline, batched

_UNSET: Any = object()


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
        cls.options_accepted = dict.fromkeys(names, _UNSET)

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
        size = options.get("batch_size", 1)
        size = 1 if size is _UNSET or size is None else size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise InvalidInputError(f"batch_size must be an integer >= 1, got {size!r}")
        return size


def _flag(options: Mapping[str, Any], name: str, default: Any) -> Any:
    value = options.get(name, _UNSET)
    return default if value is _UNSET or value is None else value


class TextGenerationPipeline(GenerativePipeline):
    """``pipe("Once upon a time", max_new_tokens=20)`` -> ``[{"generated_text": ...}]``.

    Same options and outputs as transformers: a str gives a list of ``num_return_sequences`` dicts, a
    list of str gives one such list per prompt. ``return_full_text=False`` returns only the new text,
    ``return_tensors=True`` the token ids. transformers' pipeline defaults apply unless the bundle's
    generation_config.json says otherwise (sampling, temperature 0.7, 256 new tokens); pass ``seed=`` for
    reproducible sampling. Prompts run one at a time (as transformers does), or left-padded in batches of
    ``batch_size``. Generation stops at the model's context window (transformers fails there); a prompt
    that fills the window raises InvalidInputError unless ``handle_long_generation="hole"``.
    A chat (list of role/content dicts), or a list of chats, is rendered with the tokenizer's chat template
    and answered with the messages plus the assistant's reply, as transformers does (a chat ending with an
    assistant message is continued, unless ``continue_final_message=False``). :meth:`stream` yields text
    as it comes.
    """

    pipeline_defaults: ClassVar[dict[str, Any]] = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
    pipeline_options: ClassVar[tuple[str, ...]] = (
        "return_full_text",
        "return_text",
        "return_tensors",
        "clean_up_tokenization_spaces",
        "prefix",
        "handle_long_generation",
        "stop_sequence",
        "truncation",
        "add_special_tokens",
        "skip_special_tokens",
        "padding",
        "continue_final_message",
    )

    def setup(self) -> None:
        super().setup()
        self.max_positions = context_window(self.bundle.config)
        self._chat_template: ChatTemplate | None = None

    def chat_template(self) -> ChatTemplate:
        """The tokenizer's chat template, compiled on first use."""
        if self._chat_template is None:
            source = bundle_template(self.bundle, self.tokenizer.config)
            if source is None:
                raise InvalidInputError(
                    "chat input needs a chat template, and this model's tokenizer has none (no chat_template in "
                    f"tokenizer_config.json, no {TEMPLATE_FILE}); pass the prompt as a str"
                )
            specials = special_tokens_map(self.tokenizer.config, self.tokenizer.special_tokens)
            self._chat_template = ChatTemplate(source, specials)
        return self._chat_template

    def demo_input(self) -> Any:
        return "Once upon a time, in a small village by the sea,"

    def model(self) -> CausalLM:
        return CausalLM(self.session(), self.bundle.config)

    # -- call ----------------------------------------------------------------------------------------
    def __call__(self, text_inputs: Any, **kwargs: Any) -> Any:
        pipe_opts, gen_opts = self.split_options(kwargs)
        single = isinstance(text_inputs, str) or is_chat(text_inputs)
        prompts = self.check_prompts([text_inputs] if single else text_inputs)
        return_type = self._return_type(pipe_opts)
        rng = self.rng(kwargs)
        results = []
        for chunk in batched(prompts, self.batch_size(pipe_opts)):
            results.extend(self._generate_chunk(chunk, pipe_opts, gen_opts, return_type, rng))
        return results[0] if single else results

    @staticmethod
    def check_prompts(prompts: Any) -> list[str | Chat]:
        """Prompts (str) or chats (lists of role/content dicts), as transformers tells them apart: by the
        first item."""
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise InvalidInputError(
                "text-generation takes a str, a chat (list of {'role', 'content'} dicts), or a non-empty list of "
                f"either, got {type(prompts).__name__}"
            )
        if is_chat_batch(prompts):
            return [Chat.of(chat) for chat in prompts]
        return [check_text(p, "prompt") for p in prompts]

    def _return_type(self, opts: Mapping[str, Any]) -> str:
        full, text, tensors = (opts.get(k, _UNSET) for k in ("return_full_text", "return_text", "return_tensors"))
        if full is not _UNSET and full is not None:
            if text is not _UNSET and text is not None:
                raise InvalidInputError("return_text is mutually exclusive with return_full_text")
            if tensors is not _UNSET and tensors is not None:
                raise InvalidInputError("return_full_text is mutually exclusive with return_tensors")
            return "full" if full else "new"
        if tensors is not _UNSET and tensors is not None and tensors:
            if text is not _UNSET and text is not None:
                raise InvalidInputError("return_text is mutually exclusive with return_tensors")
            return "tensors"
        return "full"

    def continues(self, chat: Chat, opts: Mapping[str, Any]) -> bool:
        """Whether the chat's final message is continued (prefill) rather than answered."""
        return bool(_flag(opts, "continue_final_message", chat.ends_with_assistant))

    def prompt_text(self, prompt: str | Chat, opts: Mapping[str, Any]) -> tuple[str, bool]:
        """(text to tokenize, add special tokens): a chat is rendered by its template, whose text carries
        its special tokens already (transformers tokenizes it with add_special_tokens=False)."""
        if isinstance(prompt, Chat):
            cont = self.continues(prompt, opts)
            text = self.chat_template().render(prompt, add_generation_prompt=not cont, continue_final_message=cont)
            return text, False
        prefix = _flag(opts, "prefix", self.prefix or "")
        return prefix + prompt, bool(_flag(opts, "add_special_tokens", True))  # the tokenizer's default (BOS)

    def encode_prompts(
        self, prompts: list[str | Chat], opts: Mapping[str, Any], gen: GenerationConfig, max_new: int | None
    ) -> list[list[int]]:
        truncation = _flag(opts, "truncation", False)
        max_length = opts.get("max_length_tokenizer")
        encoded = []
        for prompt in prompts:
            text, add_special = self.prompt_text(prompt, opts)
            ids = self.tokenizer.encode(
                text, add_special_tokens=add_special, truncation=truncation, max_length=max_length
            ).ids
            if _flag(opts, "handle_long_generation", None) == "hole":
                ids = self._hole(ids, gen, max_new)
            elif _flag(opts, "handle_long_generation", None) is not None:
                raise InvalidInputError(
                    f"handle_long_generation={opts['handle_long_generation']!r} is not accepted; use None or 'hole'"
                )
            encoded.append(ids)
        return encoded

    def _hole(self, ids: list[int], gen: GenerationConfig, max_new: int | None) -> list[int]:
        new_tokens = max_new if max_new is not None else gen.max_length - len(ids)
        if new_tokens < 0:
            raise InvalidInputError("handle_long_generation='hole' cannot infer how many new tokens are expected")
        limit = self.tokenizer.model_max_length
        if limit is not None and len(ids) + new_tokens > limit:
            keep = limit - new_tokens
            if keep <= 0:
                raise InvalidInputError(
                    "handle_long_generation='hole': the number of new tokens exceeds the model's maximum length"
                )
            ids = ids[-keep:]
        return ids

    def _prepare(
        self, prompts: list[str | Chat], opts: Mapping[str, Any], gen_opts: Mapping[str, Any]
    ) -> tuple[GenerationConfig, list[list[int]], np.ndarray, np.ndarray, bool, bool]:
        gen_call = dict(gen_opts)
        given_max_length = "max_length" in gen_call
        stop = opts.get("stop_sequence", _UNSET)
        if stop is not _UNSET and stop is not None:
            stop_ids = self.tokenizer.encode(check_text(stop, "stop_sequence"), add_special_tokens=False).ids
            gen_call["eos_token_id"] = stop_ids  # transformers: every token of the stop sequence ends generation
        gen = self.resolve(gen_call)
        opts = dict(opts)
        if given_max_length:
            opts["max_length_tokenizer"] = gen_call["max_length"]
        encoded = self.encode_prompts(prompts, opts, gen, gen.max_new_tokens)
        prefix = _flag(opts, "prefix", self.prefix or "")
        if prefix and gen.max_new_tokens is None:  # transformers lengthens max_length by the prefix's length
            add_special = bool(_flag(opts, "add_special_tokens", False))  # transformers counts the prefix so
            prefix_len = len(self.tokenizer.encode(prefix, add_special_tokens=add_special).ids)
            gen.max_length = gen.max_length + prefix_len
            if gen.min_new_tokens is None and "min_length" in gen_call:
                gen.min_length = gen.min_length + prefix_len
        empty = [len(ids) == 0 for ids in encoded]
        if any(empty):  # transformers starts an empty prompt from the BOS token
            if gen.bos_token_id is None:
                raise InvalidInputError("an empty prompt needs a bos_token_id to start from; this model has none")
            encoded = [ids or [int(gen.bos_token_id)] for ids in encoded]
        pad = gen.pad_id if gen.pad_id is not None else self.tokenizer.pad_token_id
        arrays = pad_batch(encoded, None, pad, side="left")
        return gen, encoded, arrays["input_ids"], arrays["attention_mask"], given_max_length, any(empty)

    def _generate_chunk(
        self,
        prompts: list[str | Chat],
        opts: Mapping[str, Any],
        gen_opts: Mapping[str, Any],
        return_type: str,
        rng: np.random.Generator,
    ) -> list[list[dict[str, Any]]]:
        gen, encoded, input_ids, mask, given_max_length, _ = self._prepare(prompts, opts, gen_opts)
        out = self.run_generate(input_ids, mask, gen, given_max_length, rng)
        return self.postprocess(prompts, encoded, input_ids, out, opts, return_type, gen.num_return_sequences)

    def run_generate(
        self,
        input_ids: np.ndarray,
        mask: np.ndarray,
        gen: GenerationConfig,
        given_max_length: bool,
        rng: np.random.Generator,
        streamer: Any = None,
    ) -> GenerateOutput:
        return generate(
            self.model(),
            input_ids,
            gen,
            attention_mask=mask,
            max_length_given=given_max_length,
            max_positions=self.max_positions,
            decode=lambda ids: self.tokenizer.decode(ids),
            seed=rng,
            streamer=streamer,
        )

    def postprocess(
        self,
        prompts: list[str | Chat],
        encoded: list[list[int]],
        input_ids: np.ndarray,
        out: GenerateOutput,
        opts: Mapping[str, Any],
        return_type: str,
        per_prompt: int,
    ) -> list[list[dict[str, Any]]]:
        clean = bool(_flag(opts, "clean_up_tokenization_spaces", True))
        skip = bool(_flag(opts, "skip_special_tokens", True))
        results = []
        for i, prompt in enumerate(prompts):
            records = []
            prompt_text_len = len(self.decode(input_ids[i], skip_special_tokens=skip, clean=clean))
            if not prompt:  # transformers: an empty prompt has no input_ids, so nothing is cut
                prompt_text_len = 0
            for seq in out.sequences[i * per_prompt : (i + 1) * per_prompt]:
                if return_type == "tensors":
                    records.append({"generated_token_ids": [int(t) for t in seq]})
                    continue
                text = self.decode(seq, skip_special_tokens=skip, clean=clean)[prompt_text_len:]
                if return_type != "full":
                    records.append({"generated_text": text})
                elif isinstance(prompt, Chat):
                    records.append({"generated_text": self.chat_reply(prompt, text, opts)})
                else:
                    records.append({"generated_text": prompt + text})
            results.append(records)
        return results

    def chat_reply(self, chat: Chat, text: str, opts: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chat with the reply: a new assistant message, or the final message continued."""
        messages = [dict(m) for m in chat.messages]
        if self.continues(chat, opts):
            last = messages[-1]
            return [*messages[:-1], {"role": last["role"], "content": last["content"] + text}]
        return [*messages, {"role": "assistant", "content": text}]

    # -- streaming -----------------------------------------------------------------------------------
    def stream(self, prompt: str | list[dict[str, Any]], **kwargs: Any) -> Iterator[str]:
        """Yield the new text piece by piece as tokens are generated (one prompt or chat, one sequence).

        The pieces concatenate to ``pipe(prompt, return_full_text=False, **kwargs)[0]["generated_text"]``;
        a multi-byte character split across byte-level tokens is held back until complete.
        """
        pipe_opts, gen_opts = self.split_options(kwargs)
        (checked,) = self.check_prompts([prompt])
        gen, encoded, input_ids, mask, given_max_length, _ = self._prepare([checked], pipe_opts, gen_opts)
        if gen.num_beams > 1 or gen.num_return_sequences > 1:
            raise InvalidInputError("stream() supports greedy and sampling with one sequence (num_beams=1)")
        clean = bool(_flag(pipe_opts, "clean_up_tokenization_spaces", True))
        skip = bool(_flag(pipe_opts, "skip_special_tokens", True))
        decoder = IncrementalDecoder(
            lambda ids: self.decode(ids, skip_special_tokens=skip, clean=clean),
            prefix_ids=[int(t) for t in input_ids[0]] if prompt else [],
        )
        yield from _threaded_stream(
            lambda push: self.run_generate(input_ids, mask, gen, given_max_length, self.rng(kwargs), push),
            decoder,
            eos=set(gen.eos_ids),
        )


class _Cancelled(Exception):
    """Raised inside the generation thread when the consumer stopped reading the stream."""


def _threaded_stream(run: Any, decoder: IncrementalDecoder, eos: set[int]) -> Iterator[str]:
    """Run generation in a worker thread; yield the decoder's text pieces as tokens arrive.

    Closing the iterator early (break, garbage collection) stops generation at the next token.
    """
    pieces: queue.Queue[tuple[str, Any]] = queue.Queue()
    state = {"eos": False, "cancelled": False}

    def push(tokens: np.ndarray) -> None:
        if state["cancelled"]:
            raise _Cancelled
        token = int(tokens[0])
        if state["eos"] or token in eos:
            state["eos"] = True
            return
        piece = decoder.push(token)
        if piece:
            pieces.put(("text", piece))

    def work() -> None:
        try:
            run(push)
            tail = decoder.flush()
            if tail:
                pieces.put(("text", tail))
            pieces.put(("end", None))
        except _Cancelled:
            pieces.put(("end", None))
        except Exception as exc:  # handed to the consumer, re-raised there
            pieces.put(("error", exc))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while True:
            kind, value = pieces.get()
            if kind == "text":
                yield value
            elif kind == "error":
                raise value
            else:
                break
    finally:
        state["cancelled"] = True
        worker.join()
