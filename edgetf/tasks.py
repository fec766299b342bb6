"""The task table: task name -> pipeline class, aliases, and the task a config implies.

Pipeline modules are imported lazily, so `import edgetf` stays cheap. A task is *supported*
when its module exists; the catalog reports the others as "not yet supported".
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import TaskMismatchError, UnknownTaskError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    module: str  # under edgetf.pipelines
    cls: str
    # (module, class) for bundles whose config.json sets is_encoder_decoder, when the task has both kinds
    encoder_decoder: tuple[str, str] | None = None


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("text-classification", "text_classification", "TextClassificationPipeline"),
        TaskSpec("token-classification", "token_classification", "TokenClassificationPipeline"),
        TaskSpec("question-answering", "question_answering", "QuestionAnsweringPipeline"),
        TaskSpec("fill-mask", "fill_mask", "FillMaskPipeline"),
        TaskSpec("feature-extraction", "feature_extraction", "FeatureExtractionPipeline"),
        TaskSpec("text-generation", "text_generation", "TextGenerationPipeline"),
        TaskSpec("summarization", "text2text", "SummarizationPipeline"),
        TaskSpec("translation", "text2text", "TranslationPipeline"),
        TaskSpec("text2text-generation", "text2text", "Text2TextGenerationPipeline"),
        TaskSpec(
            "automatic-speech-recognition",
            "ctc_asr",
            "CTCSpeechRecognitionPipeline",
            encoder_decoder=("whisper_asr", "WhisperSpeechRecognitionPipeline"),
        ),
        TaskSpec("audio-classification", "audio_classification", "AudioClassificationPipeline"),
        TaskSpec("image-classification", "image_classification", "ImageClassificationPipeline"),
        TaskSpec("object-detection", "object_detection", "ObjectDetectionPipeline"),
        TaskSpec("image-segmentation", "image_segmentation", "ImageSegmentationPipeline"),
        TaskSpec("depth-estimation", "depth_estimation", "DepthEstimationPipeline"),
    )
}

ALIASES: dict[str, str] = {
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "asr": "automatic-speech-recognition",
    "embeddings": "feature-extraction",
}

# Tasks one bundle can serve interchangeably (same graphs, different pre/post-processing).
_FAMILIES: tuple[frozenset[str], ...] = (frozenset({"summarization", "translation", "text2text-generation"}),)

# config.json "architectures" suffix -> task; checked in order (longest suffixes first).
_ARCH_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForSpeechSeq2Seq", "automatic-speech-recognition"),
    ("ForAudioClassification", "audio-classification"),
    ("ForImageClassification", "image-classification"),
    ("ForImageClassificationWithTeacher", "image-classification"),
    ("ForObjectDetection", "object-detection"),
    ("ForUniversalSegmentation", "image-segmentation"),
    ("ForInstanceSegmentation", "image-segmentation"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForDepthEstimation", "depth-estimation"),
    ("MTModel", "translation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("Model", "feature-extraction"),
)


def normalize_task(task: str) -> str:
    """Canonical task name; ``translation_en_to_fr`` -> ``translation``. Raises UnknownTaskError."""
    if not isinstance(task, str):
        raise UnknownTaskError(f"task must be a string, got {type(task).__name__}; accepted: {', '.join(TASKS)}")
    name = ALIASES.get(task, task)
    if name.startswith("translation_"):
        name = "translation"
    if name not in TASKS:
        raise UnknownTaskError(
            f"unknown task {task!r}; accepted: {', '.join(TASKS)} (aliases: {', '.join(ALIASES)}; "
            "and translation_XX_to_YY)"
        )
    return name


def is_supported(task: str) -> bool:
    """True when the task's pipeline module is present in this edgetf."""
    spec = TASKS[normalize_task(task)]
    return importlib.util.find_spec(f"edgetf.pipelines.{spec.module}") is not None


def supported_tasks() -> list[str]:
    return [t for t in TASKS if is_supported(t)]


def pipeline_class(task: str, config: Mapping[str, Any] | None = None) -> type:
    """The pipeline class of a task; with a bundle's config.json, the one for that kind of model
    (an encoder-decoder bundle takes the spec's ``encoder_decoder`` class when it has one)."""
    spec = TASKS[normalize_task(task)]
    if not is_supported(spec.name):
        raise UnknownTaskError(
            f"task {spec.name!r} is not yet supported by this edgetf; supported: {', '.join(supported_tasks())}"
        )
    module_name, cls = spec.module, spec.cls
    if spec.encoder_decoder is not None and config is not None and config.get("is_encoder_decoder"):
        module_name, cls = spec.encoder_decoder
    module = importlib.import_module(f"edgetf.pipelines.{module_name}")
    return getattr(module, cls)


def task_from_config(config: dict[str, Any], *, has_tokenizer: bool = True) -> str | None:
    """The task a config.json implies, from its ``architectures`` and type fields."""
    for arch in config.get("architectures") or ():
        for suffix, task in _ARCH_SUFFIXES:
            if arch.endswith(suffix):
                if task == "text-classification" and not has_tokenizer:
                    return "audio-classification"  # e.g. Wav2Vec2ForSequenceClassification
                if task == "text2text-generation" and "num_mel_bins" in config:
                    return "automatic-speech-recognition"  # Whisper
                return task
    return None


def check_compatible(asked: str, bundle_task: str | None, where: str) -> str:
    """The task to run: ``asked`` if the bundle serves it; raises TaskMismatchError otherwise."""
    asked = normalize_task(asked)
    if bundle_task is None:
        return asked
    bundle_task = normalize_task(bundle_task)
    if asked == bundle_task or any(asked in f and bundle_task in f for f in _FAMILIES):
        return asked
    raise TaskMismatchError(
        f"{where} was exported for {bundle_task!r}, not {asked!r}; "
        f"use task={bundle_task!r} or task=None to take the bundle's own"
    )
