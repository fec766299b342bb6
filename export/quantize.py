"""Quantization with onnxruntime's own tools: dynamic int8 (per-target presets), q4 weight-only, fp16.

q8 is dynamic quantization: weights stored as 8-bit integers (per output channel), activations
quantized on the fly to uint8. Only MatMul (plus family-specific ops) is quantized by default:
embedding Gathers stay float, which keeps accuracy and avoids dequantizing a tied vocabulary
table every step. Accuracy on trained weights is decided by verification: the recipe ladder
(LEVELS) is tried in order and the first level that passes the parity check is kept. Families whose
convolutions are worth it (quantize["static_conv"] in edgetf/families.py) try ``conv-static`` first:
static QDQ int8 convolutions, calibrated on recorded feeds (export/calibration.py), + dynamic MatMuls.
"""

from __future__ import annotations

import platform
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Preset:
    """How 8-bit weights are stored for a CPU family."""

    name: str
    weight_type: str  # "QInt8" or "QUInt8"
    per_channel: bool
    reduce_range: bool
    why: str


PRESETS: dict[str, Preset] = {
    "avx512": Preset(
        "avx512",
        "QInt8",
        True,
        False,
        "AVX512-VNNI / AVX-VNNI: u8 activations x s8 weights run on VNNI dot-product instructions",
    ),
    "avx2": Preset(
        "avx2", "QUInt8", True, False, "AVX2 without VNNI: u8 x u8 avoids the int16 saturation of u8 x s8 (vpmaddubsw)"
    ),
    "arm64": Preset(
        "arm64",
        "QInt8",
        True,
        False,
        "ARMv8.2 dot-product kernels (Pi 5) and NEON (Pi 4) prefer signed 8-bit weights; no reduce_range",
    ),
}

# Recipe ladder, mildest first: verification keeps the first whose gate is settled (export/gates.py).
# "sensitive-K": the K MatMuls whose float restoration lowers the output error most on the calibration
# feeds (see sensitivity()) stay float; needs calibration feeds, skipped without (also measured inside
# If subgraphs: merged decoders). "ffn-out-float": the FFN down-projections (name list below) stay float.
# "ffn-blockwise", the last resort: the FFN up- and down-projections become MatMulNBits with 8-bit
# weights in blocks of BLOCKWISE_BLOCK and activations quantized per row and block (accuracy_level 4),
# the other MatMuls dynamic int8 as in "all". Where the error is spread over every layer (real
# all-MiniLM-L6-v2: no handful of float nodes lifts short and non-Latin texts above 0.99 cosine),
# per-block activation scales remove what per-tensor ones lose to a few outlier channels and tokens.
SENSITIVE_STEPS = (1, 2, 4, 8)
EIGHT_BIT = ("q8", "int8", "uint8")  # the dtypes the ladder applies to
LEVELS = ("all", *(f"sensitive-{k}" for k in SENSITIVE_STEPS), "ffn-out-float", "ffn-blockwise")
BLOCKWISE_BLOCK = 128
# FFN up-projections (with FFN_OUT_PATTERNS: the "ffn-blockwise" nodes)
FFN_IN_PATTERNS = (
    r"layer\.\d+/intermediate/dense/MatMul",  # BERT, RoBERTa, ViT
    r"/ffn/lin1/MatMul",  # DistilBERT
    r"/mlp/c_fc/(MatMul|Gemm)",  # GPT-2
    r"/fc1/MatMul",  # BART, Marian, Whisper
    r"/DenseReluDense/wi(_\d)?/MatMul",  # T5
    r"/feed_forward/intermediate_dense/MatMul",  # Wav2Vec2
    r"/pwconv1/MatMul",  # ConvNeXT
    r"/mlp/fc1/MatMul",  # Swin
)
# FFN down-projections: where trained transformers carry activation outliers.
FFN_OUT_PATTERNS = (
    r"layer\.\d+/output/dense/MatMul",  # BERT, RoBERTa, ViT
    r"/ffn/lin2/MatMul",  # DistilBERT
    r"/mlp/c_proj/(MatMul|Gemm)",  # GPT-2
    r"/fc2/MatMul",  # BART, Marian, Whisper
    r"/DenseReluDense/wo/MatMul",  # T5
    r"/feed_forward/output_dense/MatMul",  # Wav2Vec2
    r"/pwconv2/MatMul",  # ConvNeXT
    r"/mlp/fc2/MatMul",  # Swin
)


