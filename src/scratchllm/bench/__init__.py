"""Benchmarks: scratchllm side by side with its PyTorch / HF transformers peers.

``scratchllm bench train`` and ``scratchllm bench generate`` (see ``cli.py``).
The peers (``peers/``) import torch lazily, inside the functions that need
them, so ``import scratchllm`` and ``--no-peer`` runs work without torch.
"""
