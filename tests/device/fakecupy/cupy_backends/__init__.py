"""The stand-in's cupy_backends: only cuda.libs.cublas.gemmEx (see cuda/libs/cublas.py)."""
