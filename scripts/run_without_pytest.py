"""Run a test module on a machine without pytest (scripts/gpu_check.sh's fallback).

    SCRATCHLLM_TEST_CUDA=1 python scripts/run_without_pytest.py tests/device/test_device_cuda.py

A stand-in ``pytest`` module gives what the device tests use (``mark.parametrize`` with ``ids``,
``raises(match=)``, the ``tmp_path`` fixture); every test and parameter case runs once, failures
print their traceback, the exit status is the number of failures (0: all passed).
"""
import importlib.util
import inspect
import itertools
import re
import sys
import tempfile
import traceback
import types
from pathlib import Path


class _Raises:
    def __init__(self, exc, match=None):
        self.exc, self.match = exc, match

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            raise AssertionError(f"DID NOT RAISE {self.exc}")
        if not issubclass(et, self.exc):
            return False
        if self.match and not re.search(self.match, str(ev)):
            raise AssertionError(f"{ev!r} does not match {self.match!r}")
        return True


def _parametrize(names, values, ids=None):
    def mark(fn):
        fn.__dict__.setdefault("_cases", []).append(([n.strip() for n in names.split(",")], list(values)))
        return fn
    return mark


def _install_stub():
    stub = types.ModuleType("pytest")
    stub.mark = types.SimpleNamespace(parametrize=_parametrize, skipif=lambda *a, **k: (lambda f: f))
    stub.raises = _Raises
    stub.fixture = lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f))
    sys.modules["pytest"] = stub


def _cases(fn):
    axes = []
    for names, values in reversed(fn.__dict__.get("_cases", [])):
        axes.append([dict(zip(names, v if len(names) > 1 else (v,))) for v in values])
    for combo in itertools.product(*axes) if axes else [()]:
        kwargs = {}
        for part in combo:
            kwargs.update(part)
        yield kwargs


def main(paths):
    _install_stub()
    failures = passed = 0
    for path in paths:
        spec = importlib.util.spec_from_file_location(Path(path).stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not callable(fn):
                continue
            for kwargs in _cases(fn):
                if "tmp_path" in inspect.signature(fn).parameters:
                    kwargs["tmp_path"] = Path(tempfile.mkdtemp())
                shown = ",".join(f"{k}={getattr(v, '__name__', v)}" for k, v in kwargs.items() if k != "tmp_path")
                label = f"{name}[{shown}]"
                try:
                    fn(**kwargs)
                    passed += 1
                except Exception:                                 # noqa: BLE001 (report every failure)
                    failures += 1
                    print(f"FAILED {label}\n{traceback.format_exc()[-2500:]}", flush=True)
    print(f"{passed} passed, {failures} failed (run without pytest)")
    return min(failures, 100)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
