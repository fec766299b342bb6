"""Export knowledge for the encoder text tasks (BERT, DistilBERT, RoBERTa): token-classification,
question-answering, fill-mask, feature-extraction.

Each parity check runs the catalog's text inputs (made into the task's input form) through the
transformers pipeline on the checkpoint and through edgetf on the bundle:

* fp32 must give the same structure (keys, lengths, order), identical strings and offsets, and
  scores within the tolerance; ``mismatches`` counts inputs where it does not.
* every dtype reports ``agreement`` (same top label / answer / token, or embedding cosine >= 0.99)
  and ``max_diff``, the worst score (or value) error.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from . import CheckContext, TaskExport, register
from .common import QUANT_MAX_DIFF, edgetf_pipeline, reference, transformers_pipeline, verdict

QUESTIONS = ("What is this about?", "Where?", "Who did it, and when?", "Qu'est-ce que c'est ? 東京 😀")
EMBEDDING_COSINE = 0.99


def compare(ref: Any, out: Any, path: str = "$") -> tuple[float, str | None]:
    """(largest float difference, first structural/string difference or None) between two outputs."""
    if isinstance(ref, dict):
        if not isinstance(out, dict) or list(ref) != list(out):
            return 0.0, f"{path}: keys {list(ref)} != {list(out) if isinstance(out, dict) else type(out).__name__}"
        return _fold(compare(ref[k], out[k], f"{path}.{k}") for k in ref)
    if isinstance(ref, (list, tuple)):
        if not isinstance(out, (list, tuple)) or len(ref) != len(out):
            got = len(out) if isinstance(out, (list, tuple)) else type(out).__name__
            return 0.0, f"{path}: length {len(ref)} != {got}"
        return _fold(compare(r, o, f"{path}[{i}]") for i, (r, o) in enumerate(zip(ref, out)))
    if hasattr(ref, "dtype") and getattr(ref, "shape", ()) == () and "float" in str(ref.dtype):
        ref = float(ref)  # numpy / torch scalar
    if isinstance(ref, float):
        if not isinstance(out, (float, int)):
            return 0.0, f"{path}: {type(out).__name__} where a float was expected"
        return abs(ref - float(out)), None
    if hasattr(ref, "item"):
        ref = ref.item()
    if ref != out:
        return 0.0, f"{path}: {ref!r} != {out!r}"
    return 0.0, None


def _fold(items: Any) -> tuple[float, str | None]:
    worst, problem = 0.0, None
    for diff, issue in items:
        worst = max(worst, diff)
        problem = problem or issue
    return worst, problem


def _structure(ctx: CheckContext, pairs: list[tuple[Any, Any]]) -> tuple[float, list[str]]:
    """fp32 only: (max diff, problems) over (reference, edgetf) output pairs."""
    if ctx.dtype != "fp32":
        return 0.0, []
    worst, problems = 0.0, []
    for ref, out in pairs:
        diff, problem = compare(ref, out)
        worst = max(worst, diff)
        if problem:
            problems.append(problem)
    return worst, problems


def _report(ctx: CheckContext, *, metric: str, max_diff: float, agreement: float, n: int, **extra: Any):
    structure_diff, problems = extra.pop("structure", (0.0, []))
    report = verdict(
        ctx,
        metric=metric,
        max_diff=max(max_diff, structure_diff),
        agreement=agreement,
        n=n,
        extra=extra,
        quant_max_diff=QUANT_MAX_DIFF,
    )  # scores are probabilities
    if ctx.dtype == "fp32":
        report["mismatches"] = len(problems)
        if problems:
            report["passed"] = False
            report["first_mismatch"] = problems[0][:300]
    return report


# -- token-classification ------------------------------------------------------------------------
STRATEGIES = ("none", "simple", "first", "average", "max")


def check_token_classification(ctx: CheckContext) -> dict[str, Any]:
    texts = list(ctx.inputs)
    calls = [(text, {"aggregation_strategy": s, "ignore_labels": []}) for text in texts for s in STRATEGIES]
    calls += [(text, {"aggregation_strategy": "simple"}) for text in texts]
    longest = max(texts, key=len, default="")
    calls += [(longest, {"aggregation_strategy": s, "stride": 16}) for s in ("simple", "first")]

    def run_reference() -> list[Any]:
        pipe = transformers_pipeline(ctx, "token-classification")
        with warnings.catch_warnings():  # "fallback heuristic" for tokenizers without word markers
            warnings.simplefilter("ignore", UserWarning)
            return [pipe(text, **kw) for text, kw in calls]

    expected = reference(ctx, "token-classification", run_reference)
    pipe = edgetf_pipeline(ctx, "token-classification")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = [pipe(text, **kw) for text, kw in calls]
    # agreement and score error on the per-token labels (strategy "none", nothing ignored)
    tokens = same = same_inputs = inputs = 0
    max_diff = 0.0
    for (_, kw), ref, out in zip(calls, expected, got):
        if kw != {"aggregation_strategy": "none", "ignore_labels": []}:
            continue
        inputs += 1
        by_index = {e["index"]: e for e in out}
        all_same = True
        for r in ref:
            o = by_index.get(r["index"])
            tokens += 1
            if o is not None and o["entity"] == r["entity"]:
                same += 1
                max_diff = max(max_diff, abs(float(r["score"]) - o["score"]))
            else:
                all_same = False
        same_inputs += all_same
    return _report(
        ctx,
        metric="per-token label score",
        max_diff=max_diff,
        agreement=same / max(tokens, 1),
        n=tokens,
        input_agreement=same_inputs / max(inputs, 1),
        inputs=inputs,
        structure=_structure(ctx, list(zip(expected, got))),
    )


# -- question-answering ----------------------------------------------------------------------------
def qa_inputs(texts: list[str], per_context: int = 2) -> list[dict[str, str]]:
    """Each non-empty text as a context, asked ``per_context`` questions from QUESTIONS."""
    contexts = [t for t in texts if t]
    return [
        {"question": QUESTIONS[(i + j) % len(QUESTIONS)], "context": c}
        for j in range(per_context)
        for i, c in enumerate(contexts)
    ]


def check_question_answering(ctx: CheckContext) -> dict[str, Any]:
    items = qa_inputs(ctx.inputs, per_context=3)
    first = items[: len(items) // 3]  # one question per context: the option variants run on these
    calls = [(item, {"top_k": 3}) for item in items]
    calls += [(item, {"top_k": 2, "handle_impossible_answer": True}) for item in first]
    calls += [(item, {"top_k": 3, "align_to_words": False}) for item in first]
    # short windows over the short contexts (transformers needs ~0.2 s a window: the long text is
    # read in windows by the default-settings runs above)
    calls += [
        (item, {"top_k": 2, "max_seq_len": 64, "doc_stride": 24}) for item in first if len(item["context"]) < 1000
    ]

    def run_reference() -> list[Any]:
        pipe = transformers_pipeline(ctx, "question-answering")
        return [pipe(item, **kw) for item, kw in calls]

    expected = reference(ctx, "question-answering", run_reference)
    pipe = edgetf_pipeline(ctx, "question-answering")
    got = [pipe(item, **kw) for item, kw in calls]
    same = in_top = 0
    max_diff = 0.0
    for ref, out in zip(expected[: len(items)], got[: len(items)]):  # the top_k=3 runs
        ref, out = _as_list(ref), _as_list(out)
        ref_spans = [(a["start"], a["end"]) for a in ref]
        out_top = (out[0]["start"], out[0]["end"]) if out else None
        same += bool(ref_spans) and out_top == ref_spans[0]
        in_top += out_top in ref_spans
        spans = {(a["start"], a["end"]): a["score"] for a in out}
        for answer in ref:
            score = spans.get((answer["start"], answer["end"]))
            if score is not None:
                max_diff = max(max_diff, abs(answer["score"] - score))
    empty_rejected = _raises(lambda: pipe(question="Where?", context=""), ValueError)
    report = _report(
        ctx,
        metric="answer span score",
        max_diff=max_diff,
        agreement=same / max(len(items), 1),
        n=len(items),
        top_answer_in_reference_top3=in_top / max(len(items), 1),
        empty_context_rejected=empty_rejected,
        structure=_structure(ctx, list(zip(expected, got))),
    )
    report["passed"] = report["passed"] and empty_rejected
    return report


def _as_list(result: Any) -> list[dict[str, Any]]:
    return result if isinstance(result, list) else [result]


def _raises(call: Any, error: type[BaseException]) -> bool:
    try:
        call()
    except error:
        return True
    return False


# -- fill-mask ---------------------------------------------------------------------------------------
def masked_inputs(texts: list[str], mask: str, positions: tuple[float, ...] = (0.5,)) -> list[str]:
    """Each text with one mask token at a word boundary near each relative position (at most 200
    characters in; duplicates dropped), plus, for the first three, a second mask at the start."""
    out = []
    for text in texts:
        for position in positions:
            cut = min(int(len(text) * position), 200)
            space = text.rfind(" ", 0, cut)
            cut = space + 1 if space > 0 else cut
            out.append(text[:cut] + mask + text[cut:])
    out = list(dict.fromkeys(out))
    return out + [f"{mask} {text}" for text in out[:3]]


def check_fill_mask(ctx: CheckContext) -> dict[str, Any]:
    from transformers import AutoTokenizer

    mask = AutoTokenizer.from_pretrained(str(ctx.checkpoint)).mask_token
    items = masked_inputs(ctx.inputs, mask, positions=(0.1, 0.3, 0.5, 0.7, 0.9))
    kwargs = {"top_k": 5, "tokenizer_kwargs": {"truncation": True}}

    def run_reference() -> list[Any]:
        pipe = transformers_pipeline(ctx, "fill-mask")
        return [pipe(text, **kwargs) for text in items]

    expected = reference(ctx, "fill-mask", run_reference)
    pipe = edgetf_pipeline(ctx, "fill-mask")
    got = [pipe(text, **kwargs) for text in items]
    masks = same = 0
    max_diff = 0.0
    for ref, out in zip(expected, got):
        ref_rows = ref if ref and isinstance(ref[0], list) else [ref]
        out_rows = out if out and isinstance(out[0], list) else [out]
        for r_row, o_row in zip(ref_rows, out_rows):
            masks += 1
            same += r_row[0]["token"] == o_row[0]["token"]
            scores = {p["token"]: p["score"] for p in o_row}
            for p in r_row:
                if p["token"] in scores:
                    max_diff = max(max_diff, abs(p["score"] - scores[p["token"]]))
    no_mask_rejected = _raises(lambda: pipe("no mask token here"), ValueError)
    report = _report(
        ctx,
        metric="top-5 token score",
        max_diff=max_diff,
        agreement=same / max(masks, 1),
        n=masks,
        no_mask_rejected=no_mask_rejected,
        structure=_structure(ctx, list(zip(expected, got))),
    )
    report["passed"] = report["passed"] and no_mask_rejected
    return report


# -- feature-extraction ------------------------------------------------------------------------------
def reference_embeddings(ctx: CheckContext, texts: list[str]) -> list[list[float]]:
    """Sentence embeddings the usual way: torch mean over the attention mask, then F.normalize."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.checkpoint))
    model = AutoModel.from_pretrained(str(ctx.checkpoint)).eval()
    vectors = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, truncation=True, return_tensors="pt")
            hidden = model(**enc)[0]
            mask = enc["attention_mask"].unsqueeze(-1).expand(hidden.size()).float()
            mean = torch.sum(hidden * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
            vectors.append(torch.nn.functional.normalize(mean, p=2, dim=1)[0].tolist())
    return vectors


def check_feature_extraction(ctx: CheckContext) -> dict[str, Any]:
    import numpy as np

    texts = list(ctx.inputs)

    def run_reference() -> dict[str, Any]:
        pipe = transformers_pipeline(ctx, "feature-extraction")
        return {
            "hidden": [pipe(text, truncation=True) for text in texts],
            "pooled": reference_embeddings(ctx, texts),
        }

    expected = reference(ctx, "feature-extraction", run_reference)
    pipe = edgetf_pipeline(ctx, "feature-extraction")
    hidden = [pipe(text, truncation=True) for text in texts]
    pooled = [pipe(text, pooling="mean", normalize=True) for text in texts]
    max_diff, cosines = 0.0, []
    for ref, out in zip(expected["hidden"], hidden):
        ref_arr, out_arr = np.asarray(ref), np.asarray(out)
        if ref_arr.shape != out_arr.shape:
            max_diff = math.inf
            continue
        max_diff = max(max_diff, float(np.abs(ref_arr - out_arr).max()))
    pooled_diff = 0.0
    for ref, out in zip(expected["pooled"], pooled):  # fp32 and q8 against the fp32 torch reference
        ref_arr, out_arr = np.asarray(ref), np.asarray(out)
        pooled_diff = max(pooled_diff, float(np.abs(ref_arr - out_arr).max()))
        cosines.append(float(ref_arr @ out_arr / (np.linalg.norm(ref_arr) * np.linalg.norm(out_arr))))
    agreement = sum(c >= EMBEDDING_COSINE for c in cosines) / max(len(cosines), 1)
    # max_diff: the normalized sentence embedding (unit vectors, comparable across models); the raw
    # hidden states are held to the fp32 tolerance through the structure comparison.
    return _report(
        ctx,
        metric="mean-pooled normalized embedding",
        max_diff=pooled_diff,
        agreement=agreement,
        n=len(texts),
        hidden_max_diff=max_diff,
        min_cosine=min(cosines, default=1.0),
        agreement_rule=f"mean-pooled embedding cosine >= {EMBEDDING_COSINE}",
        structure=_structure(ctx, list(zip(expected["hidden"], hidden))),
    )


register(
    TaskExport("token-classification", "token-classification", check_token_classification, parity_inputs="text"),
    TaskExport("question-answering", "question-answering", check_question_answering, parity_inputs="text"),
    TaskExport("fill-mask", "fill-mask", check_fill_mask, parity_inputs="text"),
    TaskExport("feature-extraction", "feature-extraction", check_feature_extraction, parity_inputs="text"),
)
