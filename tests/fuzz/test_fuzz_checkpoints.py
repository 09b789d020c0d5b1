"""Fuzzing the checkpoint readers: safetensors, .pth (pickle opcodes and zip), HF config/index, llama2.c.

Property for every generated file: the reader returns a valid result or raises ONE ScratchLLMError,
never another exception or a signal, within 10x the file's size in memory (+2 MiB) and a few
seconds (``hostile_files.bounded``). Where a reader accepts a file, the reference library (the
safetensors package, torch.load with weights_only=True) must read the same values.
"""
import json
import os
import struct
import tempfile
import zipfile

import numpy as np
import torch
from hypothesis import HealthCheck, event, given, settings, strategies as st

from scratchllm.io.hf import write_hf
from scratchllm.io.load import read_checkpoint
from scratchllm.io.pth import load_pth
from scratchllm.io.safetensors_file import read_safetensors, write_safetensors
from scratchllm.models.config import GPTConfig, LlamaConfig
from scratchllm.models.weights import parameter_shapes

from hostile_files import (Raw, bounded, llama2c_model_bytes, op, state_pickle, tensor, write_pth,
                           write_safetensors_raw)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# numbers a hostile file would put where a count belongs
hostile_int = st.one_of(st.integers(0, 8), st.integers(-3, 3),
                        st.sampled_from([2**31, 2**32, 2**40, 2**63 - 1, 2**63 + 5, 2**64, -2**40, 10**18]))
hostile_number = st.one_of(hostile_int, st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
                           st.text(max_size=3), st.none())


def checked(fn, path):
    """``bounded`` + a hypothesis event, so ``--hypothesis-show-statistics`` shows how many were accepted."""
    result, err = bounded(fn, path)
    event("accepted" if err is None else "refused: " + str(err).split(": ", 1)[-1][:40])
    return result, err


def _bytes_equal(a, b) -> bool:
    if b.dtype == np.bool_:                          # a bool byte of 2 is True: compare values
        return a.shape == b.shape and np.array_equal(a, b.view(np.uint8) != 0)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ================================================================== safetensors
DTYPE_CODES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "I8", "X9", "f32", ""]


SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1, "F64": 8, "I8": 1}


@st.composite
def safetensors_files(draw):
    """A valid header (tensors tiling the data) with, half the time, one field made hostile."""
    header, pos = {}, 0
    for name in draw(st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=3, unique=True)):
        dtype = draw(st.sampled_from(sorted(SIZES)))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        n = SIZES[dtype] * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))
    data = bytes(draw(st.lists(st.integers(0, 255), min_size=pos, max_size=pos)))
    if draw(st.booleans()) and header:
        name = draw(st.sampled_from(sorted(header)))
        if name == "__metadata__":
            header[name] = draw(st.one_of(st.dictionaries(st.text(max_size=3), hostile_number, min_size=1,
                                                           max_size=2), hostile_number))
        else:
            field = draw(st.sampled_from(["dtype", "shape", "data_offsets", None]))
            value = draw(st.one_of(st.sampled_from(DTYPE_CODES), hostile_number,
                                   st.lists(st.one_of(st.integers(0, 64), hostile_number), max_size=3)))
            if field is None:
                header[name].pop(draw(st.sampled_from(sorted(header[name]))))
            else:
                header[name][field] = value
    if draw(st.integers(0, 3)) == 0:
        data = data[:draw(st.integers(0, len(data)))] + draw(st.binary(max_size=8))
    return header, data


@FUZZ
@given(safetensors_files())
def test_fuzz_safetensors_header(tmp_path_factory, case):
    header, data = case
    try:
        raw = json.dumps(header).encode()
    except ValueError:
        raw = b"{}"
    path = write_safetensors_raw(tmp_path_factory.mktemp("st") / "f.safetensors", None, data, header_bytes=raw)
    result, err = checked(lambda: read_safetensors(path, float32=False), path)
    if result is not None and "BF16" not in raw.decode(errors="replace"):
        from safetensors.numpy import load_file
        lib = load_file(path)                       # the library accepts what we accept ...
        assert sorted(lib) == sorted(result[0])
        for k, v in lib.items():                    # ... and reads the same bytes
            assert _bytes_equal(result[0][k], v), k


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 400), st.booleans())
def test_fuzz_safetensors_bytes(tmp_path_factory, flips, cut, truncate):
    folder = tmp_path_factory.mktemp("stb")
    good = folder / "good.safetensors"
    write_safetensors(good, {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.arange(3, dtype=np.int64)},
                      {"format": "pt"})
    data = bytearray(good.read_bytes())
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    if truncate:
        data = data[:cut]
    path = folder / "bad.safetensors"
    path.write_bytes(bytes(data))
    checked(lambda: read_safetensors(path), path)


