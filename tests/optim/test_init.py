"""nn.init: torch's fans and gains, the statistics they imply, and seeded determinism."""
import math

import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm.nn import init
from scratchllm.nn.parameter import Parameter

SHAPES = [(64, 32), (16, 8, 3, 3), (5, 7, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError, match="2 dimensions"):
        init.xavier_uniform_(np.empty(5))


@pytest.mark.parametrize("name,param", [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                                        ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)),
                                        ("selu", None), ("conv2d", None)])
def test_gains_match_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-15)


def _bound_and_std(name, shape, kwargs):
    """(uniform bound or None, std) from torch's own formulas (fans and gains from torch)."""
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    if name.startswith("xavier"):
        std = kwargs.get("gain", 1.0) * math.sqrt(2.0 / (fan_in + fan_out))
    else:
        fan = fan_in if kwargs.get("mode", "fan_in") == "fan_in" else fan_out
        std = torch.nn.init.calculate_gain(kwargs.get("nonlinearity", "leaky_relu"), kwargs.get("a", 0)) / math.sqrt(fan)
    return (math.sqrt(3.0) * std if name.endswith("uniform_") else None), std


@pytest.mark.parametrize("shape", [(400, 300), (64, 32, 3, 3)])
@pytest.mark.parametrize("name,kwargs", [
    ("xavier_uniform_", {}), ("xavier_uniform_", {"gain": 2.0}), ("xavier_normal_", {}),
    ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {"nonlinearity": "relu"}), ("kaiming_normal_", {"mode": "fan_out"})])
def test_statistics_follow_torch_formulas(shape, name, kwargs):
    w = Parameter(np.zeros(shape, dtype=np.float32))
    assert getattr(init, name)(w, generator=sl.Generator(0), **kwargs) is w
    bound, std = _bound_and_std(name, shape, kwargs)
    assert w.data.dtype == np.float32
    assert w.data.std() == pytest.approx(std, rel=0.02)
    assert abs(w.data.mean()) < 0.02 * std
    if bound is not None:
        assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound


def test_normal_uniform_constant_and_trunc_normal():
    g = sl.Generator(1)
    w = np.zeros((300, 300))
    init.normal_(w, mean=2.0, std=0.5, generator=g)
    assert w.mean() == pytest.approx(2.0, abs=0.01) and w.std() == pytest.approx(0.5, rel=0.02)
    init.uniform_(w, -3.0, 1.0, generator=g)
    assert w.min() >= -3.0 and w.max() < 1.0 and w.mean() == pytest.approx(-1.0, abs=0.02)
    init.trunc_normal_(w, std=1.0, a=-1.0, b=0.5, generator=g)
    assert w.min() >= -1.0 and w.max() <= 0.5 and w.min() < -0.99 and w.max() > 0.49
    init.zeros_(w)
    assert not w.any()
    t = Parameter(np.zeros(4, dtype=np.float64))
    init.ones_(t)
    init.constant_(t, 3.5)
    assert t.data.dtype == np.float64 and (t.data == 3.5).all()


@pytest.mark.parametrize("name", ["normal_", "uniform_", "xavier_uniform_", "xavier_normal_",
                                  "kaiming_uniform_", "kaiming_normal_", "trunc_normal_"])
def test_same_seed_same_weights(name):
    fn = getattr(init, name)
    sl.manual_seed(123)
    a = fn(Parameter(np.zeros((20, 10), dtype=np.float32)))
    b = fn(Parameter(np.zeros((20, 10), dtype=np.float32)))       # the stream moved on
    sl.manual_seed(123)
    c = fn(Parameter(np.zeros((20, 10), dtype=np.float32)))
    d = fn(Parameter(np.zeros((20, 10), dtype=np.float32)), generator=sl.Generator(123))
    np.testing.assert_array_equal(a.data, c.data)
    np.testing.assert_array_equal(a.data, d.data)
    assert not np.array_equal(a.data, b.data)
    # float64 sees the same numbers as float32 (drawn in float64, then cast)
    e = fn(Parameter(np.zeros((20, 10))), generator=sl.Generator(123))
    np.testing.assert_array_equal(e.data.astype(np.float32), a.data)
