"""The device API's CPU side: names, array modules, moves to "cpu", clear errors for a missing GPU.

A GPU-resident array is stood in for by ``FakeGpuArray`` (its class lives in a ``cupy`` module,
which is how scratchllm recognises CuPy arrays) to check the mixed-device errors without a GPU.
"""
import subprocess
import sys
import types

import numpy as np
import pytest

import scratchllm as sl
from scratchllm.device import (array_module, check_same_device, device_of, is_device_name, normalize,
                               to_device, to_host)
from scratchllm.errors import ScratchLLMError
from scratchllm.train.config import TrainConfig


class FakeGpuArray:
    """Just enough of a CuPy array for the device checks (never computed with); scratchllm tells
    CuPy arrays by their class's module."""
    __module__ = "cupy._stand_in"

    def __init__(self, shape=(2,), dtype=np.float32, index=0):
        self.shape, self.dtype, self.device = shape, np.dtype(dtype), types.SimpleNamespace(id=index)
        self.ndim, self.size = len(shape), int(np.prod(shape))


@pytest.fixture
def no_cupy(monkeypatch):
    """Behave as a machine without CuPy, even where it is installed (sys.modules None: ImportError)."""
    import scratchllm.device
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(scratchllm.device, "_CUPY", [])          # forget a GPU found earlier in this process


def test_device_names_normalise_and_bad_names_are_refused():
    assert normalize("cpu") == "cpu" and normalize("CUDA") == "cuda:0" and normalize("cuda:3") == "cuda:3"
    assert is_device_name("cuda:1") and is_device_name("cpu") and not is_device_name("float32")
    assert not is_device_name("cuda:x") and not is_device_name(np.float32)
    with pytest.raises(ScratchLLMError, match="unknown device 'tpu'"):
        normalize("tpu")


def test_array_module_and_device_of_follow_the_arrays():
    a = np.ones(3, dtype=np.float32)
    assert array_module(a) is np and array_module(a, 2.0, np.float32(1)) is np
    assert array_module(sl.Tensor([1.0])) is np and array_module() is np
    assert device_of(a) == device_of(sl.Tensor([1.0])) == device_of([1, 2]) == device_of(3.0) == "cpu"
    assert device_of(FakeGpuArray(index=2)) == "cuda:2"
    assert to_host(a) is a and to_device(a, "cpu") is a


def test_importing_scratchllm_does_not_import_cupy():
    code = "import sys, scratchllm as sl; sl.cuda.device_count; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tensor_device_to_cpu_numpy_item():
    x = sl.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, device="cpu")
    assert x.device == "cpu" and x.to("cpu") is x and x.cpu() is x and x.to(device="cpu") is x
    assert x.numpy() is x.data and x[1, 0].item() == 3.0
    y = x.to("cpu", sl.float64)
    assert y.dtype == np.float64 and y.device == "cpu"
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.data)
    assert x.to(x).dtype == np.float32
    assert "device" not in repr(x)


def test_factories_take_a_device():
    assert sl.zeros(2, 3, device="cpu").shape == (2, 3)
    assert sl.randn(4, device="cpu", generator=sl.Generator(0)).device == "cpu"
    assert sl.arange(5, device="cpu").numpy().tolist() == [0, 1, 2, 3, 4]
    assert sl.tensor([1, 2], device="cpu").dtype == np.int64


def test_cuda_without_cupy_is_one_clear_error(no_cupy):
    assert sl.cuda.is_available() is False and sl.cuda.device_count() == 0
    x = sl.Tensor([1.0, 2.0])
    for move in (lambda: x.to("cuda"), lambda: x.cuda(), lambda: sl.zeros(2, device="cuda"),
                 lambda: sl.Tensor([1.0], device="cuda:1"), lambda: sl.nn.Linear(2, 2).to("cuda")):
        with pytest.raises(ScratchLLMError, match=r'CuPy is not installed.*pip install "scratchllm\[cuda\]"'):
            move()


def test_module_to_cpu_and_dtype():
    m = sl.nn.Sequential(sl.nn.Linear(3, 4), sl.nn.LayerNorm(4))
    before = [p.data for p in m.parameters()]
    assert m.to("cpu") is m and m.device == "cpu" and m.cpu() is m
    assert all(p.data is b for p, b in zip(m.parameters(), before))      # nothing copied
    m(sl.randn(2, 3)).sum().backward()
    m.to("cpu", sl.float64)
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())
    assert sl.nn.Module().device == "cpu"


