"""SentencePiece ``.model`` files parsed by hand (protobuf wire format, no protobuf package).

Protobuf in brief: a message is a sequence of fields; each starts with a varint key
``field_number << 3 | wire_type``. Wire type 0 is a varint, 1 a fixed 8 bytes, 2 a
length-delimited blob (strings, bytes, nested messages), 5 a fixed 4 bytes (float32).

The parts of ``sentencepiece_model.proto`` we read::

    ModelProto        1: repeated SentencePiece pieces   2: TrainerSpec   3: NormalizerSpec
    SentencePiece     1: piece (string)   2: score (float)   3: type (enum, default NORMAL=1)
    TrainerSpec       3: model_type (UNIGRAM=1, BPE=2, WORD=3, CHAR=4)   24: treat_whitespace_as_suffix
                      35: byte_fallback   40..43: unk_id, bos_id, eos_id, pad_id   44: unk_surface
    NormalizerSpec    1: name   2: precompiled_charsmap   3: add_dummy_prefix
                      4: remove_extra_whitespaces   5: escape_whitespaces
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

__all__ = ["SentencePieceModel", "parse_model_proto", "read_model_file"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


@dataclass
class SentencePieceModel:
    """What a SentencePiece model holds that encoding and decoding need."""
    pieces: list[str]
    scores: list[float]
    types: list[int]
    model_type: str = "unigram"
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_surface: str = " \u2047 "
    treat_whitespace_as_suffix: bool = False
    normalizer_name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    extra: dict = field(default_factory=dict)


class ProtoError(ValueError):
    pass


def _file_error(msg: str):
    from ..errors import FileFormatError
    return FileFormatError(msg)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if i >= len(buf):
            raise ProtoError(f"truncated varint at byte {i}")
        c = buf[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ProtoError(f"varint too long at byte {i}")


def iter_fields(buf: bytes):
    """Yield ``(field_number, wire_type, value)``; value is int, or bytes for types 1, 2, 5."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError(f"field number 0 at byte {i}")
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if i + size > n:
                raise ProtoError(f"truncated fixed{size * 8} field {number}")
            value, i = buf[i:i + size], i + size
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise ProtoError(f"field {number} claims {size} bytes, {n - i} are left")
            value, i = buf[i:i + size], i + size
        else:
            raise ProtoError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _expect(wire: int, want: int, what: str) -> None:
    if wire != want:
        raise ProtoError(f"{what} has wire type {wire}, expected {want}")


def _signed(v: int) -> int:  # int32 fields are varints of the two's-complement 64-bit value
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(b: bytes, what: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError(f"{what} is not UTF-8") from None


def _parse_piece(buf: bytes) -> tuple[str, float, int]:
    piece, score, kind = None, 0.0, NORMAL
    for number, wire, v in iter_fields(buf):
        if number == 1:
            _expect(wire, 2, "piece")
            piece = _text(v, "piece")
        elif number == 2:
            _expect(wire, 5, "score")
            score = struct.unpack("<f", v)[0]
        elif number == 3:
            _expect(wire, 0, "type")
            kind = v
    if piece is None:
        raise ProtoError("a SentencePiece has no piece text")
    return piece, score, kind


def parse_model_proto(buf: bytes) -> SentencePieceModel:
    m = SentencePieceModel(pieces=[], scores=[], types=[])
    for number, wire, v in iter_fields(buf):
        if number == 1:
            _expect(wire, 2, "ModelProto.pieces")
            piece, score, kind = _parse_piece(v)
            m.pieces.append(piece)
            m.scores.append(score)
            m.types.append(kind)
        elif number == 2:
            _expect(wire, 2, "ModelProto.trainer_spec")
            for n2, w2, v2 in iter_fields(v):
                if n2 == 3 and w2 == 0:
                    m.model_type = MODEL_TYPES.get(v2, f"type{v2}")
                elif n2 == 24 and w2 == 0:
                    m.treat_whitespace_as_suffix = bool(v2)
                elif n2 == 35 and w2 == 0:
                    m.byte_fallback = bool(v2)
                elif n2 in (40, 41, 42, 43) and w2 == 0:
                    setattr(m, {40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}[n2],
                            _signed(v2))
                elif n2 == 44 and w2 == 2:
                    m.unk_surface = _text(v2, "unk_surface")
        elif number == 3:
            _expect(wire, 2, "ModelProto.normalizer_spec")
            for n2, w2, v2 in iter_fields(v):
                if n2 == 1 and w2 == 2:
                    m.normalizer_name = _text(v2, "normalizer name")
                elif n2 == 2 and w2 == 2:
                    m.precompiled_charsmap = v2
                elif n2 == 3 and w2 == 0:
                    m.add_dummy_prefix = bool(v2)
                elif n2 == 4 and w2 == 0:
                    m.remove_extra_whitespaces = bool(v2)
                elif n2 == 5 and w2 == 0:
                    m.escape_whitespaces = bool(v2)
    if not m.pieces:
        raise ProtoError("no pieces (not a SentencePiece model?)")
    return m


def read_model_file(path: str | os.PathLike) -> SentencePieceModel:
    """Parse a SentencePiece .model file; any malformation raises ValueError naming the file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    try:
        return parse_model_proto(buf)
    except ProtoError as exc:
        raise _file_error(f"{path}: not a valid SentencePiece model: {exc}") from None
