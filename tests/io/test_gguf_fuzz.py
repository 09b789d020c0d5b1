"""Hostile GGUF files: random corruptions of a small valid file (with a tokenizer and arrays of
every kind) either read or raise one ScratchLLMError; none crashes, hangs or allocates out of
proportion to the file."""
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchllm.errors import ScratchLLMError
from scratchllm.io.gguf import read_gguf, write_gguf_model
from scratchllm.io.gguf_read import GGUFFile
from scratchllm.io.gguf_vocab import gguf_tokenizer
from scratchllm.models import build_model
from scratchllm.models.config import LlamaConfig
from scratchllm.tokenizers.char import CharTokenizer


HEADER = 1 << 30


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "ok.gguf"
    model = build_model(LlamaConfig(vocab_size=48, dim=32, n_layers=1, n_heads=2, hidden_dim=32, max_seq_len=16))
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .,!?ABCDEFGHIJKLM")
    write_gguf_model(path, model.config, model.state_dict(), tok, type="q8_0")
    global HEADER
    HEADER = GGUFFile(path).data_offset
    return path.read_bytes()


def _read_all(path):
    try:
        g = GGUFFile(path)
        read_gguf(g)
        gguf_tokenizer(g)
    except ScratchLLMError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_files_give_scratchllm_errors_only(valid, tmp_path, data):
    blob = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "big", "cut", "small"]))
        head = data.draw(st.booleans())                      # mostly the header: metadata, tensor infos
        pos = data.draw(st.integers(0, min(len(blob), HEADER if head else len(blob)) - 1))
        if kind == "flip":
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "big":                                  # a huge count, length, dim or offset
            blob[pos:pos + 8] = struct.pack("<Q", data.draw(st.sampled_from([2**31, 2**32 - 1, 2**62, 2**64 - 1])))
        elif kind == "small":
            blob[pos:pos + 4] = struct.pack("<I", data.draw(st.integers(0, 40)))
        else:
            del blob[pos:]
            if not blob:
                blob = bytearray(b"G")
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(blob))
    tracemalloc.start()
    try:
        _read_all(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * len(valid) + (4 << 20)


def test_the_valid_file_reads(valid, tmp_path):
    (tmp_path / "ok.gguf").write_bytes(valid)
    config, state = read_gguf(tmp_path / "ok.gguf")
    assert config.vocab_size == 48 and state["tok_embeddings.weight"].shape == (48, 32)
    assert gguf_tokenizer(tmp_path / "ok.gguf").decode([0, 1, 2]) == " !,"
    assert np.isfinite(state["layers.0.attention.wq.weight"]).all()


def test_huge_counts_in_metadata_are_refused_before_any_allocation(tmp_path):
    from scratchllm.io.gguf_write import STRING, UINT32, write_gguf
    from scratchllm.io import gguf_quant as Q
    z = np.zeros((4, 32), np.float32)
    base = [("general.architecture", STRING, "llama"), ("llama.embedding_length", UINT32, 32),
            ("llama.attention.head_count", UINT32, 2), ("llama.feed_forward_length", UINT32, 32)]
    for key, value, match in (("llama.block_count", 2**31 - 1, "block_count"),
                              ("llama.context_length", 2**31 - 1, "context_length")):
        extra = [(key, UINT32, value)] + ([("llama.block_count", UINT32, 1)] if key != "llama.block_count" else [])
        tensors = [(name, z.shape, Q.F32, Q.encode_plain(z, Q.F32)) for name in ("token_embd.weight", "blk.0.x")]
        write_gguf(tmp_path / "h.gguf", base + extra, tensors)
        with pytest.raises(ScratchLLMError, match=match):
            read_gguf(tmp_path / "h.gguf")


def test_deeply_nested_arrays_are_refused(tmp_path):
    nested = struct.pack("<IQ", 9, 1) * 5000 + struct.pack("<IQ", 4, 0)   # array of array of ... of u32
    key = b"x"
    blob = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<I", 9) + nested
    (tmp_path / "n.gguf").write_bytes(blob)
    with pytest.raises(ScratchLLMError, match="nests arrays"):
        GGUFFile(tmp_path / "n.gguf")
