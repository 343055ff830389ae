"""The authors' GSOrthogonal algorithm in plain PyTorch (METHOD.md 2.2 and 6.2): Cayley blocks by
torch.linalg.solve and BlockdiagButterflyMultiply as bmm, transposes and contiguous copies, with
autograd's backward. The baseline of `python3 -m gsoft.bench`; gsoft's own code never calls it."""
import torch
from torch import nn


def butterfly_multiply(x, w1, w2):
    """x (..., k*p); w1 (k, q, p) applied first; w2 (l, s, r), k*q == l*r. Returns (..., l*s)."""
    batch_shape, n = x.shape[:-1], x.shape[-1]
    batch = 1
    for d in batch_shape:
        batch *= d
    k, q, p = w1.shape
    l, s, r = w2.shape
    assert k * p == n and k * q == l * r
    x_reshaped = x.reshape(batch, k, p).transpose(0, 1)
    out1 = torch.bmm(x_reshaped, w1.transpose(-1, -2))
    out1 = out1.transpose(0, 1).reshape(batch, r, l).transpose(-1, -2).contiguous().transpose(0, 1)
    out2 = torch.bmm(out1, w2.transpose(-1, -2))
    out2 = out2.permute(1, 2, 0).reshape(*batch_shape, s * l)
    return out2


def cayley(a):
    s = 0.5 * (a - a.transpose(-1, -2))
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(s)
    return torch.linalg.solve(eye - s, eye + s, left=False)


class AuthorsGSOrthogonal(nn.Module):
    def __init__(self, n, nblocks):
        super().__init__()
        b = n // nblocks
        self.L = nn.Parameter(torch.zeros(nblocks, b, b))
        self.R = nn.Parameter(torch.zeros(nblocks, b, b))

    def forward(self, x):
        return butterfly_multiply(x, cayley(self.R), cayley(self.L))
