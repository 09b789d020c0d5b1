"""Issue 13's hostile checkpoints, one test per reported case (and neighbours): each is refused with
one ScratchLLMError naming the file and the field, in bounded time and memory, before any memory
outside the file is touched."""
import json
import os
import struct
import time
import zipfile

import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm.io.hf import write_hf
from scratchllm.io.load import read_checkpoint
from scratchllm.io.pth import load_pth
from scratchllm.io.safetensors_file import read_safetensors, write_safetensors
from scratchllm.models.config import GPTConfig, LlamaConfig
from scratchllm.models.weights import parameter_shapes

from hostile_files import (Raw, bounded, llama2c_model_bytes, op, simple_pth, state_pickle, tensor,
                           write_pth, write_safetensors_raw)


def refused(fn, path, *fields):
    """fn() raises one ScratchLLMError naming ``path`` and every one of ``fields``; bounded."""
    result, err = bounded(fn, path)
    assert err is not None, f"accepted: {result!r:.200}"
    msg = str(err)
    assert os.fspath(path) in msg, msg
    for f in fields:
        assert f in msg, msg
    return msg


# ================================================================== .pth: layouts
@pytest.mark.parametrize("stride", [(-2**40, 1), (3, -1), (-1, -1)])
def test_pth_negative_stride(tmp_path, stride):
    path = simple_pth(tmp_path / "s.pth", size=(2, 3), stride=stride)
    refused(lambda: load_pth(path), path, "stride", "non-negative")


def test_pth_negative_storage_offset(tmp_path):
    path = simple_pth(tmp_path / "o.pth", offset=-1, size=(2, 3), stride=(3, 1))
    refused(lambda: load_pth(path), path, "offset")


@pytest.mark.parametrize("numel", [-1, float("inf"), True, 2**63 + 5, "6"])
def test_pth_bad_numel(tmp_path, numel):
    path = simple_pth(tmp_path / "n.pth", numel=numel)
    refused(lambda: load_pth(path), path, "numel")


@pytest.mark.parametrize("size", [(2.0, 3), ("2", 3), (True, 3), (2, -3), [2**70, 1]])
def test_pth_non_int_or_negative_sizes(tmp_path, size):
    path = simple_pth(tmp_path / "z.pth", size=size, stride=(3, 1))
    refused(lambda: load_pth(path), path, "size")


