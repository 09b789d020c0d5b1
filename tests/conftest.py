"""Suite-wide: with ``SCRATCHLLM_NO_SKIP=1`` (``make test`` sets it) a skipped test fails.

A test that skips because something is missing (numba, an OpenBLAS, a test dependency) says
nothing about the code; in CI that must be loud, not a line hidden by ``-q``.
"""
import os

import pytest


def _fail_if_skipped(report):
    if report.skipped and os.environ.get("SCRATCHLLM_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped ({reason}), and SCRATCHLLM_NO_SKIP=1 forbids skips"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):        # a test (or its fixture) that skips
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):        # a whole module that skips (importorskip at the top)
    outcome = yield
    _fail_if_skipped(outcome.get_result())