# ================================================================== .pth: structured layouts
KINDS = ["FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage", "DoubleStorage"]
small_or_hostile = st.one_of(st.integers(0, 6), st.integers(0, 6), hostile_number)


WIDTH = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8, "IntStorage": 4,
         "DoubleStorage": 8}


@st.composite
def pth_cases(draw):
    """A valid strided view of a storage (any order of dims, an offset) with, half the time, one
    of numel/size/stride/offset/entry size made hostile."""
    kind = draw(st.sampled_from(KINDS))
    size = draw(st.lists(st.integers(0, 4), max_size=3))
    order = draw(st.permutations(range(len(size))))
    stride, step = [0] * len(size), 1
    for d in order:                                  # a permuted (transposed) contiguous layout
        stride[d] = step
        step *= max(size[d], 1)
    offset = draw(st.integers(0, 5))
    numel = offset + step + draw(st.integers(0, 3))
    nbytes = WIDTH[kind] * numel
    if draw(st.booleans()):
        field = draw(st.sampled_from(["numel", "size", "stride", "offset", "nbytes"]))
        if field == "nbytes":
            nbytes = draw(st.integers(0, 200))
        elif field in ("size", "stride"):
            bad = draw(st.one_of(hostile_number, st.lists(small_or_hostile, max_size=3)))
            size, stride = (bad, stride) if field == "size" else (size, bad)
        else:
            bad = draw(hostile_number)
            numel, offset = (bad, offset) if field == "numel" else (numel, bad)
    return kind, numel, tuple(size) if isinstance(size, list) else size, \
        tuple(stride) if isinstance(stride, list) else stride, offset, nbytes, draw(st.booleans()), \
        draw(st.integers(1, 3))


@FUZZ
@given(pth_cases())
def test_fuzz_pth_layouts(tmp_path_factory, case):
    kind, numel, size, stride, offset, nbytes, deflate, n_refs = case
    entries = {f"w{i}": tensor("0", kind, numel, offset, size, stride) for i in range(n_refs)}
    data = np.random.default_rng(nbytes).integers(0, 60, nbytes, dtype=np.uint8).tobytes()  # small, finite
    path = write_pth(tmp_path_factory.mktemp("pth") / "f.pth", state_pickle(entries), {"0": data},
                     compress=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    result, _ = checked(lambda: load_pth(path), path)
    if result is not None:                          # accepted: torch reads the very same values
        ref = torch.load(path, weights_only=True)
        for k, v in ref.items():
            want = v.float().numpy() if v.is_floating_point() else v.numpy()
            assert result[k].shape == want.shape
            np.testing.assert_array_equal(result[k], want)


# ================================================================== .pth: pickle opcodes
FRAGMENTS = [b"(", b"t", b")", b"]", b"}", b"u", b"s", b"a", b"e", b"R", b"Q", b"N", b"\x88", b"\x89", b"0", b"1",
             b"2", b"\x85", b"\x86", b"\x87", b"\x94", b"\x93", b"b", b"\x81", b"\x92", b"o", b"i", b"\x82",
             op("storage"), op("cpu"), op(0), op(6), op(-1), op(2**40), op((2, 3)), op((3, 1)), op(1.5),
             bytes(Raw(b"ctorch._utils\n_rebuild_tensor_v2\n")), b"ctorch\nFloatStorage\n",
             b"ccollections\nOrderedDict\n", b"cos\nsystem\n", b"cbuiltins\neval\n",
             b"q\x00", b"h\x00", b"r\xff\xff\xff\x7f", b"j\xff\xff\xff\x7f", b"p0\n", b"g0\n",
             b"\x8e" + struct.pack("<Q", 2**40), b"\x96" + struct.pack("<Q", 2**63 + 5),
             b"\x95" + struct.pack("<Q", 2**40), b"B" + struct.pack("<I", 2**31), b"C\x05ab",
             b"\x8c\x03abc", b"X\x03\x00\x00\x00abc", b"\x8a\x01\x05", b"\x8b" + struct.pack("<i", 2**30),
             b"\x80\x02", b"\x80\x05", b"."]


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40), st.booleans())
def test_fuzz_pth_pickle_opcodes(tmp_path_factory, fragments, with_dict):
    body = b"".join(fragments)
    pkl = (b"\x80\x02}(" + body + b"u." if with_dict else b"\x80\x02" + body + b".")
    path = write_pth(tmp_path_factory.mktemp("op") / "f.pth", pkl, {"0": bytes(24)})
    checked(lambda: load_pth(path), path)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, 2000)))