def test_pth_stride_zero_huge_size(tmp_path):
    """16 bytes of storage must not become a 1 GiB tensor (or a MemoryError)."""
    path = simple_pth(tmp_path / "b.pth", size=(2**28,), stride=(0,), numel=4, data=np.ones(4, np.float32))
    refused(lambda: load_pth(path), path, "stride 0")
    one = simple_pth(tmp_path / "one.pth", size=(1, 4), stride=(0, 1), numel=4, data=np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(load_pth(one)["w"], [[0, 1, 2, 3]])   # stride 0 over ONE element: fine


def test_pth_view_beyond_storage(tmp_path):
    path = simple_pth(tmp_path / "v.pth", offset=4, size=(2, 3), stride=(3, 1), numel=6)
    refused(lambda: load_pth(path), path, "needs 10 elements", "holds 6")
    overlap = simple_pth(tmp_path / "ov.pth", size=(4, 4), stride=(1, 1), numel=7)   # 16 elements of 7
    refused(lambda: load_pth(overlap), overlap, "needs 16 elements")


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x96"])          # BINBYTES8, BYTEARRAY8
@pytest.mark.parametrize("length", [2**40, 2**63 + 5])
def test_pth_huge_binbytes8(tmp_path, opcode, length):
    pkl = b"\x80\x05" + opcode + struct.pack("<Q", length) + b"abc" + b"."
    path = write_pth(tmp_path / "bb.pth", pkl, {})
    refused(lambda: load_pth(path), path, "damaged pickle")


def test_pth_huge_memo_index(tmp_path):
    pkl = b"\x80\x02}r" + struct.pack("<I", 2**31) + b"."        # LONG_BINPUT 2**31: a 16 GiB memo
    path = write_pth(tmp_path / "memo.pth", pkl, {})
    refused(lambda: load_pth(path), path, "memo index")


def test_pth_instance_building_opcodes_refused(tmp_path):
    pkl = b"\x80\x02" + op(("x",)) + b"\x81."                      # NEWOBJ
    path = write_pth(tmp_path / "newobj.pth", pkl, {})
    refused(lambda: load_pth(path), path, "NEWOBJ")


# ================================================================== .pth: zip entries
def test_pth_zip_bomb_ratio(tmp_path):
    """A ~100 KiB file whose storage inflates to 64 MiB: refused before inflating it."""
    n = 16 << 20
    pkl = state_pickle({"w": tensor("0", "FloatStorage", n, 0, (n,), (1,))})
    path = write_pth(tmp_path / "bomb.pth", pkl, {"0": bytes(4 * n)}, compress=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 200_000
    refused(lambda: load_pth(path), path, "zip bomb")


def test_pth_entry_larger_than_its_tensors_need(tmp_path):
    pkl = state_pickle({"w": tensor("0", "FloatStorage", 4, 0, (4,), (1,))})
    path = write_pth(tmp_path / "big.pth", pkl, {"0": bytes(1 << 16)})
    refused(lambda: load_pth(path), path, "holds 65536 bytes", "says 16")
    short = write_pth(tmp_path / "short.pth", pkl, {"0": bytes(8)})
    refused(lambda: load_pth(short), short, "holds 8 bytes")
    missing = write_pth(tmp_path / "missing.pth", pkl, {})
    refused(lambda: load_pth(missing), missing, "missing from the archive")


def test_pth_repeated_storage_decompressed_once(tmp_path, monkeypatch):
    data = np.arange(12, dtype=np.float32)
    pkl = state_pickle({"a": tensor("0", "FloatStorage", 12, 0, (2, 3), (3, 1)),
                        "b": tensor("0", "FloatStorage", 12, 6, (3, 2), (1, 3)),
                        "c": tensor("0", "FloatStorage", 12, 0, (4,), (3,))})
    path = write_pth(tmp_path / "shared.pth", pkl, {"0": data.tobytes()}, compress=zipfile.ZIP_DEFLATED)
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(getattr(name, "filename", name)) or
                        real_open(self, name, *a, **k))
    state = load_pth(path)
    assert opened.count("archive/data/0") == 1
    ref = torch.load(path, weights_only=True)
    for k in "abc":
        np.testing.assert_array_equal(state[k], ref[k].numpy())


def test_pth_one_storage_referenced_forty_times(tmp_path):
    n = 1 << 18
    pkl = state_pickle({f"w{i}": tensor("0", "FloatStorage", n, 0, (n,), (1,)) for i in range(40)})
    path = write_pth(tmp_path / "forty.pth", pkl, {"0": bytes(4 * n)}, compress=zipfile.ZIP_DEFLATED)
    refused(lambda: load_pth(path), path, "that many times")


def test_pth_valid_layouts_match_torch(tmp_path):
    """Strided, offset, transposed, empty, 0-d, half and bfloat16 tensors read as torch reads them."""
    base = torch.arange(24, dtype=torch.float32)
    state = {"t": base.reshape(4, 6).t(), "off": base[5:17].reshape(3, 4), "empty": torch.zeros(0, 5),
             "scalar": torch.tensor(3.5), "half": base.half().reshape(2, 12)[:, ::3],
             "bf16": base.bfloat16().reshape(6, 4), "ids": torch.arange(7)}
    path = tmp_path / "ok.pth"
    torch.save(state, path)
    got = load_pth(str(path))
    for k, v in state.items():
        want = v.float().numpy() if v.is_floating_point() else v.numpy()
        assert got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want)


def test_pth_damaged_zip64_locator(tmp_path):
    """Found by the fuzz suite: zipfile.is_zipfile itself raises BadZipFile on this file."""
    path = simple_pth(tmp_path / "ok.pth")
    data = bytearray(open(path, "rb").read())
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd - 20:eocd] = b"PK\x06\x07" + struct.pack("<IQI", 2, 0, 1)   # a zip64 locator: "disk 2"
    open(path, "wb").write(bytes(data))
    refused(lambda: load_pth(path), path, "damaged")


