"""Text generation over onnxruntime decoders with a KV cache: numpy search loops and logits processors
that reproduce transformers' ``generate`` token for token.

API (stable; the text pipelines and the Whisper pipeline use it)::

    from edgetf.generation import CausalLM, Seq2SeqDecoder, GenerationConfig, generate

    # decoder-only (GPT-2): the session of onnx/model*.onnx
    lm = CausalLM(session, bundle.config)
    out = generate(lm, input_ids, config, attention_mask=mask, max_positions=1024)

    # encoder-decoder (BART, T5, Marian, Whisper): run the encoder yourself, then
    decoder = Seq2SeqDecoder(decoder_session, encoder_hidden_states, encoder_attention_mask, bundle.config)
    out = generate(decoder, decoder_start_ids, config, logits_processors=[...])

    out.sequences      # (batch * num_return_sequences, length) int64, as transformers' generate
    out.new_tokens     # the part after the starting sequence

* ``GenerationConfig`` (config.py): transformers' generation fields; ``GenerationConfig.from_dict`` reads
  generation_config.json; ``pipeline_generation_config`` / ``call_generation_config`` resolve defaults the
  way a transformers pipeline does (pipeline defaults < model's generation config < options).
* ``generate`` (search.py): greedy, sampling (temperature/top_k/top_p/min_p/typical_p, ``seed=`` int or
  numpy Generator), beam search and beam sampling (num_beams, length_penalty, early_stopping,
  num_return_sequences). ``logits_processors``: extra ``(input_ids, scores) -> scores`` callables run after
  the built-in ones (before sampling warpers); ``stopping_criteria``: extra ``(input_ids) -> bool[rows]``;
  ``streamer``: called with each step's tokens; ``decode``: ids -> text, for ``stop_strings``.
  ``generate_tokens`` (same arguments, greedy/sampling): a generator of each step's tokens, for streaming.
* Step models (steps.py): ``CausalLM`` and ``Seq2SeqDecoder`` hold the KV cache; both have
  ``teacher_forced_logits(input_ids)``, every position's logits in one pass (for checks against a reference).
* ``StepModel`` protocol (search.py): ``prefill(input_ids, attention_mask)``, ``step(input_ids, attention_mask)``
  -> last-position logits (rows, vocab); ``select(rows)`` reorders/expands the cache. Anything with these
  three methods can be generated from (e.g. a test double or another runtime).
* Logits processors (logits.py): RepetitionPenalty, NoRepeatNGram, MinLength, MinNewTokens, ForcedBOS,
  ForcedEOS, NoBadWords, SequenceBias, SuppressTokens, SuppressTokensAtBegin, Temperature, TopK, TopP,
  MinP, Typical, InfNanRemove, LogitNormalization; ``build_processors(config, prompt_length)``.
* Stopping (stopping.py): MaxLength, EosToken (one or several ids), StopStrings.
* Streaming (streaming.py): ``IncrementalDecoder`` / ``stream_text`` emit text as tokens arrive without
  splitting multi-byte characters.
"""

from __future__ import annotations

from .config import GenerationConfig, call_generation_config, merge_model_defaults, pipeline_generation_config
from .logits import LogitsProcessorList, build_processors
from .search import GenerateOutput, StepModel, generate, generate_tokens, prepare_lengths
from .steps import CausalLM, Seq2SeqDecoder
from .streaming import IncrementalDecoder, stream_text

__all__ = [
    "CausalLM",
    "GenerateOutput",
    "GenerationConfig",
    "IncrementalDecoder",
    "LogitsProcessorList",
    "Seq2SeqDecoder",
    "StepModel",
    "build_processors",
    "call_generation_config",
    "generate",
    "generate_tokens",
    "merge_model_defaults",
    "pipeline_generation_config",
    "prepare_lengths",
    "stream_text",
]
