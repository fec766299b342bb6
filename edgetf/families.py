"""Model families as data: what a checkpoint's ``config.json`` ``model_type`` says about its ONNX bundle.

One row per family, shared by the runtime and the export layer (transformers.js keeps the same
knowledge in ``MODEL_SESSION_CONFIG``). The runtime reads the session layout (which ONNX files a
bundle of that family has); export reads the rest (optimum's ``-with-past`` variant, custom ONNX
configs, quantization specifics) — as plain data, so this module imports nothing heavy and never
imports ``export``.

Columns:

* ``layout``: ``encoder`` (one ``model.onnx``), ``decoder`` (one ``model.onnx`` with a KV cache), or
  ``encoder-decoder`` (``encoder_model.onnx`` + ``decoder_model_merged.onnx``).
* ``tasks``: the edgetf tasks a bundle of the family can be exported for.
* ``quantize``: ``untie_lm_head`` (give a tied output projection its own weight, so int8 never
  dequantizes the embedding table per step), ``preprocess`` (onnxruntime's quantization pre-processing:
  folds weight-normed convolutions), ``op_types`` (what q8 quantizes; default MatMul).
* ``quantize["static_conv"]``: the family's convolutions are worth static (calibrated) QDQ int8
  (export's ladder level ``conv-static``, tried before the MatMul-only levels): ``op_types`` quantized
  statically (Conv; Relu/MaxPool/Add where they follow convs), ``float_nodes`` (regexes of node names
  kept float), ``method`` (calibration: minmax, percentile or entropy).
* ``optimum_tasks``: optimum's task name for an edgetf task where the two differ (``-with-past`` is
  added for every family with a KV cache).
* ``onnx_config``: the name of a custom ONNX config the export layer registers (where optimum has none,
  or drops an input the runtime needs).
* ``static_image_size``: the graph is only right at the traced height/width; export traces it at the
  image processor's size and records it.
* ``word_alignment``: the merged decoder also outputs its cross-attention weights
  (``cross_attentions.{layer}``, as transformers.js's Whisper exports with ``output_attentions``), which
  word timestamps align with; the heads to read are the checkpoint's generation_config.json
  ``alignment_heads``, the smoothing its config.json ``median_filter_width``.

A ``model_type`` not in the table still exports when optimum knows it: :func:`family_for` then
infers a generic family from the config (encoder-decoder when ``is_encoder_decoder``, decoder for
text generation, else encoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

LAYOUTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "encoder": ("model",),
        "decoder": ("model",),
        "encoder-decoder": ("encoder_model", "decoder_model_merged"),
    }
)

TEXT_ENCODER_TASKS = ("text-classification", "token-classification", "question-answering", "fill-mask")
TEXT_ENCODER_TASKS += ("feature-extraction",)
SEQ2SEQ_TASKS = ("summarization", "translation", "text2text-generation")
UNTIED_HEAD = MappingProxyType({"untie_lm_head": True})
AUDIO_ENCODER = MappingProxyType({"preprocess": True})
# static int8 convolutions (see the ``quantize`` column); measured in benchmarks/bench_vision.py, bench_speech.py
RESNET_CONVS = MappingProxyType({"op_types": ("Conv", "Relu", "MaxPool"), "method": "minmax"})
# GLPN: the depthwise 3x3 convs of the Mix-FFN (between float MatMuls and GELU) stay float
MIT_CONVS = MappingProxyType({"op_types": ("Conv", "Relu"), "float_nodes": (r"/dwconv/Conv$",), "method": "minmax"})


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    layout: str
    tasks: tuple[str, ...]
    quantize: Mapping[str, Any] = field(default_factory=dict)
    onnx_config: str | None = None
    static_image_size: bool = False
    word_alignment: bool = False
    optimum_tasks: Mapping[str, str] = field(default_factory=dict)  # edgetf task -> optimum's, where they differ
    known: bool = True  # False: inferred for a model_type outside the table

    @property
    def components(self) -> tuple[str, ...]:
        """The ONNX files (``onnx/<component>.onnx``) a bundle of this family has."""
        return LAYOUTS[self.layout]

    @property
    def generative(self) -> bool:
        """True when the graphs carry a KV cache (optimum's ``-with-past`` export)."""
        return self.layout != "encoder"


FAMILIES: tuple[Family, ...] = (
    # -- text encoders
    Family("bert", ("bert",), "encoder", TEXT_ENCODER_TASKS),
    Family("distilbert", ("distilbert",), "encoder", TEXT_ENCODER_TASKS),
    Family("roberta", ("roberta", "xlm-roberta", "camembert"), "encoder", TEXT_ENCODER_TASKS),
    Family("albert", ("albert",), "encoder", TEXT_ENCODER_TASKS),
    Family("electra", ("electra",), "encoder", TEXT_ENCODER_TASKS),
    Family("deberta", ("deberta", "deberta-v2"), "encoder", TEXT_ENCODER_TASKS),
    Family("mpnet", ("mpnet",), "encoder", TEXT_ENCODER_TASKS),
    # -- decoders (text generation with a KV cache). optimum-onnx 0.1.0 writes one model.onnx (no merged
    # decoder) with input_ids, attention_mask, position_ids and past_key_values.{i}.key|value shaped
    # (batch, num_key_value_heads, past, head_dim), heads and head_dim static: grouped-query attention and
    # an explicit head_dim need nothing more. A tied head (GPT-2; Qwen2 and Llama-3.2 small sizes) exports
    # as MatMul(x, Transpose(embedding)), hence untie_lm_head for q8 (a no-op on untied heads). The build
    # rewrites gpt2/llama/qwen2 graphs with onnxruntime's fused attention (export/decoder_graph.py: the
    # attention and rotary run inside MultiHeadAttention / GroupQueryAttention + RotaryEmbedding, float);
    # where it cannot (mistral, qwen3), optimum's graph keeps its rotary and score MatMuls float
    # (MatMul-only q8 skips them: no constant weight).
    # Verified by tests/test_decoders.py for gpt2, llama, qwen2 (not mistral, qwen3).
    Family("gpt2", ("gpt2",), "decoder", ("text-generation",), UNTIED_HEAD),
    Family("llama", ("llama", "mistral"), "decoder", ("text-generation",), UNTIED_HEAD),
    Family("qwen2", ("qwen2", "qwen3"), "decoder", ("text-generation",), UNTIED_HEAD),
    # -- encoder-decoders
    Family("bart", ("bart", "mbart"), "encoder-decoder", SEQ2SEQ_TASKS, UNTIED_HEAD),
    Family("t5", ("t5", "mt5"), "encoder-decoder", SEQ2SEQ_TASKS, UNTIED_HEAD),
    Family("marian", ("marian",), "encoder-decoder", SEQ2SEQ_TASKS, UNTIED_HEAD),
    # -- speech. Wav2Vec2 has no static_conv: int8 feature-encoder convs (first conv and positional conv
    # float) missed the random-weight closeness gate at base size (worst relative error 0.72 MinMax, 0.63
    # Percentile; dynamic int8 as per-tap MatMuls, conv_as_matmul: 0.57; MatMul-only 0.035).
    Family(
        "whisper",
        ("whisper",),
        "encoder-decoder",
        ("automatic-speech-recognition",),
        UNTIED_HEAD,
        onnx_config="whisper-cross-attentions",
        word_alignment=True,
    ),
    Family(
        "wav2vec2",
        ("wav2vec2", "hubert", "wavlm", "unispeech-sat"),
        "encoder",
        ("automatic-speech-recognition", "audio-classification"),
        AUDIO_ENCODER,
    ),
    # -- vision (measured with optimum-onnx 0.1.0, transformers 4.57, torch 2.13; q8 quantizes MatMuls
    # dynamically; convolutions are static int8 only where static_conv says so: DETR, GLPN, Mask2Former).
    # Image processors are the runtime's, by image_processor_type.
    # DeiT's ...ForImageClassificationWithTeacher (logits = mean of its two heads) exports like the plain
    # head; Swin's window reshapes are traced at config.image_size, which its processor's fixed size matches.
    Family(
        "vit",
        ("vit", "deit", "beit", "swin", "convnext", "convnextv2", "mobilevit"),
        "encoder",
        ("image-classification",),
    ),
    Family(
        "detr",
        ("detr",),
        "encoder",
        ("object-detection",),
        {"static_conv": RESNET_CONVS},
        onnx_config="detr-with-pixel-mask",
    ),
    # YOLOS has no pixel mask; its position embeddings are interpolated in the graph: any size runs.
    Family("yolos", ("yolos",), "encoder", ("object-detection",)),
    Family(
        "mask2former",
        ("mask2former",),
        "encoder",
        ("image-segmentation",),
        {"static_conv": RESNET_CONVS},
        onnx_config="mask2former",
        static_image_size=True,
    ),
    # SegFormer: optimum's "image-segmentation" (its "semantic-segmentation") exports the per-pixel logits
    # (N, C, H/4, W/4); the runtime's segmentation head serves subtask "semantic" from them.
    Family("segformer", ("segformer",), "encoder", ("image-segmentation", "image-classification")),
    Family("glpn", ("glpn",), "encoder", ("depth-estimation",), {"static_conv": MIT_CONVS}),
    # DPT with a ViT backbone (not hybrid) only runs on square patch grids, in transformers too.
    Family("dpt", ("dpt",), "encoder", ("depth-estimation",)),
    # Depth Anything is not registered in optimum-onnx 0.1.0: DPT's ONNX config with a size-following head.
    Family("depth_anything", ("depth_anything",), "encoder", ("depth-estimation",), onnx_config="depth-anything"),
)

_BY_MODEL_TYPE: Mapping[str, Family] = MappingProxyType({t: f for f in FAMILIES for t in f.model_types})
GENERATION_TASKS = frozenset({"text-generation", *SEQ2SEQ_TASKS})


def model_type(config: Mapping[str, Any]) -> str:
    return str(config.get("model_type") or "")


def family_for(config: Mapping[str, Any], task: str | None = None) -> Family:
    """The family row of a config.json; a generic inferred one for a model_type outside the table."""
    found = _BY_MODEL_TYPE.get(model_type(config))
    if found is not None:
        return found
    if config.get("is_encoder_decoder"):
        layout = "encoder-decoder"
    elif task == "text-generation":
        layout = "decoder"
    else:
        layout = "encoder"
    untie = UNTIED_HEAD if layout != "encoder" else {}
    return Family(
        model_type(config) or "unknown", (model_type(config),), layout, (task,) if task else (), untie, known=False
    )


def families_for_task(task: str) -> list[Family]:
    """The table's families that serve ``task`` (for error messages)."""
    return [f for f in FAMILIES if task in f.tasks]


def describe(families: list[Family]) -> str:
    """``bert, distilbert, roberta (roberta, xlm-roberta, camembert), ...`` for one-line messages."""
    parts = []
    for fam in families:
        others = [t for t in fam.model_types if t != fam.name]
        parts.append(f"{fam.name} ({', '.join(fam.model_types)})" if others else fam.name)
    return ", ".join(parts)