def test_pth_not_a_dict_and_big_endian(tmp_path):
    path = write_pth(tmp_path / "list.pth", b"\x80\x02]." , {})
    refused(lambda: load_pth(path), path, "not a state dict")
    be = write_pth(tmp_path / "be.pth", state_pickle({}), {}, byteorder=b"big")
    refused(lambda: load_pth(be), be, "big-endian")
    keys = write_pth(tmp_path / "keys.pth", b"\x80\x02}" + op(5) + op(5) + b"s.", {})
    refused(lambda: load_pth(keys), keys, "not named tensors")


# ================================================================== safetensors
def _f32(n=2):
    return {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}


@pytest.mark.parametrize("offsets", [[-8, -4], [4, 0], [0, 8.0], [0, "8"], [0], [True, 8]])
def test_safetensors_bad_data_offsets(tmp_path, offsets):
    path = write_safetensors_raw(tmp_path / "o.safetensors", {"w": {**_f32(), "data_offsets": offsets}}, bytes(8))
    refused(lambda: read_safetensors(path), path, "'w'", "data_offsets")


def test_safetensors_overlapping_and_gapped_offsets(tmp_path):
    head = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    path = write_safetensors_raw(tmp_path / "ov.safetensors", head, bytes(12))
    refused(lambda: read_safetensors(path), path, "overlaps tensor 'a'")
    head["b"]["data_offsets"] = [12, 20]
    gap = write_safetensors_raw(tmp_path / "gap.safetensors", head, bytes(20))
    refused(lambda: read_safetensors(gap), gap, "gap")


@pytest.mark.parametrize("shape", [[2.9, 2], "22", ["2", 2], [True, 2], [-1, 4], [2, None], [1] * 65])
def test_safetensors_bad_shapes(tmp_path, shape):
    path = write_safetensors_raw(tmp_path / "s.safetensors", {"w": {**_f32(4), "shape": shape}}, bytes(16))
    refused(lambda: read_safetensors(path), path, "'w'", "shape")


@pytest.mark.parametrize("meta", [[1, 2], "x", {"a": 1}, {"a": ["b"]}])
def test_safetensors_bad_metadata(tmp_path, meta):
    path = write_safetensors_raw(tmp_path / "m.safetensors", {"__metadata__": meta, "w": _f32()}, bytes(8))
    refused(lambda: read_safetensors(path), path, "__metadata__")


def test_safetensors_deep_json_and_infinity(tmp_path):
    deep = write_safetensors_raw(tmp_path / "deep.safetensors", None,
                                 header_bytes=b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    refused(lambda: read_safetensors(deep), deep, "nested deeper")
    inf = write_safetensors_raw(tmp_path / "inf.safetensors", None,
                                header_bytes=b'{"w": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 4]}}',
                                data=bytes(4))
    refused(lambda: read_safetensors(inf), inf, "Infinity")
    for reader in (sl.load, sl.io.load_metadata):
        refused(lambda: reader(inf), inf, "Infinity")


def test_safetensors_writer_and_reader_agree_with_the_library(tmp_path):
    from safetensors.numpy import load_file, save_file
    from safetensors.torch import save_file as torch_save_file
    rng = np.random.default_rng(0)
    state = {"f16": rng.standard_normal((3, 5)).astype(np.float16), "i8": np.arange(-3, 4, dtype=np.int8),
             "b": np.array([True, False]), "z": np.zeros((0, 2), np.float32), "s": np.array(1.5),
             "u64": np.arange(3, dtype=np.uint64), "c64": np.ones(2, np.complex64)}
    ours = tmp_path / "ours.safetensors"
    write_safetensors(ours, state, {"k": "v"})
    lib = load_file(str(ours))
    theirs = tmp_path / "theirs.safetensors"
    save_file(state, str(theirs), metadata={"k": "v"})
    back, meta = read_safetensors(theirs, float32=False)
    assert meta == {"k": "v"}
    for k, v in state.items():
        np.testing.assert_array_equal(lib[k], v)
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype
    bf = tmp_path / "bf16.safetensors"
    t = torch.randn(4, 3).bfloat16()
    torch_save_file({"w": t}, str(bf))
    np.testing.assert_array_equal(read_safetensors(bf)[0]["w"], t.float().numpy())


# ================================================================== HF folders
def _hf_gpt2(folder, n_layer=2):
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=8)
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in parameter_shapes(config).items()}
    write_hf(os.fspath(folder), config, state)
    return folder


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_hf_config_that_is_a_list(tmp_path):
    folder = _hf_gpt2(tmp_path / "m")
    (folder / "config.json").write_text("[1, 2]")
    refused(lambda: read_checkpoint(folder), folder / "config.json", "JSON object")


