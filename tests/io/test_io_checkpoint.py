"""sl.save / sl.load: safetensors round trips with metadata, and one clear error per bad file."""
import json
import re
import struct

import numpy as np
import pytest
from safetensors import safe_open

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.io.checkpoint import load_metadata
from scratchllm.nn.parameter import Parameter


def _state():
    rng = np.random.default_rng(0)
    return {"w32": rng.standard_normal((3, 4)).astype(np.float32),
            "w64": rng.standard_normal((5,)),
            "ids": rng.integers(-5, 10**12, size=(2, 3), dtype=np.int64),
            "mask": np.array([True, False, True]),
            "scalar": np.array(2.5, dtype=np.float32),
            "empty": np.zeros((0, 4), dtype=np.float32),
            "transposed": rng.standard_normal((4, 6)).astype(np.float32).T}   # not C-contiguous


def test_round_trip_dtypes_shapes_and_metadata(tmp_path):
    state = _state()
    meta = {"config": {"n_layer": 2, "names": ["a", "b"], "eps": 1e-5}, "step": 100,
            "format": "pt", "note": "123"}
    path = tmp_path / "ckpt.safetensors"
    sl.save(state, path, metadata=meta)
    loaded = sl.load(path)
    assert sorted(loaded) == sorted(state)
    for k, v in state.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, k
        np.testing.assert_array_equal(loaded[k], v)
    assert load_metadata(path) == meta                    # "123" stays a string, 100 stays an int
    with safe_open(str(path), framework="np") as f:       # readable by the safetensors library itself
        assert f.metadata()["format"] == "pt"
        assert json.loads(f.metadata()["config"]) == meta["config"]
        np.testing.assert_array_equal(f.get_tensor("w32"), state["w32"])


def test_saves_tensors_and_modules(tmp_path):
    class Tiny:   # anything with state_dict() (sl.nn.Module's contract)
        def state_dict(self):
            return {"weight": Parameter(np.ones((2, 2), dtype=np.float32)), "bias": sl.Tensor([1.0, 2.0])}

    sl.save(Tiny(), tmp_path / "m.safetensors")
    loaded = sl.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded["weight"], np.ones((2, 2), dtype=np.float32))
    np.testing.assert_array_equal(loaded["bias"], np.array([1.0, 2.0], dtype=np.float32))
    assert load_metadata(tmp_path / "m.safetensors") == {}


def test_save_rejects_bad_input_clearly(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(ScratchLLMError, match="'obj'.*dtype object"):
        sl.save({"obj": np.array([None, 1])}, path)
    with pytest.raises(ScratchLLMError, match="'lst' is a list"):
        sl.save({"lst": [1, 2]}, path)
    with pytest.raises(ScratchLLMError, match="'bad' is not JSON"):
        sl.save({"a": np.ones(1)}, path, metadata={"bad": object()})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def _valid_bytes(tmp_path):
    path = tmp_path / "good.safetensors"
    sl.save(_state(), path, metadata={"step": 1})
    return path.read_bytes()


def _header(entries):
    raw = json.dumps(entries).encode()
    return struct.pack("<Q", len(raw)) + raw


def _bad_files(good):
    n = struct.unpack("<Q", good[:8])[0]
    return {
        "empty": (b"", "only 0 bytes"),
        "tiny": (b"\x01\x02\x03", "only 3 bytes"),
        "truncated_data": (good[:-7], "truncated checkpoint: tensor"),
        "truncated_header": (good[:8 + n // 2], "header length .* beyond the end"),
        "garbage": (np.random.default_rng(0).bytes(4096), "beyond the end|implausible|not JSON"),
        "text": (b"this is a plain text file, not a checkpoint at all\n" * 3, "beyond the end"),
        "pickle": (b"\x80\x04\x95" + b"\x00" * 40, "beyond the end|implausible"),
        "not_json": (struct.pack("<Q", 4) + b"\xff\xfe{{", "header is not JSON"),
        "json_list": (_header([1, 2]), "not a JSON object"),
        "bad_entry": (_header({"w": {"dtype": "F32"}}), "bad entry for tensor 'w'"),
        "bad_dtype": (_header({"w": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4,
                      "bad entry for tensor 'w'"),
        "wrong_size": (_header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}) + b"\0" * 4,
                       "tensor 'w' .* expected 8 bytes"),
        "trailing": (good + b"\0" * 16, "describes .* bytes of data"),
    }


@pytest.mark.parametrize("case", list(_bad_files(b"\0" * 16)))
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, case):
    content, pattern = _bad_files(_valid_bytes(tmp_path))[case]
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(content)
    for reader in (sl.load, load_metadata):
        with pytest.raises(ScratchLLMError, match=re.escape(str(path))) as err:
            reader(path)
        assert re.search(pattern, str(err.value)), str(err.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ScratchLLMError, match="not found"):
        sl.load(tmp_path / "nope.safetensors")
    with pytest.raises(ScratchLLMError, match="is a folder"):
        sl.load(tmp_path)
