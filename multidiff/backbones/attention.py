"""Multi-head attention (Vaswani et al. 2017, Sec. 3.2) for the image backbones, over
``torch.nn.functional.scaled_dot_product_attention``.

Queries come from tokens ``x (B, N, D)``; keys and values from ``source
(B, L, Ds)``, which is ``x`` itself for self-attention or a conditioning
sequence for cross-attention. A cross-attention layer may carry a learned
null token that every query can always attend to, so a missing context, or
one whose tokens are all masked, still gives a well-defined output (the
softmax over no keys would be 0/0) and the key/value projections take part
in every forward pass (no unused parameters under DDP).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """``softmax(Q K^T / sqrt(d)) V`` with ``num_heads`` heads of width ``d = dim / num_heads``."""

    def __init__(self, dim: int, num_heads: int, source_dim: int | None = None, null_token: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        source_dim = source_dim or dim
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(source_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.null = nn.Parameter(torch.randn(source_dim) / source_dim**0.5) if null_token else None

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, N, D)``, ``source (B, L, Ds)`` (default ``x``), ``mask (B, L)`` bool, True = attend."""
        if source is None and self.null is None:
            source = x
        if self.null is not None:
            batch = x.shape[0]
            null = self.null.to(x.dtype).expand(batch, 1, -1)  # (B, 1, Ds)
            if source is None:
                source, mask = null, None
            else:
                source = torch.cat([null, source.to(x.dtype)], dim=1)  # (B, 1 + L, Ds)
                if mask is not None:
                    mask = torch.cat([mask.new_ones(batch, 1), mask], dim=1)  # (B, 1 + L)
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.to_kv(source), "b l (two h d) -> two b h l d", two=2, h=self.num_heads)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L): broadcast over heads, queries
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))
