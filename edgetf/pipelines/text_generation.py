"""text-generation: transformers' TextGenerationPipeline over a decoder-only ONNX model with a KV cache.

Reads top-down as one call runs: options and prompts -> token ids (:meth:`TextGenerationPipeline.prepare`)
-> :func:`edgetf.generation.generate` over a :class:`edgetf.generation.CausalLM` -> text records
(:meth:`TextGenerationPipeline.postprocess`). Option resolution is shared with text2text in
:mod:`edgetf.pipelines.generative`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..batching import batched
from ..errors import InvalidInputError
from ..generation import CausalLM, GenerateOutput, GenerationConfig, IncrementalDecoder, generate, generate_tokens
from ..text.chat import TEMPLATE_FILE, Chat, ChatTemplate, bundle_template, is_chat, is_chat_batch, special_tokens_map
from ..text.tokenizer import check_text, pad_batch
from .base import given
from .generative import GenerativePipeline


@dataclass
class Prepared:
    """A batch of prompts ready for the model: the call's resolved config, each prompt's token ids, the
    left-padded ids and mask, and whether the call gave max_length itself."""

    gen: GenerationConfig
    encoded: list[list[int]]
    input_ids: np.ndarray
    attention_mask: np.ndarray
    max_length_given: bool


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
        "return_full_text", "return_text", "return_tensors", "clean_up_tokenization_spaces", "prefix",
        "handle_long_generation", "stop_sequence", "truncation", "add_special_tokens", "skip_special_tokens",
        "padding", "continue_final_message",
    )  # fmt: skip

    def setup(self) -> None:
        super().setup()
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

    # -- call ----------------------------------------------------------------------------------------
    def __call__(self, text_inputs: Any, **kwargs: Any) -> Any:
        pipe_opts, gen_opts = self.split_options(kwargs)
        single = isinstance(text_inputs, str) or is_chat(text_inputs)
        prompts = self.check_prompts([text_inputs] if single else text_inputs)
        return_type = self.return_type(pipe_opts)
        rng = self.rng(kwargs)
        results = []
        for chunk in batched(prompts, self.batch_size(pipe_opts)):
            batch = self.prepare(chunk, pipe_opts, gen_opts)
            out = self.run(batch, rng)
            results.extend(self.postprocess(chunk, batch, out, pipe_opts, return_type))
        return results[0] if single else results

    def stream(self, prompt: str | list[dict[str, Any]], **kwargs: Any) -> Iterator[str]:
        """Yield the new text piece by piece as tokens are generated (one prompt or chat, one sequence).

        The pieces concatenate to ``pipe(prompt, return_full_text=False, **kwargs)[0]["generated_text"]``;
        a multi-byte character split across byte-level tokens is held back until complete. Closing the
        iterator early (break, garbage collection) stops generation.
        """
        pipe_opts, gen_opts = self.split_options(kwargs)
        (checked,) = self.check_prompts([prompt])
        batch = self.prepare([checked], pipe_opts, gen_opts)
        if batch.gen.num_beams > 1 or batch.gen.num_return_sequences > 1:
            raise InvalidInputError("stream() supports greedy and sampling with one sequence (num_beams=1)")
        clean = bool(given(pipe_opts, "clean_up_tokenization_spaces", True))
        skip = bool(given(pipe_opts, "skip_special_tokens", True))
        decoder = IncrementalDecoder(
            lambda ids: self.decode(ids, skip_special_tokens=skip, clean=clean),
            prefix_ids=[int(t) for t in batch.input_ids[0]] if prompt else [],
        )
        eos = set(batch.gen.eos_ids)
        steps = generate_tokens(
            self.model(), batch.input_ids, batch.gen, **self.generate_options(batch, self.rng(kwargs))
        )
        try:
            for tokens in steps:
                token = int(tokens[0])
                if token in eos:
                    break
                piece = decoder.push(token)
                if piece:
                    yield piece
        finally:
            steps.close()
        tail = decoder.flush()
        if tail:
            yield tail

    # -- preprocess: prompts -> token ids ------------------------------------------------------------
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

    @staticmethod
    def return_type(opts: Mapping[str, Any]) -> str:
        """ "full" (prompt + new text), "new" (new text only) or "tensors" (token ids), as transformers."""
        full, text, tensors = (given(opts, k, None) for k in ("return_full_text", "return_text", "return_tensors"))
        if full is not None:
            if text is not None:
                raise InvalidInputError("return_text is mutually exclusive with return_full_text")
            if tensors is not None:
                raise InvalidInputError("return_full_text is mutually exclusive with return_tensors")
            return "full" if full else "new"
        if tensors:
            if text is not None:
                raise InvalidInputError("return_text is mutually exclusive with return_tensors")
            return "tensors"
        return "full"

    def continues(self, chat: Chat, opts: Mapping[str, Any]) -> bool:
        """Whether the chat's final message is continued (prefill) rather than answered."""
        return bool(given(opts, "continue_final_message", chat.ends_with_assistant))

    def prompt_text(self, prompt: str | Chat, opts: Mapping[str, Any]) -> tuple[str, bool]:
        """(text to tokenize, add special tokens): a chat is rendered by its template, whose text carries
        its special tokens already (transformers tokenizes it with add_special_tokens=False)."""
        if isinstance(prompt, Chat):
            cont = self.continues(prompt, opts)
            text = self.chat_template().render(prompt, add_generation_prompt=not cont, continue_final_message=cont)
            return text, False
        prefix = given(opts, "prefix", self.prefix or "")
        return prefix + prompt, bool(given(opts, "add_special_tokens", True))  # the tokenizer's default (BOS)

    def encode_prompts(
        self, prompts: list[str | Chat], opts: Mapping[str, Any], gen: GenerationConfig, max_new: int | None
    ) -> list[list[int]]:
        truncation = given(opts, "truncation", False)
        max_length = opts.get("max_length_tokenizer")
        encoded = []
        for prompt in prompts:
            text, add_special = self.prompt_text(prompt, opts)
            ids = self.tokenizer.encode(
                text, add_special_tokens=add_special, truncation=truncation, max_length=max_length
            ).ids
            if given(opts, "handle_long_generation", None) == "hole":
                ids = self._hole(ids, gen, max_new)
            elif given(opts, "handle_long_generation", None) is not None:
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

    def prepare(self, prompts: list[str | Chat], opts: Mapping[str, Any], gen_opts: Mapping[str, Any]) -> Prepared:
        """Resolve the call's generation config and tokenize the prompts into a left-padded batch."""
        gen_call = dict(gen_opts)
        given_max_length = "max_length" in gen_call
        stop = given(opts, "stop_sequence", None)
        if stop is not None:
            stop_ids = self.tokenizer.encode(check_text(stop, "stop_sequence"), add_special_tokens=False).ids
            gen_call["eos_token_id"] = stop_ids  # transformers: every token of the stop sequence ends generation
        gen = self.resolve(gen_call)
        opts = dict(opts)
        if given_max_length:
            opts["max_length_tokenizer"] = gen_call["max_length"]
        encoded = self.encode_prompts(prompts, opts, gen, gen.max_new_tokens)
        prefix = given(opts, "prefix", self.prefix or "")
        if prefix and gen.max_new_tokens is None:  # transformers lengthens max_length by the prefix's length
            add_special = bool(given(opts, "add_special_tokens", False))  # transformers counts the prefix so
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
        return Prepared(gen, encoded, arrays["input_ids"], arrays["attention_mask"], given_max_length)

    # -- session: the decode loop over the KV-cached decoder ---------------------------------------------
    def model(self) -> CausalLM:
        return CausalLM(self.session(), self.bundle.config)

    def generate_options(self, batch: Prepared, rng: np.random.Generator) -> dict[str, Any]:
        """The keyword arguments of :func:`edgetf.generation.generate` for one prepared batch."""
        return {
            "attention_mask": batch.attention_mask,
            "max_length_given": batch.max_length_given,
            "max_positions": self.max_positions,
            "decode": lambda ids: self.tokenizer.decode(ids),
            "seed": rng,
        }

    def run(self, batch: Prepared, rng: np.random.Generator) -> GenerateOutput:
        return generate(self.model(), batch.input_ids, batch.gen, **self.generate_options(batch, rng))

    # -- postprocess: token ids -> records -----------------------------------------------------------
    def postprocess(
        self,
        prompts: list[str | Chat],
        batch: Prepared,
        out: GenerateOutput,
        opts: Mapping[str, Any],
        return_type: str,
    ) -> list[list[dict[str, Any]]]:
        per_prompt = batch.gen.num_return_sequences
        clean = bool(given(opts, "clean_up_tokenization_spaces", True))
        skip = bool(given(opts, "skip_special_tokens", True))
        results = []
        for i, prompt in enumerate(prompts):
            records = []
            prompt_text_len = len(self.decode(batch.input_ids[i], skip_special_tokens=skip, clean=clean))
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
