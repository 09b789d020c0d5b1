"""Shared test data for the tokenizer tests: reference file paths and a Unicode text strategy.
(A uniquely named module, imported by absolute name: tests/ folders are not packages here.)"""
from pathlib import Path

from hypothesis import strategies as st

DATA = Path(__file__).resolve().parents[1] / "data"   # tests/data: the reference files
CORPUS = DATA / "tinyshakespeare.txt"
LLAMA3 = DATA / "llama3" / "tokenizer.model"
LLAMA2_MODEL = DATA / "llama2" / "tokenizer.model"
LLAMA2_BIN = DATA / "llama2" / "tokenizer.bin"

# Pieces that stress pre-tokenizers: emoji with ZWJ and modifiers, flags, CJK, RTL scripts,
# combining marks, digit runs, whitespace runs with \r\n, apostrophe forms and case folding.
_PIECES = ["👨‍👩‍👧‍👦", "👍🏽", "🇫🇷", "❤️", "中文字", "日本語の", "한국어", "שָׁלוֹם", "مرحبا",
           "e\u0301", "n\u0303\u0323", "١٢٣", "1234567", "0", "  ", "   \n", "\r\n", "\r\n\r\n",
           "\n\n\n", "\t", "\u00a0", "\u3000", "\u2028", "'s", "'S", "'LL", "'Re", "’s", "'",
           "ſ", "K", "İ", "ß", "x", " a", "Hello", " world", "!!", "...", "<|endoftext|>",
           "\x00", "\x1c", "\u200b", "\ufeff"]
_CHARS = st.characters(exclude_categories=("Cs", "Cn"))  # assigned code points, no surrogates
unicode_text = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(_CHARS, max_size=6)),
                        max_size=25).map("".join)
