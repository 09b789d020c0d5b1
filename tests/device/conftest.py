"""The GPU tests run only where asked: ``SCRATCHLLM_TEST_CUDA=1`` (scripts/gpu_check.sh sets it).

Elsewhere the GPU files (``GPU_FILES``) are not even collected (deselected, never skipped: CI
fails on a skip). On a GPU machine without the variable, the CPU side of the device API still runs.
"""
import os

GPU_FILES = ["test_device_cuda.py", "test_device_decode_cuda.py", "test_device_amp_cuda.py"]
collect_ignore = [] if os.environ.get("SCRATCHLLM_TEST_CUDA") == "1" else GPU_FILES