def test_hf_n_layer_a_million_fails_fast(tmp_path):
    folder = _hf_gpt2(tmp_path / "m")
    _edit_config(folder, n_layer=10**6)
    t0 = time.perf_counter()
    refused(lambda: read_checkpoint(folder), folder / "config.json", "n_layer", "1000000", "2 distinct")
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("value", [True, 2.0, "2", [2], -2, 0, 2**40])
def test_hf_n_layer_must_be_a_positive_int(tmp_path, value):
    folder = _hf_gpt2(tmp_path / "m")
    _edit_config(folder, n_layer=value)
    refused(lambda: read_checkpoint(folder), folder / "config.json", "n_layer")


@pytest.mark.parametrize("key,value", [("n_embd", True), ("n_positions", 10**9), ("layer_norm_epsilon", "1e-5"),
                                        ("tie_word_embeddings", "yes"), ("architectures", "GPT2LMHeadModel"),
                                        ("activation_function", 3)])
def test_hf_config_value_types(tmp_path, key, value):
    folder = _hf_gpt2(tmp_path / "m")
    _edit_config(folder, **{key: value})
    refused(lambda: read_checkpoint(folder), folder / "config.json", key)


def _sharded(folder):
    """The single model.safetensors as a one-shard index."""
    os.rename(folder / "model.safetensors", folder / "model-00001-of-00001.safetensors")
    names = list(read_safetensors(folder / "model-00001-of-00001.safetensors")[0])
    index = {"weight_map": {k: "model-00001-of-00001.safetensors" for k in names}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return index


@pytest.mark.parametrize("shard", [7, ["a"], None, {"x": 1}])
def test_hf_index_shard_names_that_are_not_names(tmp_path, shard):
    folder = _hf_gpt2(tmp_path / "m")
    index = _sharded(folder)
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    refused(lambda: read_checkpoint(folder), folder / "model.safetensors.index.json", "weight_map", first)


def test_hf_shards_outside_the_folder_are_refused(tmp_path):
    outside = _hf_gpt2(tmp_path / "outside")
    folder = _hf_gpt2(tmp_path / "m")
    index = _sharded(folder)
    secret = os.fspath(outside / "model.safetensors")
    for name in (secret, "../outside/model.safetensors"):                # absolute, or climbing out
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {k: name for k in index["weight_map"]}}))
        refused(lambda: read_checkpoint(folder), folder / "model.safetensors.index.json", "outside the model folder")
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    shard = folder / "model-00001-of-00001.safetensors"
    shard.unlink()
    shard.symlink_to(secret)                                               # a link that escapes
    refused(lambda: read_checkpoint(folder), folder / "model.safetensors.index.json", "outside the model folder")
    single = _hf_gpt2(tmp_path / "single")
    (single / "model.safetensors").unlink()
    (single / "model.safetensors").symlink_to(secret)
    refused(lambda: read_checkpoint(single), single, "outside the model folder")