# "conv-static": the family's convolutions (quantize["static_conv"], edgetf/families.py) as static QDQ
# int8 (activation ranges calibrated on the recorded feeds, per-channel weights), the MatMuls dynamic
# as in "all". Tried first where the family asks for it and calibration feeds exist; a gate it misses
# falls back to the MatMul-only levels.
CONV_LEVEL = "conv-static"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def ladder(calibration: Any, static_calibration: Any = None) -> tuple[str, ...]:
    """The levels to try: the sensitive-K levels only where calibration feeds were recorded; the
    conv-static level first where static calibration feeds were (families with quantize["static_conv"])."""
    levels = LEVELS if calibration else tuple(level for level in LEVELS if not level.startswith("sensitive-"))
    return (CONV_LEVEL, *levels) if static_calibration else levels


def host_target() -> str:
    """The preset for this machine: arm64 on ARM, avx512 where VNNI exists, else avx2."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64") or machine.startswith("armv8"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "avx512" if ("avx512_vnni" in flags or "avx_vnni" in flags) else "avx2"


def preset(target: str | None) -> Preset:
    name = target or host_target()
    if name not in PRESETS:
        raise ValueError(f"unknown quantization target {name!r}; accepted: {', '.join(PRESETS)}")
    return PRESETS[name]


def matching_nodes(model_path: Path, patterns: tuple[str, ...], op_types: tuple[str, ...]) -> list[str]:
    """Names of nodes (also inside subgraphs) of ``op_types`` whose name matches any pattern."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    regex = re.compile("|".join(patterns))
    found: list[str] = []

    def walk(graph: Any) -> None:
        for node in graph.node:
            if node.op_type in op_types and regex.search(node.name):
                found.append(node.name)
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)

    walk(model.graph)
    return found


def has_subgraphs(model_path: Path) -> bool:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return any(attr.g.node for node in model.graph.node for attr in node.attribute if attr.g is not None)


