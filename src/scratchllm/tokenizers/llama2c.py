"""Reader for llama2.c's ``tokenizer.bin``: Llama 2's SentencePiece vocabulary, flattened.

Layout (little-endian)::

    int32 max_token_length
    repeated until the end: float32 score, int32 length, bytes[length] piece (UTF-8)

llama2.c's exporter wrote "▁" as a space and <s>/</s> as "\\n<s>\\n"/"\\n</s>\\n". The token
types are not stored; as in llama2.c, id 0 is <unk>, ids 1 and 2 are <s> and </s>, and
pieces ``<0xXX>`` are byte-fallback pieces (a vocabulary of any size; without all 256 of them
unknown characters become <unk>). Encoding then follows SentencePiece's BPE exactly
(merge by score, byte fallback, the leading dummy space), so both Llama 2 files agree.
"""
from __future__ import annotations

import os
import re
import struct

from ..errors import FileFormatError
from .sentencepiece import SPACE, SentencePieceBPE
from .sp_proto import BYTE, CONTROL, NORMAL, UNKNOWN, SentencePieceModel

__all__ = ["read_llama2c_bin", "load_llama2c"]

_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def read_llama2c_bin(path: str | os.PathLike) -> SentencePieceModel:
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise FileFormatError(f"{path}: too short for a llama2.c tokenizer ({len(data)} bytes)")
    (max_len,) = struct.unpack_from("<i", data, 0)
    if not 0 < max_len <= 1024:
        raise FileFormatError(f"{path}: max_token_length {max_len} is implausible; not a llama2.c "
                         "tokenizer.bin?")
    pieces, scores, types = [], [], []
    pos, n = 4, len(data)
    while pos < n:
        k = len(pieces)
        if pos + 8 > n:
            raise FileFormatError(f"{path}: truncated inside the header of token {k}")
        score, length = struct.unpack_from("<fi", data, pos)
        pos += 8
        if not 0 <= length <= max_len or pos + length > n:
            raise FileFormatError(f"{path}: token {k} claims {length} bytes (max {max_len}, "
                             f"{n - pos} left); file truncated or not a tokenizer.bin")
        try:
            text = data[pos:pos + length].decode("utf-8")
        except UnicodeDecodeError:
            raise FileFormatError(f"{path}: token {k} is not UTF-8") from None
        pos += length
        if k == 0:
            kind = UNKNOWN
        elif k in (1, 2):
            kind, text = CONTROL, text.strip("\n")
        elif _BYTE_PIECE.fullmatch(text):
            kind = BYTE
        else:
            kind, text = NORMAL, text.replace(" ", SPACE)
        pieces.append(text)
        scores.append(score)
        types.append(kind)
    if len(pieces) < 3:
        raise FileFormatError(f"{path}: only {len(pieces)} tokens; a llama2.c tokenizer.bin starts "
                         "with <unk>, <s>, </s>")
    # Byte fallback when all 256 <0xXX> pieces are there (Llama 2, tok512); a small vocabulary
    # trained without them (e.g. 105 pieces) maps unknown characters to <unk>, as SentencePiece.
    byte_fallback = sum(kind == BYTE for kind in types) == 256
    return SentencePieceModel(pieces=pieces, scores=scores, types=types, model_type="bpe",
                              byte_fallback=byte_fallback, normalizer_name="identity",
                              add_dummy_prefix=True, remove_extra_whitespaces=False)


def load_llama2c(path: str | os.PathLike) -> SentencePieceBPE:
    return SentencePieceBPE(read_llama2c_bin(path), name=os.fspath(path))
