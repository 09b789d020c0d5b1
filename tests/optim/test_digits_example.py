"""The digits MLP of examples/digits_mlp.py learns to > 95% test accuracy in a fast configuration
(about 1 s on an idle 2-core machine)."""
import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "digits_mlp.py"


def _example():
    spec = importlib.util.spec_from_file_location("digits_mlp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_mlp_beats_95_percent_and_is_deterministic():
    train_digits = _example().train_digits
    acc = train_digits(hidden=64, epochs=20, seed=0)
    assert acc > 0.95
    assert train_digits(hidden=64, epochs=2, seed=1) == train_digits(hidden=64, epochs=2, seed=1)