def test_mixing_devices_names_both():
    a = sl.Tensor([1.0, 2.0])
    b = sl.Tensor(FakeGpuArray())
    assert b.device == "cuda:0"
    for op in (lambda: a + b, lambda: a * b, lambda: a @ b, lambda: sl.cat([a, b])):
        with pytest.raises(ScratchLLMError, match=r"same device, got cpu and cuda:0"):
            op()
    with pytest.raises(ScratchLLMError, match="cuda:0 and cuda:1"):
        check_same_device("add", FakeGpuArray(index=0), FakeGpuArray(index=1))
    check_same_device("add", np.ones(2), np.ones(3), None, 2.0)          # same device: nothing


def test_train_config_device_key():
    assert TrainConfig().device == "cpu"
    assert TrainConfig().updated({"device": "cuda"}).device == "cuda"
    assert TrainConfig().updated({"device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(ScratchLLMError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        TrainConfig().updated({"device": "gpu"})


def test_generate_cli_device_without_cupy(tmp_path, no_cupy, capsys):
    from scratchllm.cli import main
    from scratchllm.models import GPT, GPTConfig
    GPT(GPTConfig.from_preset("gpt-nano", vocab_size=65)).save_pretrained(tmp_path / "m")
    (tmp_path / "m").joinpath("x").write_text("")
    code = main(["generate", "--model", str(tmp_path / "m"), "--tokenizer", "gpt2", "--prompt", "a",
                 "--device", "cuda", "--max-new-tokens", "2"])
    assert code == 1 and "CuPy is not installed" in capsys.readouterr().err


def test_the_gpu_code_paths_run_against_a_stand_in_cupy():
    """tests/device/test_device_cuda.py (a subset), test_device_decode_cuda.py and test_device_amp_cuda.py
    with tests/device/fakecupy as ``cupy``: NumPy arrays that refuse to mix with NumPy's, as CuPy's
    do, NumPy versions of the CUDA kernels and a cuBLAS gemmEx on the buffers' pointers. Checks
    the device glue on any machine (every array made on the right device, no host copies in a
    training step); the CUDA C itself is checked on a GPU only (scripts/gpu_check.sh)."""
    import os
    from pathlib import Path
    here = Path(__file__).parent
    env = dict(os.environ, SCRATCHLLM_TEST_CUDA="1",
               PYTHONPATH=os.pathsep.join([str(here / "fakecupy"), os.environ.get("PYTHONPATH", "")]))
    picked = ("elementary or fused or cross_entropy or float64 or round_trip or forward_backward or greedy or device_api"
              " or autocast or decode or amp")       # decode, amp: all of test_device_decode_cuda.py, _amp_cuda.py
    files = [str(here / f) for f in ("test_device_cuda.py", "test_device_decode_cuda.py", "test_device_amp_cuda.py")]
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-k", picked, *files],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout


def test_grad_scaler_skips_overflowing_steps_and_autocast_is_a_no_op_on_the_cpu():
    p = sl.nn.Parameter(np.ones(3, np.float32))
    opt = sl.optim.SGD([p], lr=0.1)
    scaler = sl.amp.GradScaler(init_scale=8.0, growth_interval=2)
    with sl.amp.autocast():
        loss = (sl.nn.functional.linear(sl.Tensor(np.ones((1, 3), np.float32)), p.reshape(1, 3)) * 2).sum()
    assert loss.dtype == np.float32
    scaler.scale(loss).backward()
    np.testing.assert_allclose(p.grad.numpy(), 16.0)           # scaled by 8
    assert scaler.step(opt) and scaler.scale_value == 8.0
    np.testing.assert_allclose(p.numpy(), 1 - 0.1 * 2.0)       # unscaled gradient 2
    scaler.update()
    p.grad = sl.Tensor(np.array([np.inf, 0, 0], np.float32))
    before = p.numpy().copy()
    assert not scaler.step(opt) and scaler.skipped == 1
    scaler.update()
    assert scaler.scale_value == 4.0 and np.array_equal(p.numpy(), before)
    for name in ("bfloat16", "bf16"):                          # bfloat16: a no-op on the CPU too
        with sl.amp.autocast(name):
            assert sl.amp.autocast_dtype() == "bfloat16"
            y = sl.nn.functional.linear(sl.Tensor(np.ones((1, 3), np.float32)), p.reshape(1, 3))
        assert y.dtype == np.float32 and sl.amp.autocast_dtype() is None
        np.testing.assert_array_equal(y.numpy(), np.ones((1, 3), np.float32) @ p.numpy().reshape(3, 1))
    with pytest.raises(ValueError, match="dtype must be 'float16' or 'bfloat16', got 'int8'"):
        with sl.amp.autocast("int8"):
            pass