def quantize_q8(
    src: Path,
    dst: Path,
    *,
    target: str | None = None,
    level: str = "all",
    op_types: tuple[str, ...] = ("MatMul",),
    preprocess: bool = False,
    weight_type: str | None = None,
    calibration: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Dynamic 8-bit quantization of ``src`` into ``dst``; returns the recipe for the manifest."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if level not in LEVELS:
        raise ValueError(f"unknown quantization level {level!r}; accepted: {LEVELS}")
    chosen = preset(target)
    wtype = weight_type or chosen.weight_type
    kept_float: list[dict[str, Any]] = []
    blockwise: list[str] = []
    if level == "ffn-out-float":
        exclude = matching_nodes(src, FFN_OUT_PATTERNS, op_types)
    elif level == "ffn-blockwise":
        blockwise = matching_nodes(src, FFN_IN_PATTERNS + FFN_OUT_PATTERNS, ("MatMul",))
        exclude = []
    elif level.startswith("sensitive-"):
        if not calibration:
            raise ValueError(f"quantization level {level!r} needs calibration feeds (none were recorded)")
        ranking = ranked_sensitivity(src, calibration, wtype)
        kept_float = ranking[: int(level.split("-", 1)[1])]
        exclude = [row["node"] for row in kept_float]
    else:
        exclude = []
    subgraphs = has_subgraphs(src)  # merged decoders keep every node inside If branches
    with tempfile.TemporaryDirectory(prefix="edgetf-quant-") as tmp:
        model_in = src
        if preprocess:
            # Weight-normed convs (Wav2Vec2) compute their weight in the graph; pre-processing folds it.
            import onnx
            from onnxruntime.quantization.shape_inference import quant_pre_process

            inline = Path(tmp) / "inline.onnx"  # its optimizer copies the graph alone to a temp folder
            onnx.save(onnx.load(str(src)), str(inline))
            model_in = Path(tmp) / "pre.onnx"
            quant_pre_process(str(inline), str(model_in), skip_symbolic_shape=True)
        if blockwise:
            model_in = blockwise_8bit(model_in, Path(tmp) / "blockwise.onnx", blockwise)
        quantize_dynamic(
            str(model_in),
            str(dst),
            op_types_to_quantize=list(op_types),
            per_channel=chosen.per_channel,
            reduce_range=chosen.reduce_range,
            weight_type=getattr(QuantType, wtype),
            nodes_to_exclude=exclude,
            extra_options={
                "EnableSubgraph": subgraphs,
                "MatMulConstBOnly": True,
                # fused com.microsoft ops (Attention, SkipLayerNorm) defeat ONNX type inference
                "DefaultTensorType": 1,
            },  # onnx.TensorProto.FLOAT
        )
    return {
        "method": "dynamic",
        "preset": asdict(chosen),
        "weight_type": wtype,
        "level": level,
        "op_types": list(op_types),
        "excluded_nodes": len(exclude),
        **(
            {
                "blockwise_nodes": len(blockwise),
                "blockwise": {"bits": 8, "block_size": BLOCKWISE_BLOCK, "accuracy_level": 4},
            }
            if blockwise
            else {}
        ),
        **({"float_nodes": kept_float_record(kept_float)} if kept_float else {}),
        "preprocess": preprocess,
        "subgraphs": subgraphs,
    }


class FeedReader:
    """onnxruntime's CalibrationDataReader over recorded feeds (only the inputs the graph declares), in order."""

    def __init__(self, feeds: list[dict[str, Any]], declared: set[str]) -> None:
        self.feeds = [{k: v for k, v in feed.items() if k in declared} for feed in feeds]
        self.position, self.end = 0, len(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)

    def get_next(self) -> dict[str, Any] | None:
        if self.position >= self.end:
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def set_range(self, start_index: int, end_index: int) -> None:
        """onnxruntime's strided calibration: one slice of the feeds per collection pass (histogram
        calibrators stack a pass's tensors, so feeds of different shapes go one per pass)."""
        self.position, self.end = start_index, min(end_index, len(self.feeds))

    def rewind(self) -> None:
        self.position, self.end = 0, len(self.feeds)


def quantize_conv_static(
    src: Path,
    dst: Path,
    *,
    calibration: list[dict[str, Any]],
    spec: Mapping[str, Any],
    target: str | None = None,
    op_types: tuple[str, ...] = ("MatMul",),
    weight_type: str | None = None,
) -> dict[str, Any]:
    """Static QDQ int8 of the convolutions of ``src`` (activation ranges from ``calibration``, weights per
    output channel), then dynamic int8 of ``op_types`` (the MatMuls) as in level "all".

    ``spec`` is the family's ``quantize["static_conv"]``: ``op_types`` (default Conv; Relu/Clip after a
    quantized conv are folded into its output range, MaxPool/Add run on int8), ``float_nodes`` (regexes
    of node names that stay float, e.g. the first conv on raw audio), ``method`` (minmax, percentile or
    entropy). The graph is first pre-processed (onnxruntime's basic optimizations fold batch norms and
    weight norms into the conv weights), so the calibrated ranges are those of the fused convs."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("quantization level 'conv-static' needs calibration feeds (none were recorded)")
    method = str(spec.get("method", "minmax"))
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; accepted: {', '.join(CALIBRATION_METHODS)}")
    chosen = preset(target)
    wtype = weight_type or chosen.weight_type
    static_ops = tuple(spec.get("op_types", ("Conv",)))
    with tempfile.TemporaryDirectory(prefix="edgetf-static-") as tmp:
        inline = Path(tmp) / "inline.onnx"  # the pre-processor copies the graph alone to a temp folder
        onnx.save(onnx.load(str(src)), str(inline))
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(inline), str(pre), skip_symbolic_shape=True)
        floats = matching_nodes(pre, tuple(spec.get("float_nodes", ())), static_ops) if spec.get("float_nodes") else []
        convs = [name for name in matching_nodes(pre, (r".",), ("Conv",)) if name not in set(floats)]
        declared = {i.name for i in onnx.load(str(pre), load_external_data=False).graph.input}
        static = Path(tmp) / "static.onnx"
        quantize_static(
            str(pre),
            str(static),
            FeedReader(calibration, declared),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(static_ops),
            per_channel=chosen.per_channel,
            reduce_range=chosen.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=getattr(QuantType, wtype),
            nodes_to_exclude=floats,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy,
            }[method],
            use_external_data_format=True,
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                **({} if method == "minmax" else {"CalibStridedMinMax": 1}),  # one feed per histogram pass
            },
        )
        recipe = quantize_q8(static, dst, target=target, level="all", op_types=op_types, weight_type=wtype)
    return {
        **recipe,
        "method": "static-conv+dynamic",
        "level": CONV_LEVEL,
        "static": {
            "format": "QDQ",
            "op_types": list(static_ops),
            "activation_type": "QUInt8",
            "weight_type": wtype,
            "per_channel": chosen.per_channel,
            "calibration_method": method,
            "calibration_feeds": len(calibration),
            "quantized_convs": len(convs),
            "float_convs": len(floats),
            "float_patterns": list(spec.get("float_nodes", ())),
        },
        "preprocess": True,
    }


# "qdq": static int8 QDQ MatMuls for the OpenVINO engine (edgetf/openvino_engine.py), which runs such a graph
# as int8 (onnxruntime runs it too, slower than q8). Encoder-only tasks: the graphs of one forward pass.
QDQ_TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "feature-extraction",
    "image-classification",
)


# its ladder, as LEVELS for q8: every MatMul, then the FFN down-projections (FFN_OUT_PATTERNS) left float.
# "ffn-float" (FFN up-projections float too) is not on the ladder: on OpenVINO it is as slow as fp32 and
# still missed real all-MiniLM-L6-v2's cosine gate (README, "OpenVINO (opt-in)"); quantize_qdq accepts it.
QDQ_LEVELS = ("all", "ffn-out-float")
QDQ_FLOAT_NODES = {"all": (), "ffn-out-float": FFN_OUT_PATTERNS, "ffn-float": FFN_OUT_PATTERNS + FFN_IN_PATTERNS}


def check_qdq_task(task: str, components: tuple[str, ...]) -> None:
    """Raise ValueError unless ``task`` is an encoder-only task with one graph (what "qdq" is made for)."""
    if task not in QDQ_TASKS or tuple(components) != ("model",):
        raise ValueError(
            f"dtype 'qdq' (static int8 QDQ for the OpenVINO engine) is made for encoder-only tasks with one "
            f"graph ({', '.join(QDQ_TASKS)}); {task!r} with components {list(components)} is not one: use q8"
        )


def quantize_qdq(
    src: Path,
    dst: Path,
    *,
    calibration: list[dict[str, Any]],
    op_types: tuple[str, ...] = ("MatMul",),
    level: str = "all",
) -> dict[str, Any]:
    """Static QDQ int8 of the ``op_types`` (MatMul) nodes of ``src``: activation ranges (uint8, asymmetric)
    calibrated by min/max over ``calibration`` (the recorded feeds of the fp32 graph), weights int8 per
    output channel; at level "ffn-out-float" the FFN down-projections stay float, at "ffn-float" the up-
    projections too. Deterministic: the same feeds give the same bytes."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("dtype 'qdq' needs calibration feeds (recorded by the fp32 verification pass; none were)")
    if level not in QDQ_FLOAT_NODES:
        raise ValueError(f"unknown qdq level {level!r}; accepted: {tuple(QDQ_FLOAT_NODES)}")
    patterns = QDQ_FLOAT_NODES[level]
    floats = matching_nodes(src, patterns, op_types) if patterns else []
    with tempfile.TemporaryDirectory(prefix="edgetf-qdq-") as tmp:
        declared = {i.name for i in onnx.load(str(src), load_external_data=False).graph.input}
        static = Path(tmp) / "static.onnx"
        quantize_static(
            str(src),
            str(static),
            FeedReader(calibration, declared),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=floats,
            use_external_data_format=True,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
        onnx.save(onnx.load(str(static)), str(dst))  # one file; the build moves its weights to _data
        quantized = sum(
            1 for node in onnx.load(str(dst), load_external_data=False).graph.node if node.op_type == "DequantizeLinear"
        )
    return {
        "method": "static-qdq",
        "level": level,
        "float_nodes": len(floats),
        "format": "QDQ",
        "op_types": list(op_types),
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "per_channel": True,
        "calibration_method": "minmax",
        "calibration_feeds": len(calibration),
        "dequantize_nodes": quantized,
        "runs_best_on": "device='openvino'",
    }


def blockwise_8bit(src: Path, dst: Path, nodes: list[str]) -> Path:
    """``nodes`` (MatMuls with constant weights) of ``src`` as MatMulNBits: symmetric 8-bit weights in
    blocks of BLOCKWISE_BLOCK along K, activations quantized per row and block at run time
    (accuracy_level 4: int8 compute). Writes ``dst`` and returns it."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(src)),
        bits=8,
        block_size=BLOCKWISE_BLOCK,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_exclude=[name for name in matching_nodes(src, (r".",), ("MatMul",)) if name not in set(nodes)],
    )  # (onnxruntime 1.32 ignores nodes_to_include: exclude the others)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=True)
    return dst


def quantize_q4(src: Path, dst: Path, *, block_size: int = 32) -> dict[str, Any]:
    """4-bit weight-only (MatMulNBits) quantization of MatMul weights; activations stay float.

    MatMulNBits only replaces MatMul, so plain Gemms (GPT-2's Conv1D layers export as Gemm) are first
    rewritten as MatMul + Add (exact); otherwise they would silently stay float in a "q4" file.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    gemms = gemms_to_matmuls(model)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    recipe = {"method": "weight-only", "bits": 4, "block_size": block_size, "symmetric": True, "accuracy_level": 4}
    return {**recipe, "gemms_as_matmuls": gemms}


def gemms_to_matmuls(model: Any) -> int:
    """Rewrite each plain Gemm (no transposes, alpha = beta = 1) of ``model`` as MatMul (+ Add of its bias),
    in place; returns how many were rewritten."""
    from onnx import helper

    nodes, rewritten = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = not attrs.get("transA", 0) and not attrs.get("transB", 0)
        if node.op_type != "Gemm" or not plain or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            nodes.append(node)
            continue
        biased = len(node.input) > 2 and node.input[2]
        product = node.output[0] + "/matmul" if biased else node.output[0]
        nodes.append(helper.make_node("MatMul", list(node.input[:2]), [product], name=node.name + "/MatMul"))
        if biased:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "/Add"))
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def convert_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """fp16 weights and compute (for GPUs); inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, disable_shape_infer=True)
    onnx.save(model, str(dst))
    return {"method": "fp16", "keep_io_types": True}


def untie_transposed_weights(src: Path, dst: Path) -> int:
    """Fold every ``Transpose(2-D initializer)`` (also inside If subgraphs) into its own initializer.

    Exporters write a tied LM head as ``MatMul(x, Transpose(embedding))``; the MatMul's weight is then
    not a constant, so dynamic quantization leaves the head in float (or, with the embedding quantized,
    onnxruntime dequantizes the whole table every step). A pre-transposed copy lets the head quantize
    like any MatMul while the embedding Gather keeps the float table. Returns how many were folded.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    initializers = {init.name: init for init in model.graph.initializer}
    created: dict[str, Any] = {}

    def fold(graph: Any) -> None:
        kept = []
        for node in graph.node:
            perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
            source = initializers.get(node.input[0]) if node.op_type == "Transpose" and node.input else None
            if source is not None and len(source.dims) == 2 and perm in ([], [[1, 0]]):
                if node.output[0] not in created:
                    weight = numpy_helper.to_array(source).T.copy()
                    created[node.output[0]] = numpy_helper.from_array(weight, node.output[0])
                continue
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    fold(attr.g)
            kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)

    fold(model.graph)
    model.graph.initializer.extend(created.values())
    onnx.save(model, str(dst))
    return len(created)