def test_fuzz_pth_zip_bytes(tmp_path_factory, flips, cut):
    folder = tmp_path_factory.mktemp("zb")
    good = folder / "good.pth"
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.arange(3).half()}, good)
    data = bytearray(good.read_bytes())
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    path = folder / "bad.pth"
    path.write_bytes(bytes(data[:cut] if cut is not None else data))
    checked(lambda: load_pth(str(path)), path)


# ================================================================== HF config and index
def _tiny_hf(folder, llama: bool):
    if llama:
        config = LlamaConfig(vocab_size=11, dim=8, n_layers=2, n_heads=2, hidden_dim=8, max_seq_len=8)
    else:
        config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    rng = np.random.default_rng(0)
    write_hf(folder, config, {k: rng.standard_normal(s).astype(np.float32)
                              for k, s in parameter_shapes(config).items()})


GPT_KEYS = ["n_layer", "n_embd", "n_head", "vocab_size", "n_positions", "n_ctx", "n_inner", "layer_norm_epsilon",
            "activation_function", "tie_word_embeddings", "architectures", "model_type", "add_cross_attention"]
LLAMA_KEYS = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size",
              "intermediate_size", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "head_dim",
              "max_position_embeddings", "tie_word_embeddings", "hidden_act", "attention_bias"]
json_value = st.recursive(st.one_of(hostile_int, st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                                    st.text(max_size=4), st.none()),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                          max_leaves=6)


@FUZZ
@given(st.booleans(), st.data())
def test_fuzz_hf_config(llama, data):
    with tempfile.TemporaryDirectory() as folder:
        _tiny_hf(folder, llama)
        path = os.path.join(folder, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        if data.draw(st.integers(0, 9)) == 0:
            cfg = data.draw(json_value)                                   # not even an object
        else:
            for key in data.draw(st.lists(st.sampled_from(LLAMA_KEYS if llama else GPT_KEYS), max_size=3)):
                cfg[key] = data.draw(json_value)
        with open(path, "w") as f:
            json.dump(cfg, f)
        checked(lambda: read_checkpoint(folder), folder)


@FUZZ
@given(st.data())
def test_fuzz_hf_index(data):
    with tempfile.TemporaryDirectory() as folder:
        _tiny_hf(folder, False)
        shard = "model-00001-of-00001.safetensors"
        os.rename(os.path.join(folder, "model.safetensors"), os.path.join(folder, shard))
        names = list(read_safetensors(os.path.join(folder, shard))[0])
        weight_map = {k: shard for k in names}
        for k in data.draw(st.lists(st.sampled_from(names + ["extra"]), max_size=3)):
            weight_map[k] = data.draw(st.one_of(json_value, st.sampled_from(
                ["/etc/passwd", "../x.safetensors", "model.safetensors", "", shard + "x", "sub/" + shard])))
        index = data.draw(st.one_of(st.just({"weight_map": weight_map}), json_value.map(lambda v: {"weight_map": v}),
                                    json_value))
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f)
        checked(lambda: read_checkpoint(folder), folder)


# ================================================================== llama2.c .bin
header_int = st.one_of(st.integers(1, 16), st.integers(-4, 4), st.sampled_from([2**31 - 1, -2**31, 10**6, 2**20 + 1]))


VALID_HEADER = [8, 16, 2, 2, 2, 16, 4]       # llama2c_model_bytes()'s


@FUZZ
@given(st.lists(header_int, min_size=7, max_size=7), st.integers(0, 6000), st.booleans(),
       st.sampled_from([0, 0, 1, 2, 3, -1]), st.one_of(header_int, st.just(32)), st.integers(-1, 6))
def test_fuzz_llama2c_model(tmp_path_factory, ints, n_floats, valid_payload, version, group, keep):
    """Random headers, or the valid one with one field changed (keep >= 0: all but field ``keep``)."""
    path = tmp_path_factory.mktemp("l2c") / "m.bin"
    if keep >= 0:
        ints = [v if k != keep else ints[k] for k, v in enumerate(VALID_HEADER)]
        if keep == 6:
            ints = list(VALID_HEADER)
    payload = llama2c_model_bytes()[28:] if valid_payload else np.zeros(n_floats, "<f4").tobytes()
    if version == 0:
        head = struct.pack("<7i", *ints)
    else:
        head = struct.pack("<Ii7iBi", 0x616B3432, version, *ints, 1, group)
        head += bytes(256 - len(head))
    path.write_bytes(head + payload)
    checked(lambda: read_checkpoint(path), path)
