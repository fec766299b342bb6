"""Step models: KV-cache stepping over exported decoders, the one place that knows past/present names,
the empty first-step past and the merged decoder's ``use_cache_branch``.

Two step models implement :class:`edgetf.generation.search.StepModel`:

* :class:`CausalLM` — a decoder-only graph (``model.onnx`` from ``text-generation-with-past``, or a
  ``decoder_model_merged.onnx``): inputs ``input_ids``, ``attention_mask``, ``position_ids``,
  ``past_key_values.{i}.key|value`` (and ``use_cache_branch`` when merged); outputs ``logits``,
  ``present.{i}.key|value``.
  The same layout serves GPT-2, Llama and Qwen2: positions are fed (rotary models need them, computed
  from the attention mask as transformers does for left-padded rows), and the past's head count and
  head size come from the graph (grouped-query attention has fewer key/value heads than query heads;
  ``head_dim`` may differ from hidden_size / heads) or else from config.json.
* :class:`Seq2SeqDecoder` — an encoder-decoder's merged decoder: inputs ``input_ids``,
  ``encoder_hidden_states``, ``encoder_attention_mask`` (absent for Whisper),
  ``past_key_values.{i}.decoder|encoder.key|value``, ``use_cache_branch``.

First step: decoder past of length 0, encoder past (unused by the no-cache branch) of the encoder's
length, ``use_cache_branch=False``; later steps feed the presents back with ``use_cache_branch=True``
and keep the encoder's cross-attention cache from the first step.

Beam search reorders cache rows every step, but only within one input's beams, and all beams of an
input share the same cross-attention cache and encoder states: :meth:`Seq2SeqDecoder.select` then
gathers only the decoder's self-attention cache, and moves the encoder side only when rows change
input (the expansion to beams); the cross-attention cache is the larger part of the cache for long
encoder inputs (benchmarks/bench_seq2seq.py measures it). When every row belongs to one input (beam
search on one input, as the ASR and text2text pipelines run it) the encoder side is not tiled at all:
it stays one row, which the exported graphs' attention MatMuls broadcast over the beams, so each step
reads one copy of the cross-attention cache instead of one per beam. Graphs are not obliged to
broadcast (a reshape by the decoder's batch would mix rows), so the first such step on a session also
runs tiled and compares; a graph that differs keeps tiled caches from then on.

Both have :meth:`teacher_forced_logits`: the logits at every position of a known sequence in one pass
from an empty cache (the export checks compare them with the reference model's).

One cache buffer (CPU): a graph whose metadata says ``edgetf.kv_cache: shared`` (the fused decoders of
export/decoder_graph.py, whose attention is onnxruntime's ``GroupQueryAttention``) may be given the same
buffer as past and present. :class:`CausalLM` then keeps each layer's keys and values in a numpy buffer
longer than the sequence (grown by doubling), bound through IO binding as both input and output: a step
writes its new position in place instead of copying the whole past into a new present, and allocates
nothing that grows with the length. The graph reads the cached length from the attention mask. Prefill
and teacher forcing run the plain way (past of length 0); other graphs and devices keep the copy.

``io_binding=True`` keeps the presents as onnxruntime values bound as the next step's past (no numpy
round trip); it is off by default because it measured no faster on CPU (benchmarks/bench_generation.py
``*-iobinding`` runs), and kept as the path for device memory, where the copy would matter.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import BundleError, InferenceError
from ..session import Session

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."
KV_BUFFER_KEY = "edgetf.kv_cache"  # model metadata; "shared": past and present may be one buffer
LOGITS_TO_KEEP = "logits_to_keep"  # optional graph input: logits of the last N positions (0: all)
MIN_CAPACITY = 64  # cache positions a shared buffer starts with beyond the prompt


def _present_name(past: str) -> str:
    return PRESENT_PREFIX + past[len(PAST_PREFIX) :]


# merged decoder session -> whether it broadcasts a one-row encoder side over its decoder rows (checked once)
_BROADCASTS: weakref.WeakKeyDictionary[Session, bool] = weakref.WeakKeyDictionary()
# merged decoder session -> whether its cached branch, fed a whole prompt with an empty decoder past and a
# given cross-attention cache, gives what its first-step branch gives (checked once)
_PROMPT_ON_CACHE: weakref.WeakKeyDictionary[Session, bool] = weakref.WeakKeyDictionary()


def _as_array(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, ort.OrtValue) else value


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-5))


def _int_dim(value: Any) -> int | None:
    return value if isinstance(value, int) else None


class _CachedDecoder:
    """Shared machinery: past names and shapes, the cache store, running with or without IO binding."""

    def __init__(self, session: Session, config: Mapping[str, Any] | None = None, *, io_binding: bool = False):
        self.session = session
        self.config = dict(config or {})
        self.past_names = [n for n in session.inputs if n.startswith(PAST_PREFIX)]
        if not self.past_names:
            raise BundleError(
                f"{session.path.name} has no past_key_values inputs; edgetf needs a decoder exported with its "
                "KV cache (optimum task '*-with-past')"
            )
        missing = [_present_name(n) for n in self.past_names if _present_name(n) not in session.output_names]
        if missing:
            raise BundleError(f"{session.path.name} lacks outputs {missing} matching its past inputs")
        self.merged = "use_cache_branch" in session.inputs
        self.past_dtype = session.input_dtype(self.past_names[0])
        self.io_binding = io_binding
        self.cache: dict[str, Any] = {}  # past input name -> np.ndarray or ort.OrtValue

    def _heads_dims(self, name: str) -> tuple[int, int]:
        shape = list(self.session.inputs[name].shape)
        heads, dim = (_int_dim(shape[1]), _int_dim(shape[3])) if len(shape) == 4 else (None, None)
        if heads is None or dim is None:
            cfg = self.config
            heads = heads or int(
                cfg.get("num_key_value_heads")
                or cfg.get("num_attention_heads")
                or cfg.get("n_head")
                or cfg.get("decoder_attention_heads")
                or cfg.get("num_heads")
            )
            hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
            per_head = cfg.get("head_dim") or cfg.get("d_kv")
            dim = dim or int(per_head or hidden // int(cfg.get("num_attention_heads") or heads))
        return heads, dim

    def _empty(self, name: str, rows: int, length: int) -> np.ndarray:
        heads, dim = self._heads_dims(name)
        return np.zeros((rows, heads, length, dim), dtype=self.past_dtype)

    def _run(self, feeds: dict[str, np.ndarray], past: Mapping[str, Any], keep: list[str]) -> np.ndarray:
        """Run one step; store the presents of past names in ``keep``; return last-position logits."""
        if not self.io_binding:
            outputs = self.session.run({**feeds, **past}, ["logits", *(_present_name(n) for n in keep)])
            for name in keep:
                self.cache[name] = outputs[_present_name(name)]
            return outputs["logits"][:, -1, :].astype(np.float32, copy=False)
        sess = self.session.ort_session
        binding = sess.io_binding()
        for name in self.session.inputs:
            if name in past:
                value = past[name]
                if isinstance(value, ort.OrtValue):
                    binding.bind_ortvalue_input(name, value)
                else:
                    binding.bind_cpu_input(name, np.ascontiguousarray(value, dtype=self.past_dtype))
            elif name in feeds:
                binding.bind_cpu_input(name, np.ascontiguousarray(feeds[name], dtype=self.session.input_dtype(name)))
            else:
                raise InferenceError(f"{self.session.path.name} needs input {name!r}, which was not given")
        names = ["logits", *(_present_name(n) for n in keep)]
        for name in names:
            binding.bind_output(name, "cpu")
        try:
            sess.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime's own exception types
            raise InferenceError(f"onnxruntime failed running {self.session.path.name}: {exc}") from exc
        values = binding.get_outputs()
        for name, value in zip(keep, values[1:]):
            self.cache[name] = value
        return values[0].numpy()[:, -1, :].astype(np.float32, copy=False)

    def select(self, rows: np.ndarray) -> None:
        """Keep cache row rows[i] as row i (expanding for beams/samples, reordering beams)."""
        self._gather(list(self.cache), np.asarray(rows, dtype=np.int64))

    def _gather(self, names: list[str], rows: np.ndarray) -> None:
        for name in names:
            value = self.cache[name]
            array = value.numpy() if isinstance(value, ort.OrtValue) else value
            self.cache[name] = array[rows]


class CausalLM(_CachedDecoder):
    """Decoder-only language model with a KV cache (GPT-2 style).

    shared_buffer: None (default) keeps past and present in one buffer where the graph allows it (see
    the module docstring) and the session runs on CPU; False always copies (the baseline to measure)."""

    def __init__(
        self,
        session: Session,
        config: Mapping[str, Any] | None = None,
        *,
        io_binding: bool = False,
        shared_buffer: bool | None = None,
    ):
        super().__init__(session, config, io_binding=io_binding)
        allowed = session.metadata.get(KV_BUFFER_KEY) == "shared" and session.providers[0] == "CPUExecutionProvider"
        self.shared_buffer = allowed if shared_buffer is None else bool(shared_buffer) and allowed
        self.min_capacity = MIN_CAPACITY  # free positions a shared buffer starts with
        self.length = 0  # cached positions (shared buffer)
        self._binding: Any = None  # the IO binding of the shared buffers, kept across steps
        self._logits = np.empty((0, 1, 0), np.float32)

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray | None) -> np.ndarray:
        rows, length = input_ids.shape
        if attention_mask is None:
            attention_mask = np.ones((rows, length), dtype=np.int64)
        past = {name: self._empty(name, rows, 0) for name in self.past_names}
        self.cache = {}
        self._binding = None
        logits = self._run(self._feeds(input_ids, attention_mask, first=True), past, self.past_names)
        if self.shared_buffer:
            self._into_buffers(rows, length + max(length, self.min_capacity), length)
        return logits

    def teacher_forced_logits(self, input_ids: np.ndarray) -> np.ndarray:
        """(rows, length, vocab) float32 logits at every position of unpadded ``input_ids`` in one pass
        from an empty cache (teacher forcing); the cache is left untouched."""
        rows, length = input_ids.shape
        mask = np.ones((rows, length), dtype=np.int64)
        past = {name: self._empty(name, rows, 0) for name in self.past_names}
        keep = {LOGITS_TO_KEEP: np.zeros(1, np.int64)}  # every position (graphs with the optional input)
        outputs = self.session.run({**self._feeds(input_ids, mask, first=True), **past, **keep}, ["logits"])
        return outputs["logits"].astype(np.float32, copy=False)

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray | None) -> np.ndarray:
        if attention_mask is None:
            length = self._cached_length() + input_ids.shape[1]
            attention_mask = np.ones((input_ids.shape[0], length), dtype=np.int64)
        feeds = self._feeds(input_ids, attention_mask, first=False)
        if self._binding is not None:
            return self._shared_step(feeds, input_ids.shape[1])
        return self._run(feeds, self.cache, self.past_names)

    def select(self, rows: np.ndarray) -> None:
        if self._binding is None:
            super().select(rows)
            return
        rows = np.asarray(rows, dtype=np.int64)
        capacity = self.cache[self.past_names[0]].shape[2]
        for name in self.past_names:
            self.cache[name] = self.cache[name][rows, :, : self.length]
        self._into_buffers(len(rows), capacity, self.length)

    def _cached_length(self) -> int:
        if self._binding is not None:
            return self.length
        value = self.cache[self.past_names[0]]
        shape = value.shape() if isinstance(value, ort.OrtValue) else value.shape
        return int(shape[2])

    def _into_buffers(self, rows: int, capacity: int, length: int) -> None:
        """Move the cache (``length`` positions of each past name in ``self.cache``) into fresh buffers of
        ``capacity`` positions, bound as both past and present; logits go to a buffer of their own."""
        binding = self.session.ort_session.io_binding()
        for name in self.past_names:
            heads, dim = self._heads_dims(name)
            buffer = np.zeros((rows, heads, capacity, dim), dtype=self.past_dtype)
            value = self.cache[name]
            buffer[:, :, :length] = value.numpy() if isinstance(value, ort.OrtValue) else value
            self.cache[name] = buffer
            shared = ort.OrtValue.ortvalue_from_numpy(buffer)  # no copy: onnxruntime writes into `buffer`
            binding.bind_ortvalue_input(name, shared)
            binding.bind_ortvalue_output(_present_name(name), shared)
        vocab = self.session.ort_session.get_outputs()[0].shape[-1]
        self._logits = np.empty((rows, 1, vocab), np.float32) if isinstance(vocab, int) else self._logits
        self._bind_logits(binding)
        self._binding = binding
        self.length = length

    def _bind_logits(self, binding: Any) -> None:
        if self._logits.size:
            ptr = self._logits.ctypes.data
            binding.bind_output("logits", "cpu", 0, np.float32, list(self._logits.shape), ptr)
        else:  # vocabulary size not declared by the graph: onnxruntime allocates
            binding.bind_output("logits", "cpu")

    def _shared_step(self, feeds: dict[str, np.ndarray], new: int) -> np.ndarray:
        capacity = self.cache[self.past_names[0]].shape[2]
        if self.length + new > capacity:
            for name in self.past_names:
                self.cache[name] = self.cache[name][:, :, : self.length]
            self._into_buffers(len(feeds["input_ids"]), 2 * capacity, self.length)
        binding = self._binding
        dtype = self.session.input_dtype
        ready = {name: np.ascontiguousarray(value, dtype=dtype(name)) for name, value in feeds.items()}
        for name, value in ready.items():  # `ready` keeps the arrays alive through the run
            binding.bind_cpu_input(name, value)
        try:
            self.session.ort_session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime's own exception types
            raise InferenceError(f"onnxruntime failed running {self.session.path.name}: {exc}") from exc
        self.length += new
        logits = self._logits if self._logits.size else binding.get_outputs()[0].numpy()
        return logits[:, -1, :].copy()

    def _feeds(self, input_ids: np.ndarray, mask: np.ndarray, *, first: bool) -> dict[str, np.ndarray]:
        if input_ids.shape[1] == 1:  # a step: the last position alone, without arrays as long as the text
            positions = np.where(mask[:, -1:] == 0, 1, mask.sum(axis=-1, keepdims=True) - 1)
        else:  # transformers' rule: cumulative count of attended positions - 1, padding at 1
            positions = np.cumsum(mask, axis=-1) - 1
            positions = np.where(mask == 0, 1, positions)[:, -input_ids.shape[1] :]
        feeds = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}
        if self.merged:
            feeds["use_cache_branch"] = np.array([not first])
        return feeds


class Seq2SeqDecoder(_CachedDecoder):
    """The merged decoder of an encoder-decoder model, bound to one batch of encoder outputs.

    share_encoder_cache: reorders that keep every row with its own input gather only the decoder's
    self-attention cache, and when every row belongs to one input (beam search on one input) the encoder
    side (cross-attention cache, encoder states) is kept once and fed as one row that the graph
    broadcasts against the decoder rows (see the module docstring); False gathers and tiles everything,
    as a baseline to measure.
    """

    def __init__(
        self,
        session: Session,
        encoder_hidden_states: np.ndarray,
        encoder_attention_mask: np.ndarray | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        io_binding: bool = False,
        share_encoder_cache: bool = True,
        encoder_cache: Mapping[str, np.ndarray] | None = None,
    ):
        super().__init__(session, config, io_binding=io_binding)
        if not self.merged:
            raise BundleError(
                f"{session.path.name} has past inputs but no use_cache_branch; edgetf runs encoder-decoders with "
                "the merged decoder (decoder_model_merged.onnx)"
            )
        self.encoder_hidden_states = np.asarray(encoder_hidden_states)
        rows, enc_len = self.encoder_hidden_states.shape[:2]
        if encoder_attention_mask is None:
            encoder_attention_mask = np.ones((rows, enc_len), dtype=np.int64)
        self.encoder_attention_mask = np.asarray(encoder_attention_mask, dtype=np.int64)
        self.decoder_past = [n for n in self.past_names if ".encoder." not in n]
        self.encoder_past = [n for n in self.past_names if ".encoder." in n]
        self.share_encoder_cache = share_encoder_cache
        self._source = np.arange(rows)  # the input (encoder row) each decoder cache row belongs to
        self._encoder_source = np.arange(rows)  # the input each row of the encoder side belongs to
        self._given_encoder_cache = None
        if encoder_cache is not None:
            if sorted(encoder_cache) != sorted(self.encoder_past):
                raise InferenceError(
                    f"encoder_cache must hold exactly the inputs {self.encoder_past} of {session.path.name}; "
                    f"got {sorted(encoder_cache)}"
                )
            self._given_encoder_cache = {n: _as_array(v) for n, v in encoder_cache.items()}

    @property
    def encoder_cache(self) -> dict[str, Any]:
        """The cross-attention cache (``past_key_values.{i}.encoder.*``) of the current encoder side, as the
        last prefill made it; pass it as ``encoder_cache`` to a new decoder on the same encoder states to
        spare that decoder's prefill recomputing it (Whisper: language detection, then the transcription)."""
        return {n: self.cache[n] for n in self.encoder_past}

    @property
    def encoder_rows(self) -> int:
        """How many rows the encoder side (cross-attention cache, encoder states) is held and fed as: one
        when all decoder rows belong to one input and the graph broadcasts it, else one per decoder row."""
        return len(self._encoder_source)

    def _feeds(self, input_ids: np.ndarray, *, first: bool) -> dict[str, np.ndarray]:
        return {
            "input_ids": input_ids,
            "encoder_hidden_states": self.encoder_hidden_states,
            "encoder_attention_mask": self.encoder_attention_mask,
            "use_cache_branch": np.array([not first]),
        }

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        rows = input_ids.shape[0]
        if rows != self.encoder_hidden_states.shape[0]:
            raise InferenceError(
                f"decoder input has {rows} rows but the encoder output has {self.encoder_hidden_states.shape[0]}"
            )
        self._source = self._encoder_source = np.arange(rows)
        given = self._given_encoder_cache
        if given is not None and _PROMPT_ON_CACHE.get(self.session) is not False:
            if any(_as_array(v).shape[0] != rows for v in given.values()):
                raise InferenceError(f"encoder_cache rows differ from the decoder input's {rows} rows")
            past = {**{n: self._empty(n, rows, 0) for n in self.decoder_past}, **given}
            self.cache = {}
            logits = self._run(self._feeds(input_ids, first=False), past, self.decoder_past)
            self.cache.update(given)
            if _PROMPT_ON_CACHE.get(self.session) is True:
                return logits
            # first use on this session: check it against the first-step branch before relying on it
            on_cache = self.cache
            expected = self._prefill_from_states(input_ids)
            same = _close(logits, expected) and all(
                _close(_as_array(on_cache[n]), _as_array(self.cache[n])) for n in self.decoder_past
            )
            _PROMPT_ON_CACHE[self.session] = same
            if same:
                self.cache = on_cache
                return logits
            return expected
        return self._prefill_from_states(input_ids)

    def _prefill_from_states(self, input_ids: np.ndarray) -> np.ndarray:
        rows, enc_len = input_ids.shape[0], self.encoder_hidden_states.shape[1]
        past = {n: self._empty(n, rows, enc_len if ".encoder." in n else 0) for n in self.past_names}
        self.cache = {}
        return self._run(self._feeds(input_ids, first=True), past, self.past_names)

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        feeds = self._feeds(input_ids, first=False)
        if len(self._encoder_source) == len(self._source) or _BROADCASTS.get(self.session) is True:
            return self._run(feeds, self.cache, self.decoder_past)
        # first broadcast step on this session: check it against the tiled step before relying on it (a graph
        # whose cross-attention reshapes by the decoder's batch fails or differs when fed one encoder row)
        past = dict(self.cache)
        try:
            broadcast = self._run(feeds, past, self.decoder_past)
        except InferenceError:
            broadcast = None
        presents = {n: _as_array(self.cache[n]) for n in self.decoder_past}
        self.cache = past
        encoder_rows = self._encoder_source
        self._move_encoder_side(self._source)
        logits = self._run(self._feeds(input_ids, first=False), self.cache, self.decoder_past)
        same = broadcast is not None and _close(broadcast, logits)
        same = same and all(_close(presents[n], _as_array(self.cache[n])) for n in self.decoder_past)
        _BROADCASTS[self.session] = same
        if same:
            self._move_encoder_side(encoder_rows)
        return logits

    def teacher_forced_logits(self, input_ids: np.ndarray) -> np.ndarray:
        """(rows, length, vocab) float32 logits at every position of the decoder sequence ``input_ids`` in
        one pass from an empty cache (teacher forcing); the cache is left untouched."""
        return self.teacher_forced(input_ids, ["logits"])["logits"].astype(np.float32, copy=False)

    def teacher_forced(self, input_ids: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        """The graph outputs ``outputs`` (e.g. ``cross_attentions.{i}``) of one teacher-forced pass over
        ``input_ids`` from an empty cache; the cache is left untouched."""
        rows, enc_len = self.encoder_hidden_states.shape[:2]
        past = {n: self._empty(n, rows, enc_len if ".encoder." in n else 0) for n in self.past_names}
        return self.session.run({**self._feeds(np.asarray(input_ids), first=True), **past}, outputs)

    def select(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        source = self._source[rows]
        if not self.share_encoder_cache:
            super().select(rows)  # the baseline: everything moves
            self.encoder_hidden_states = self.encoder_hidden_states[rows]
            self.encoder_attention_mask = self.encoder_attention_mask[rows]
            self._source = self._encoder_source = source
            return
        self._gather(self.decoder_past, rows)
        moved = not np.array_equal(source, self._source)
        self._source = source
        if not moved:
            return  # each row stays with its input: the encoder side is right as it is
        one_input = len(source) > 1 and bool(np.all(source == source[0]))
        if one_input and _BROADCASTS.get(self.session) is not False:
            self._move_encoder_side(source[:1])  # kept once; the graph broadcasts it over the rows
        else:
            self._move_encoder_side(source)

    def _move_encoder_side(self, inputs: np.ndarray) -> None:
        """Lay the encoder side out as one row per entry of ``inputs`` (input indices)."""
        first: dict[int, int] = {}
        for i, s in enumerate(self._encoder_source.tolist()):
            first.setdefault(s, i)  # rows of one input hold the same encoder side: any of them will do
        index = np.array([first[s] for s in inputs.tolist()], dtype=np.int64)
        if np.array_equal(index, np.arange(len(self._encoder_source))):
            return
        self._gather(self.encoder_past, index)
        self.encoder_hidden_states = self.encoder_hidden_states[index]
        self.encoder_attention_mask = self.encoder_attention_mask[index]
        self._encoder_source = np.asarray(inputs, dtype=np.int64)
