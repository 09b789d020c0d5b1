"""Meta ``.pth`` tensors that are views into a shared storage at a non-zero offset.

``torch.save`` keeps views: two slices of one tensor are saved as one storage and two
(offset, size, stride) triples. A reader that ignored the offset would read every slice from
the storage's start; a test whose tensors were all copies (offset 0) could not tell.
"""
import numpy as np
import torch

from scratchllm.io.pth import load_pth


def test_views_at_offsets_into_one_storage(tmp_path):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 6, generator=g)
    b16 = torch.randn(5, 4, generator=g).bfloat16()
    state = {"top": w[:4], "bottom": w[4:], "block": w[2:7, 1:5], "column": w[:, 3],
             "b16_tail": b16[2:], "b16_col": b16[1:, 2]}
    assert {k: v.storage_offset() for k, v in state.items()} == \
        {"top": 0, "bottom": 24, "block": 13, "column": 3, "b16_tail": 8, "b16_col": 6}
    torch.save(state, tmp_path / "views.pth")
    got = load_pth(str(tmp_path / "views.pth"))
    assert set(got) == set(state)
    for k, v in state.items():
        assert got[k].dtype == np.float32 and got[k].shape == tuple(v.shape), k
        np.testing.assert_array_equal(got[k], v.float().numpy(), err_msg=k)