def test_hf_cache_snapshot_links_into_blobs_are_read(tmp_path):
    """The Hugging Face cache keeps files in models--x/blobs/ and links them from snapshots/<rev>/."""
    repo = tmp_path / "models--tiny"
    src = _hf_gpt2(tmp_path / "src")
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        os.rename(src / name, repo / "blobs" / ("h-" + name))
        (snap / name).symlink_to(os.path.relpath(repo / "blobs" / ("h-" + name), snap))
    config, state = read_checkpoint(snap)
    assert config.n_layer == 2 and "transformer.wte.weight" in state


def test_explicit_file_outside_any_folder_is_read(tmp_path):
    """Refusing applies to files a folder names; a file the user passes is read."""
    model = sl.models.GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(tmp_path / "m")
    link = tmp_path / "elsewhere.safetensors"
    link.symlink_to(tmp_path / "m" / "model.safetensors")
    config, _ = read_checkpoint(link)
    assert config.n_layer == 1


def test_scratchllm_folder_bool_and_huge_layers(tmp_path):
    model = sl.models.GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(tmp_path / "m")
    st = tmp_path / "m" / "model.safetensors"
    state, meta = read_safetensors(st)
    cfg = json.loads(meta["config"])
    for value, field in ((True, "must be an integer"), (10**6, "1000000")):
        write_safetensors(st, state, {**meta, "config": json.dumps({**cfg, "n_layer": value})})
        refused(lambda: read_checkpoint(tmp_path / "m"), st, "n_layer", field)


# ================================================================== Meta and llama2.c
def test_meta_params_n_layers_and_shard_links(tmp_path):
    folder = tmp_path / "meta"
    folder.mkdir()
    config = LlamaConfig(vocab_size=16, dim=8, n_layers=1, n_heads=2, multiple_of=8, max_seq_len=16)
    rng = np.random.default_rng(0)
    torch.save({k: torch.from_numpy(rng.standard_normal(s).astype(np.float32))
                for k, s in parameter_shapes(config).items()}, folder / "consolidated.00.pth")
    params = {"dim": 8, "n_layers": 1, "n_heads": 2, "multiple_of": 8, "vocab_size": 16, "norm_eps": 1e-5}
    (folder / "params.json").write_text(json.dumps(params))
    assert read_checkpoint(folder)[0].n_layers == 1
    for value, field in ((10**6, "1000000"), (True, "must be an integer"), (1.0, "must be an integer")):
        (folder / "params.json").write_text(json.dumps({**params, "n_layers": value}))
        refused(lambda: read_checkpoint(folder), folder / "params.json", "n_layers", field)
    (folder / "params.json").write_text(json.dumps(params))
    os.rename(folder / "consolidated.00.pth", tmp_path / "secret.pth")
    (folder / "consolidated.00.pth").symlink_to(tmp_path / "secret.pth")
    refused(lambda: read_checkpoint(folder), folder, "outside the model folder")


@pytest.mark.parametrize("header", [(8, 16, 10**6, 2, 2, 16, 4), (2**30, 2**30, 2**30, 1, 1, 2**30, 4),
                                    (8, 16, 2, 2, 2, 16, 2**30), (8, 16, 2, 3, 3, 16, 4), (8, 16, 2, 2, 2, 0, 4)])
def test_llama2c_header_claims_refused_fast(tmp_path, header):
    good = llama2c_model_bytes()
    path = tmp_path / "m.bin"
    path.write_bytes(struct.pack("<7i", *header) + good[28:])
    refused(lambda: read_checkpoint(path), path)


def test_llama2c_valid_tiny_file_reads(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(llama2c_model_bytes())
    config, state = read_checkpoint(path)
    assert config.n_layers == 2 and state["layers.1.feed_forward.w2.weight"].shape == (8, 16)


def test_no_raw_pickle_opcode_stand_in_leaks(tmp_path):
    """A REDUCE on a storage *type* (not callable here) is a damaged file, not a TypeError."""
    pkl = b"\x80\x02}(" + op("w") + Raw(b"ctorch\nFloatStorage\n)R") + b"u."
    path = write_pth(tmp_path / "r.pth", pkl, {})
    refused(lambda: load_pth(path), path, "damaged")