def convs_to_matmuls(src: Path, dst: Path, min_channels: int = 64) -> int:
    """Rewrite each plain 1-D Conv (constant weight, group 1, no padding or dilation, at least
    ``min_channels`` input channels) as one MatMul per kernel tap over a strided slice of the input.

    Dynamic quantization turns Conv into ConvInteger, which onnxruntime runs slower than the float Conv;
    the MatMuls quantize to its fast int8 GEMMs instead. Wav2Vec2's feature encoder (six 512-channel
    convs) is about a third of the model's time in float. The float result is unchanged (up to summation
    order). Returns how many convs were rewritten.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes, extra = [], []

    def const(name: str, value: Any) -> str:
        extra.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    rewritten = 0
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            weight is not None
            and len(weight.dims) == 3
            and weight.dims[1] >= min_channels
            and attrs.get("group", 1) == 1
            and not any(attrs.get("pads", [0, 0]))
            and all(d == 1 for d in attrs.get("dilations", [1]))
            and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        )
        if not plain:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        taps, stride = w.shape[2], int(attrs.get("strides", [1])[0])
        p = f"{node.name or node.output[0]}/as_matmul"
        step = const(p + "/stride", np.array([stride], np.int64))
        axis = const(p + "/axis", np.array([1], np.int64))
        new = [
            helper.make_node("Transpose", [node.input[0]], [p + "/x"], perm=[0, 2, 1], name=p + "/Transpose"),
            helper.make_node("Shape", [node.input[0]], [p + "/shape"], name=p + "/Shape"),
            helper.make_node(
                "Gather", [p + "/shape", const(p + "/two", np.array([2], np.int64))], [p + "/t"], axis=0, name=p + "/T"
            ),
            # span of input positions one tap covers: ((T - k) // s) * s + 1
            helper.make_node(
                "Sub", [p + "/t", const(p + "/k", np.array([taps], np.int64))], [p + "/tk"], name=p + "/Sub"
            ),
            helper.make_node("Div", [p + "/tk", step], [p + "/q"], name=p + "/Div"),
            helper.make_node("Mul", [p + "/q", step], [p + "/qs"], name=p + "/Mul"),
            helper.make_node(
                "Add", [p + "/qs", const(p + "/one", np.array([1], np.int64))], [p + "/span"], name=p + "/Span"
            ),
        ]
        total = ""
        for j in range(taps):
            start = const(f"{p}/start{j}", np.array([j], np.int64))
            tap_w = const(f"{p}/weight{j}", np.ascontiguousarray(w[:, :, j].T))
            new += [
                helper.make_node("Add", [p + "/span", start], [f"{p}/end{j}"], name=f"{p}/End{j}"),
                helper.make_node(
                    "Slice", [p + "/x", start, f"{p}/end{j}", axis, step], [f"{p}/tap{j}"], name=f"{p}/Slice{j}"
                ),
                helper.make_node("MatMul", [f"{p}/tap{j}", tap_w], [f"{p}/mm{j}"], name=f"{p}/MatMul{j}"),
            ]
            if total:
                new.append(helper.make_node("Add", [total, f"{p}/mm{j}"], [f"{p}/sum{j}"], name=f"{p}/Sum{j}"))
                total = f"{p}/sum{j}"
            else:
                total = f"{p}/mm{j}"
        if len(node.input) > 2 and node.input[2]:
            new.append(helper.make_node("Add", [total, node.input[2]], [p + "/biased"], name=p + "/Bias"))
            total = p + "/biased"
        new.append(helper.make_node("Transpose", [total], [node.output[0]], perm=[0, 2, 1], name=p + "/TransposeOut"))
        nodes.extend(new)
        rewritten += 1
    used: set[str] = {o.name for o in graph.output}

    def collect(items: Any) -> None:
        for n in items:
            used.update(n.input)
            for attr in n.attribute:
                if attr.g is not None and attr.g.node:
                    collect(attr.g.node)

    collect(nodes)
    kept = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + extra)
    onnx.save(model, str(dst))
    return rewritten


def make_dtype(
    src: Path,
    dst: Path,
    dtype: str,
    *,
    target: str | None,
    level: str,
    quant: dict[str, Any],
    default_ops: tuple[str, ...],
    calibration: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the ``dtype`` variant of the fp32 file ``src``; returns its recipe. ``calibration``: recorded
    feeds of this component, for the ``sensitive-K`` levels."""
    ops = tuple(quant.get("op_types", default_ops))  # (quant["target"] is resolved by the caller)
    pre = bool(quant.get("preprocess", False))
    if quant.get("untie_lm_head") and dtype in ("q8", "int8", "uint8", "q4"):
        with tempfile.TemporaryDirectory(prefix="edgetf-untie-") as tmp:
            untied = Path(tmp) / src.name
            folded = untie_transposed_weights(src, untied)
            recipe = make_dtype(
                untied,
                dst,
                dtype,
                target=target,
                level=level,
                quant={k: v for k, v in quant.items() if k != "untie_lm_head"},
                default_ops=default_ops,
                calibration=calibration,
            )
        return {**recipe, "untied_transposed_weights": folded}
    if quant.get("conv_as_matmul") and dtype in ("q8", "int8", "uint8"):
        with tempfile.TemporaryDirectory(prefix="edgetf-conv-") as tmp:
            rewritten_src = Path(tmp) / src.name
            option = quant["conv_as_matmul"]
            count = convs_to_matmuls(src, rewritten_src, 64 if option is True else int(option))
            recipe = make_dtype(
                rewritten_src,
                dst,
                dtype,
                target=target,
                level=level,
                quant={k: v for k, v in quant.items() if k != "conv_as_matmul"},
                default_ops=default_ops,
                calibration=calibration,
            )
        return {**recipe, "convs_as_matmuls": count}
    if dtype == "fp32":
        if src != dst:
            shutil.copy2(src, dst)
        return {"method": "none"}
    eight_bit = {"q8": None, "int8": "QInt8", "uint8": "QUInt8"}
    if dtype in eight_bit and level == CONV_LEVEL:
        if not quant.get("static_conv"):
            raise ValueError(f"quantization level {CONV_LEVEL!r} needs the family's quantize['static_conv']")
        return quantize_conv_static(
            src,
            dst,
            calibration=calibration or [],
            spec=quant["static_conv"],
            target=target,
            op_types=ops,
            weight_type=eight_bit[dtype],
        )
    if dtype in eight_bit:
        return quantize_q8(
            src,
            dst,
            target=target,
            level=level,
            op_types=ops,
            preprocess=pre,
            weight_type=eight_bit[dtype],
            calibration=calibration,
        )
    if dtype == "qdq":
        return quantize_qdq(src, dst, calibration=calibration or [], op_types=ops, level=level)
    if dtype == "q4":
        return quantize_q4(src, dst, block_size=int(quant.get("block_size", 32)))
    if dtype == "fp16":
        return convert_fp16(src, dst)
    raise ValueError(f"export cannot produce dtype {dtype!r}; accepted: fp32, q8, int8, uint8, q4, fp16, qdq")


