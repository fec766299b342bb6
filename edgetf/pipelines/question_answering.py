"""question-answering (extractive): same inputs, options and outputs as transformers' QuestionAnsweringPipeline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from ..text import TextTokenizer, windows
from ..text import spans as sp
from ..text.batches import run_in_batches
from .base import Pipeline

_MISSING = object()
_PADDING = {None: None, False: None, "do_not_pad": None, True: "longest", "longest": "longest", "max_length": "max"}


class QuestionAnsweringPipeline(Pipeline):
    """``pipe(question="...", context="...")``, ``pipe({"question": q, "context": c})``, ``pipe(q, c)``,
    lists of questions and/or contexts, or a list of such dicts.

    One answer is a dict ``{score, start, end, answer}`` (``start``/``end``: character offsets in the
    context); ``top_k > 1`` gives a list of dicts, best first; several inputs give one result each.
    Long contexts are read in windows of ``max_seq_len`` tokens overlapping by ``doc_stride`` tokens;
    the answer may come from any window.

    Options (as transformers): top_k (1), max_answer_len (15 tokens), max_seq_len (the model's
    maximum length, at most 384), doc_stride (min(max_seq_len // 2, 128)), max_question_len
    (accepted; like transformers' fast-tokenizer path it does not cut the question), handle_impossible_answer
    (False; True also ranks the empty answer, scored from the first token), align_to_words (True: widen
    answers to whole words), padding ("do_not_pad", "longest"/True, "max_length"), batch_size (windows per
    model call; equal to batch_size=1 within float noise).
    """

    options_accepted: ClassVar[dict[str, Any]] = {
        "top_k": 1,
        "max_answer_len": 15,
        "max_seq_len": None,
        "doc_stride": None,
        "max_question_len": 64,
        "handle_impossible_answer": False,
        "align_to_words": True,
        "padding": "do_not_pad",
        "batch_size": 1,
    }

    def setup(self) -> None:
        self.tokenizer = TextTokenizer.from_bundle(self.bundle)
        self.question_first = self.tokenizer.padding_side == "right"
        self._cls_id = self.tokenizer.token_id("cls_token")

    def cli_inputs(self, args: list[str]) -> Any:
        if len(args) != 2:
            raise InvalidInputError(f"question-answering takes two inputs, QUESTION and CONTEXT; got {len(args)}")
        return {"question": args[0], "context": args[1]}

    def demo_input(self) -> Any:
        return {"question": "Where does Wolfgang live?", "context": "My name is Wolfgang and I live in Berlin."}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        question, context = kwargs.pop("question", _MISSING), kwargs.pop("context", _MISSING)
        opts = self._checked(self.options(kwargs))
        examples = [_normalize(item) for item in _examples(args, question, context)]
        results = [self._answer(q, c, opts) for q, c in examples]
        return results[0] if len(results) == 1 else results

    # -- options ---------------------------------------------------------------------------------
    def _checked(self, opts: dict[str, Any]) -> dict[str, Any]:
        for name, low in (("top_k", 1), ("max_answer_len", 1), ("max_question_len", 1), ("batch_size", 1)):
            _check_int(name, opts[name], low)
        max_seq_len = opts["max_seq_len"]
        if max_seq_len is None:
            max_seq_len = min(self.tokenizer.model_max_length or 384, 384)
        _check_int("max_seq_len", max_seq_len, 1)
        doc_stride = opts["doc_stride"]
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        _check_int("doc_stride", doc_stride, 0)
        if doc_stride > max_seq_len:
            raise InvalidInputError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
        if opts["padding"] not in _PADDING:
            raise InvalidInputError(f"padding={opts['padding']!r} is not accepted; use one of {list(_PADDING)}")
        return {**opts, "max_seq_len": max_seq_len, "doc_stride": doc_stride, "padding": _PADDING[opts["padding"]]}

    # -- one question ----------------------------------------------------------------------------
    def _answer(self, question: str, context: str, opts: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
        top_k, align = opts["top_k"], bool(opts["align_to_words"])
        impossible = bool(opts["handle_impossible_answer"])
        candidates = top_k * 2 + 10 if align else top_k  # aligning to words may merge candidates
        encodings = self._windows(question, context, opts["max_seq_len"], opts["doc_stride"])
        logits = run_in_batches(
            encodings,
            lambda feeds: self.session().run(feeds, ["start_logits", "end_logits"]),
            pad_token_id=self.tokenizer.pad_token_id,
            padding_side=self.tokenizer.padding_side,
            batch_size=opts["batch_size"],
            min_length=self._padded_length(encodings, opts),
        )
        answers: list[dict[str, Any]] = []
        null_score = sp.NULL_SCORE_START
        for enc, out in zip(encodings, logits):
            allowed = sp.answer_mask(
                enc.sequence_ids,
                enc.ids,
                enc.attention_mask,
                cls_token_id=self._cls_id,
                context_sequence=1 if self.question_first else None,
            )
            start, end = sp.span_probabilities(out["start_logits"], out["end_logits"], allowed)
            if impossible:
                null_score = min(null_score, (start[0] * end[0]).item())
            start[0] = end[0] = 0.0  # the first position (CLS) is never an answer span
            starts, ends, scores = sp.decode_spans(start, end, candidates, opts["max_answer_len"], allowed)
            for s, e, score in zip(starts, ends, scores):
                char_start, char_end = sp.char_span(
                    enc, s, e, sequence_index=1 if self.question_first else 0, align_to_words=align
                )
                sp.add_answer(answers, score.item(), char_start, char_end, context)
        return sp.rank_answers(answers, top_k, null_score if impossible else None)

    def _windows(self, question: str, context: str, max_seq_len: int, doc_stride: int) -> list[Any]:
        tok = self.tokenizer
        first, second = (question, context) if self.question_first else (context, question)
        strategy = "only_second" if self.question_first else "only_first"
        whole = tok.encode(first, second)
        if len(whole) > max_seq_len:
            # tokenizers fails (or panics) when the fixed part leaves no room; say so in words
            kept = sum(1 for sid in whole.sequence_ids if sid == (0 if self.question_first else 1))
            room = max_seq_len - kept - tok.num_special_tokens(pair=True)
            if room < 1:
                raise InvalidInputError(
                    f"the question is {kept} tokens: with the special tokens it leaves no room for the context in "
                    f"max_seq_len={max_seq_len}; shorten the question or raise max_seq_len"
                )
            if doc_stride >= room:
                raise InvalidInputError(
                    f"doc_stride ({doc_stride}) must be less than the {room} context tokens that fit in each window "
                    f"(max_seq_len={max_seq_len} minus the question and special tokens)"
                )
        return windows(tok.encode(first, second, truncation=strategy, max_length=max_seq_len, stride=doc_stride))

    def _padded_length(self, encodings: list[Any], opts: dict[str, Any]) -> int | None:
        if opts["padding"] == "longest":
            return max(len(e.ids) for e in encodings)
        if opts["padding"] == "max":
            return opts["max_seq_len"]
        return None


def _examples(args: tuple[Any, ...], question: Any, context: Any) -> list[Any]:
    """The inputs as a list of candidate {"question", "context"} items (checked by _normalize)."""
    if args:
        if len(args) == 1:
            inputs = args[0]
        elif len(args) == 2 and all(isinstance(a, str) for a in args):
            inputs = [{"question": args[0], "context": args[1]}]
        else:
            inputs = list(args)
    elif question is not _MISSING and context is not _MISSING:
        if isinstance(question, list) and isinstance(context, str):
            inputs = [{"question": q, "context": context} for q in question]
        elif isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise InvalidInputError(
                    f"question and context lists must have the same length; got {len(question)} and {len(context)}"
                )
            inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        elif isinstance(question, str) and isinstance(context, str):
            inputs = [{"question": question, "context": context}]
        else:
            raise InvalidInputError(
                "question and context must be str, or question a list of str with one context, or two lists of the "
                f"same length; got question: {type(question).__name__}, context: {type(context).__name__}"
            )
    else:
        raise InvalidInputError(
            "question-answering takes question= and context= (str or lists), a {'question', 'context'} dict, "
            "a list of such dicts, or two positional str (question, context)"
        )
    if isinstance(inputs, dict):
        return [inputs]
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    raise InvalidInputError(
        f"question-answering takes a {{'question', 'context'}} dict or a list of them; got {type(inputs).__name__}"
    )


def _normalize(item: Any) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise InvalidInputError(
            f"each question-answering input is a {{'question': str, 'context': str}} dict; got {type(item).__name__}"
        )
    unknown = set(item) - {"question", "context"}
    if unknown:
        raise InvalidInputError(f"a question-answering input takes keys 'question' and 'context'; got {sorted(item)}")
    values = []
    for key in ("question", "context"):
        if key not in item:
            raise InvalidInputError("You need to provide a dictionary with keys {question:..., context:...}")
        value = item[key]
        if value is None:
            raise InvalidInputError(f"`{key}` cannot be None")
        if not isinstance(value, str):
            raise InvalidInputError(f"`{key}` must be a str, got {type(value).__name__}: {str(value)[:60]!r}")
        if len(value) == 0:
            raise InvalidInputError(f"`{key}` cannot be empty")
        values.append(value)
    return values[0], values[1]


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
