"""The PyTorch side of the benchmarks. torch / transformers are imported only
inside these modules' functions, never when scratchllm is imported."""