# -- sensitivity: which MatMuls lose most when quantized --------------------------------------------
SWITCH = "edgetf_quantize_switch"


def constant_matmuls(model: Any) -> list[tuple[Any, Any]]:
    """(graph, node) for each MatMul whose second input is a 2-D initializer (what q8 quantizes), also
    inside If/Loop subgraphs (merged decoders keep every layer inside the branches of an If; their
    weights are top-level initializers both branches read)."""
    found: list[tuple[Any, Any]] = []
    shapes: dict[str, int] = {}

    def walk(graph: Any) -> None:
        shapes.update({init.name: len(init.dims) for init in graph.initializer})
        for node in graph.node:
            if node.op_type == "MatMul" and len(node.input) > 1 and shapes.get(node.input[1]) == 2:
                found.append((graph, node))
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)

    walk(model.graph)
    return found


def fake_quantized_weight(weight: Any, weight_type: str) -> Any:
    """``weight`` [K, N] quantized per output channel (column) as dynamic quantization stores it, back in float."""
    import numpy as np

    w = weight.astype(np.float32)
    if weight_type == "QInt8":  # symmetric s8
        scale = np.abs(w).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)
    low, high = np.minimum(w.min(axis=0), 0), np.maximum(w.max(axis=0), 0)  # asymmetric u8
    scale = (high - low) / 255.0
    scale[scale == 0] = 1.0
    zero = np.round(-low / scale)
    return ((np.clip(np.round(w / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


def switch_model(src: Path, dst: Path, weight_type: str) -> list[str]:
    """Write a copy of ``src`` where each quantizable MatMul computes both its float product and its
    dynamically quantized one (u8 activations per tensor, 8-bit weights per channel) and blends them by
    ``edgetf_quantize_switch[i]`` (1: quantized, 0: float). One session then measures any set of
    quantized nodes. Nodes inside subgraphs are switched too; nodes of the same name (the same layer in
    both branches of a merged decoder's If) share one switch, as they share one entry of the
    quantizer's ``nodes_to_exclude``. Returns the node names in switch order."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    weights: dict[str, Any] = {}

    def collect(graph: Any) -> None:
        weights.update({init.name: init for init in graph.initializer})
        for node in graph.node:
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    collect(attr.g)

    collect(model.graph)
    names: list[str] = []
    index: dict[str, int] = {}
    quantized: dict[str, str] = {}  # weight initializer -> its fake-quantized copy
    extra_inits, extra_nodes = [], {}
    for j, (_, node) in enumerate(constant_matmuls(model)):
        name = node.name or node.output[0]
        if name not in index:
            index[name] = len(names)
            names.append(name)
            extra_inits.append(
                numpy_helper.from_array(np.array([index[name]], np.int64), f"edgetf_switch/{index[name]}/i")
            )
        if node.input[1] not in quantized:
            quantized[node.input[1]] = f"edgetf_switch/w{len(quantized)}"
            wq = fake_quantized_weight(numpy_helper.to_array(weights[node.input[1]]), weight_type)
            extra_inits.append(numpy_helper.from_array(wq, quantized[node.input[1]]))
        p, i = f"edgetf_switch/n{j}", f"edgetf_switch/{index[name]}/i"
        out = node.output[0]
        node.output[0] = p + "/float"
        extra_nodes[node.output[0]] = [  # keyed by the renamed output: protobuf wrappers' ids are not stable
            helper.make_node("DynamicQuantizeLinear", [node.input[0]], [p + "/xq", p + "/xs", p + "/xz"]),
            helper.make_node("DequantizeLinear", [p + "/xq", p + "/xs", p + "/xz"], [p + "/xd"]),
            helper.make_node("MatMul", [p + "/xd", quantized[node.input[1]]], [p + "/quant"]),
            helper.make_node("Gather", [SWITCH, i], [p + "/on"], axis=0),
            helper.make_node("Sub", [p + "/quant", p + "/float"], [p + "/delta"]),
            helper.make_node("Mul", [p + "/delta", p + "/on"], [p + "/scaled"]),
            helper.make_node("Add", [p + "/float", p + "/scaled"], [out]),
        ]

    def insert(graph: Any) -> None:
        ordered = []
        for node in graph.node:
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    insert(attr.g)
            ordered.append(node)
            ordered += extra_nodes.get(node.output[0], []) if node.output else []
        del graph.node[:]
        graph.node.extend(ordered)

    insert(model.graph)
    model.graph.initializer.extend(extra_inits)  # top level: subgraphs read outer-scope values
    model.graph.input.append(helper.make_tensor_value_info(SWITCH, TensorProto.FLOAT, [len(names)]))
    onnx.save(model, str(dst), save_as_external_data=True, location=dst.name + "_data")
    return names


def output_error(reference: list[list[Any]], got: list[list[Any]]) -> float:
    """Worst relative L2 error of any output over the calibration feeds."""
    import numpy as np

    worst = 0.0
    for ref_outs, outs in zip(reference, got):
        for r, o in zip(ref_outs, outs):
            if not np.issubdtype(r.dtype, np.floating) or r.size == 0:
                continue
            norm = float(np.linalg.norm(r))
            worst = max(worst, float(np.linalg.norm(o - r)) / norm if norm else float(np.linalg.norm(o)))
    return worst


def sensitivity(src: Path, feeds: list[dict[str, Any]], *, weight_type: str = "QInt8") -> list[dict[str, Any]]:
    """Each quantizable MatMul of ``src`` with ``gain``: how much the worst relative output error over
    ``feeds`` drops when that node alone stays float and every other is quantized (most sensitive
    first); the first few also get ``alone``: the error when it is the only quantized node."""
    import numpy as np
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgetf-sens-") as tmp:
        path = Path(tmp) / "switch.onnx"
        names = switch_model(src, path, weight_type)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        declared = {i.name for i in session.get_inputs()}
        ready = [{k: v for k, v in f.items() if k in declared} for f in feeds]

        def run(switch: Any) -> list[list[Any]]:
            return [session.run(None, {**f, SWITCH: switch}) for f in ready]

        n = len(names)
        reference = run(np.zeros(n, np.float32))
        everything = output_error(reference, run(np.ones(n, np.float32)))
        table = []
        for i, name in enumerate(names):
            without = np.ones(n, np.float32)
            without[i] = 0.0
            table.append({"node": name, "index": i, "gain": everything - output_error(reference, run(without))})
        table.sort(key=lambda row: (-row["gain"], row["node"]))
        for row in table[: max(SENSITIVE_STEPS)]:  # the candidates the ladder may keep float
            alone = np.zeros(n, np.float32)
            alone[row["index"]] = 1.0
            row["alone"] = output_error(reference, run(alone))
    return [{k: v for k, v in row.items() if k != "index"} for row in table]


_RANKINGS: dict[tuple[Any, ...], list[dict[str, Any]]] = {}


def ranked_sensitivity(src: Path, calibration: list[dict[str, Any]], weight_type: str) -> list[dict[str, Any]]:
    """sensitivity() once per fp32 file, weight type and feed set (the ladder asks at every level)."""
    stat = Path(src).stat()
    key = (str(src), stat.st_size, stat.st_mtime_ns, weight_type, len(calibration))
    if key not in _RANKINGS:
        _RANKINGS[key] = sensitivity(src, calibration, weight_type=weight_type)
    return _RANKINGS[key]


def kept_float_record(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest's account of the nodes a sensitive-K level kept float, and why."""
    return [
        {
            "node": row["node"],
            "why": f"keeping it float lowered the worst relative output error on the calibration feeds by "
            f"{row['gain']:.4f} (quantized alone: {row.get('alone', float('nan')):.4f})",
        }
        for row in rows
    ]
