"""Text pre-processing: the tokenizer wrapper."""

from .tokenizer import TextTokenizer, pad_batch, windows

__all__ = ["TextTokenizer", "pad_batch", "windows"]
