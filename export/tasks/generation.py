"""Export knowledge for generation: GPT-2 style decoders with a KV cache (``model``), and BART/T5/Marian as
an encoder plus a merged decoder (``encoder_model``, ``decoder_model_merged``).

Parity: fp32 must give the reference pipeline's outputs token for token with greedy search and with beam
search (no_repeat_ngram_size and length_penalty set); ``max_diff`` is the largest logit difference from
PyTorch along the reference sequences (teacher forcing). Other dtypes are judged by ``agreement``: the
top-1 agreement of their logits with the fp32 ONNX logits along the same sequences; the share of whole
outputs identical to the reference is reported as ``exact_match``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import CheckContext, TaskExport, register
from .common import edgetf_pipeline, reference, transformers_pipeline, verdict

# Settings the check runs (each against the reference pipeline).
SETTINGS: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False, "num_beams": 1, "max_new_tokens": 16},
    "beam": {
        "do_sample": False,
        "num_beams": 3,
        "num_return_sequences": 2,
        "no_repeat_ngram_size": 2,
        "length_penalty": 0.8,
        "max_new_tokens": 12,
    },
}


def _token_key(task: str) -> str:
    return {"summarization": "summary", "translation": "translation"}.get(task, "generated") + "_token_ids"


def _as_lists(result: Any) -> list[dict[str, Any]]:
    return result if isinstance(result, list) else [result]


def _run(pipe: Any, inputs: list[str], settings: dict[str, Any]) -> dict[str, list[Any]]:
    out = {}
    for name, kwargs in settings.items():
        out[name] = [_as_lists(pipe(text, return_tensors=True, **kwargs)) for text in inputs]
    return out


def _sequences(outputs: dict[str, list[Any]], key: str) -> list[list[int]]:
    return [[int(t) for t in rec[key]] for setting in outputs.values() for recs in setting for rec in recs]


def _decoder_only_logits(session: Any, ids: list[int], config: dict[str, Any]) -> np.ndarray:
    from edgetf.generation import CausalLM

    return CausalLM(session, config).teacher_forced_logits(np.array([ids]))[0]


def chat_inputs(bundle: Any, texts: list[Any]) -> list[Any]:
    """Chats (role/content messages) the decoder-only check adds when the bundle's tokenizer has a chat
    template: the runtime renders them with it, as the reference pipeline does."""
    from edgetf.text.chat import bundle_template

    if bundle_template(bundle, bundle.read_json_optional("tokenizer_config.json") or {}) is None:
        return []
    user = next((t for t in texts if isinstance(t, str) and t.strip()), "Hello, who are you?")
    return [
        [{"role": "system", "content": "You answer in one short sentence."}, {"role": "user", "content": user}],
        [{"role": "user", "content": user}, {"role": "assistant", "content": "Sure:"}],  # continued (prefill)
    ]


def _seq2seq_logits(encoder: Any, decoder: Any, source: list[int], target: list[int]) -> np.ndarray:
    from edgetf.generation import Seq2SeqDecoder

    mask = np.ones((1, len(source)), dtype=np.int64)
    hidden = encoder.run({"input_ids": np.array([source]), "attention_mask": mask})["last_hidden_state"]
    return Seq2SeqDecoder(decoder, hidden, mask).teacher_forced_logits(np.array([target]))[0]


def check_generation(ctx: CheckContext) -> dict[str, Any]:
    from edgetf.session import Session

    task = ctx.entry.task
    key = _token_key(task)
    is_seq2seq = task != "text-generation"
    inputs = list(ctx.inputs)
    pipe = edgetf_pipeline(ctx, task)
    if not is_seq2seq:
        inputs += chat_inputs(pipe.bundle, inputs)

    def run_reference() -> dict[str, Any]:
        import torch
        import transformers

        pipe = transformers_pipeline(ctx, task)
        outputs = _run(pipe, inputs, SETTINGS)
        tok = pipe.tokenizer
        prefix = pipe.prefix or ""
        logits = []
        sources = []
        with torch.no_grad():
            for setting in outputs.values():
                for text, recs in zip(inputs, setting):
                    for rec in recs:
                        ids = [int(t) for t in rec[key]]
                        if is_seq2seq:
                            src = tok(prefix + text)["input_ids"]
                            sources.append(src)
                            out = pipe.model(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([ids]))
                        else:
                            out = pipe.model(input_ids=torch.tensor([ids]))
                        logits.append(out.logits[0].numpy())
        del transformers
        return {"outputs": outputs, "logits": logits, "sources": sources}

    ref = reference(ctx, f"generation:{task}", run_reference)
    got = _run(pipe, inputs, SETTINGS)
    ref_seqs, got_seqs = _sequences(ref["outputs"], key), _sequences(got, key)
    exact = sum(a == b for a, b in zip(ref_seqs, got_seqs)) / max(len(ref_seqs), 1)

    # teacher-forced logits along the reference sequences: this dtype vs PyTorch (max_diff) and vs fp32 ONNX
    def logits_of(dtype: str) -> list[np.ndarray]:
        if is_seq2seq:
            enc = Session(pipe.bundle.onnx("encoder_model", dtype))
            dec = Session(pipe.bundle.onnx("decoder_model_merged", dtype))
            return [_seq2seq_logits(enc, dec, s, t) for s, t in zip(ref["sources"], ref_seqs)]
        session = Session(pipe.bundle.onnx("model", dtype))
        return [_decoder_only_logits(session, t, pipe.bundle.config) for t in ref_seqs]

    mine = logits_of(ctx.dtype)
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(mine, ref["logits"]))
    if ctx.dtype == "fp32":
        agreement = exact
        top1 = 1.0
    else:
        base = logits_of("fp32")
        hits = total = 0
        for a, b in zip(mine, base):
            hits += int(np.sum(a.argmax(-1) == b.argmax(-1)))
            total += a.shape[0]
        top1 = agreement = hits / max(total, 1)
    extra = {"exact_match": exact, "top1_agreement_vs_fp32": top1, "settings": SETTINGS, "sequences": len(ref_seqs)}
    chats = sum(isinstance(x, list) for x in inputs)
    if chats:
        extra["chat_inputs"] = chats
    if ctx.dtype != "fp32":
        return verdict(
            ctx,
            metric="teacher-forced top-1 vs fp32",
            max_diff=max_diff,
            agreement=agreement,
            n=len(ref_seqs),
            extra=extra,
        )
    return verdict(
        ctx, metric="tokens vs reference", max_diff=max_diff, agreement=agreement, n=len(ref_seqs), extra=extra
    )


register(
    TaskExport("text-generation", "text-generation-with-past", check_generation, parity_inputs="prompts"),
    *(
        TaskExport(task, "text2text-generation-with-past", check_generation, parity_inputs="sources")
        for task in ("summarization", "translation", "text2text-generation")
    ),
)
