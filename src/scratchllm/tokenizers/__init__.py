"""Tokenizers: byte-level BPE trained from scratch, and readers for GPT-2, tiktoken (Llama 3),
llama2.c, SentencePiece (Llama 2) and HF tokenizer.json / vocab.json + merges.txt (BPE) files.
Only the standard library is used.

    >>> from scratchllm.tokenizers import load_tokenizer
    >>> tok = load_tokenizer("gpt2")
    >>> tok.encode("Hello world")
    [15496, 995]
"""
from .bpe import BPETokenizer
from .char import CharTokenizer
from .hf_json import HFTokenizer
from .load import load_tokenizer
from .pretokenize import PATTERNS
from .sentencepiece import SentencePieceBPE
from .tiktoken_file import Llama3ChatFormat

__all__ = ["BPETokenizer", "CharTokenizer", "HFTokenizer", "SentencePieceBPE", "Llama3ChatFormat", "load_tokenizer", "PATTERNS"]
