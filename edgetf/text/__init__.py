"""Text pre-processing: the tokenizer wrapper."""

from .tokenizer import TextTokenizer, pad_batch

__all__ = ["TextTokenizer", "pad_batch"]
