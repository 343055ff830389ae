"""GS products from Python: golden vectors of the authors' code through gsoft.GSOrthogonal, and
gradients against a dense pure-PyTorch construction written here (gradcheck in float64)."""
import pytest
import torch

import gsoft

GOLDEN = ["gs_0_n16_k4_cayley", "gs_1_n24_k4_cayley", "gs_2_n64_k8_cayley", "gs_3_n64_k8_exp",
          "gs_4_n768_k96_cayley"]


def shuffle(k, n):
    """Gather indices of the perfect shuffle P_(k,n): (P x)[i] = x[(i % k) * (n // k) + i // k]."""
    return torch.tensor([(i % k) * (n // k) + i // k for i in range(n)])


def perm_matrix(sigma, dtype):
    n = len(sigma)
    m = torch.zeros(n, n, dtype=dtype)
    m[torch.arange(n), sigma] = 1
    return m


def dense_butterfly(w1, w2):
    """METHOD.md 6.2: A = P_(l, l*s) BD(w2) P_(r, k*q) BD(w1), built from dense matrices."""
    k, q, _ = w1.shape
    l, s, r = w2.shape
    return perm_matrix(shuffle(l, l * s), w1.dtype) @ torch.block_diag(*w2) @ \
        perm_matrix(shuffle(r, k * q), w1.dtype) @ torch.block_diag(*w1)


def cayley(a):
    s = 0.5 * (a - a.transpose(-1, -2))
    eye = torch.eye(a.shape[-1], dtype=a.dtype).expand_as(s)
    return (eye + s) @ torch.linalg.inv(eye - s)


@pytest.mark.parametrize("case", GOLDEN)
def test_gs_orthogonal_reproduces_the_authors_golden_vectors(data_dir, case):
    t, meta = gsoft.read_safetensors(str(data_dir / "golden" / f"{case}.safetensors"))
    k, n = t["L"].shape[0], t["x"].shape[1]
    q = gsoft.GSOrthogonal(n, k, method=meta["method"])
    q.load_state_dict({"L": t["L"], "R": t["R"]})
    x = t["x"].clone().requires_grad_(True)
    y = q(x)
    assert (y - t["y"]).abs().max().item() < 1e-5
    assert (q.matrix() - t["Q"]).abs().max().item() < 1e-5
    (y * t["upstream"]).sum().backward()
    for name, grad in (("grad_L", q.L.grad), ("grad_R", q.R.grad), ("grad_x", x.grad)):
        assert (grad - t[name]).abs().max().item() < 1e-4 * max(1.0, t[name].abs().max().item()), name


def test_gs_orthogonal_matches_the_authors_module_contract():
    q = gsoft.GSOrthogonal(24, 4)
    assert list(q.state_dict()) == ["L", "R"]
    assert q.L.shape == q.R.shape == (4, 6, 6)
    assert torch.equal(q.L, torch.zeros(4, 6, 6))
    x = torch.randn(3, 5, 24)
    assert torch.allclose(q(x), x, atol=1e-6)  # identity at initialisation, any leading shape
    free = gsoft.GSOrthogonal(24, 4, orthogonal=False)
    assert torch.equal(free.L, torch.eye(6).repeat(4, 1, 1))
    with torch.no_grad():
        q.L.normal_()
        q.R.normal_()
    m = q.matrix()
    assert (m @ m.T - torch.eye(24)).abs().max().item() < 1e-5


def test_gs_multiply_is_the_dense_rectangular_product():
    for (k, q_, p), (l, s, r) in [((4, 4, 4), (4, 4, 4)), ((3, 4, 2), (2, 5, 6)), ((6, 2, 3), (4, 3, 3))]:
        w1 = torch.randn(k, q_, p, dtype=torch.float64)
        w2 = torch.randn(l, s, r, dtype=torch.float64)
        x = torch.randn(2, 3, k * p, dtype=torch.float64)
        y = gsoft.gs_multiply(x, w2, w1)  # blocks_L = w2 (applied second), blocks_R = w1
        assert y.shape == (2, 3, l * s)
        assert torch.allclose(y, x @ dense_butterfly(w1, w2).T, atol=1e-12)
        assert torch.allclose(y, gsoft.reference_butterfly_multiply(x, w1, w2), atol=1e-12)


def test_paper_layout_is_the_papers_formula():
    n, k = 12, 3
    b = n // k
    L, R = torch.randn(k, b, b, dtype=torch.float64), torch.randn(k, b, b, dtype=torch.float64)
    p = perm_matrix(shuffle(k, n), torch.float64)  # the paper's P = P_(r, n)
    dense = p.T @ torch.block_diag(*L) @ p @ torch.block_diag(*R)
    x = torch.randn(5, n, dtype=torch.float64)
    assert torch.allclose(gsoft.gs_multiply(x, L, R, layout="paper"), x @ dense.T, atol=1e-12)


def test_gradcheck_in_float64_against_autograd_of_the_kernel():
    w1 = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, b: gsoft.gs_multiply(x, b, a), (x, w1, w2))
    q = gsoft.GSOrthogonal(16, 4).double()
    with torch.no_grad():
        q.L.normal_()
        q.R.normal_()
    xq = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, L, R: gsoft.GSOrthogonal.forward(_with(q, L, R), x),
                                    (xq, q.L.detach().requires_grad_(), q.R.detach().requires_grad_()))


def test_gradients_match_the_dense_pure_pytorch_construction():
    n, k = 16, 4
    q = gsoft.GSOrthogonal(n, k).double()
    with torch.no_grad():
        q.L.normal_()
        q.R.normal_()
    x = torch.randn(7, n, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(7, n, dtype=torch.float64)
    (q(x) * gy).sum().backward()
    L = q.L.detach().clone().requires_grad_(True)
    R = q.R.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    b = n // k
    p = perm_matrix(shuffle(b, n), torch.float64)  # the released code's P = P_(b, n)
    dense = p.T @ torch.block_diag(*cayley(L)) @ p @ torch.block_diag(*cayley(R))
    (x2 @ dense.T * gy).sum().backward()
    for ours, ref in ((q.L.grad, L.grad), (q.R.grad, R.grad), (x.grad, x2.grad)):
        assert torch.allclose(ours, ref, atol=1e-10)


def test_chain_apply_and_transpose_and_errors():
    chain = gsoft.Chain.butterfly((3, 4, 2), (2, 5, 6))
    assert (chain.in_features, chain.out_features, chain.num_factors) == (6, 10, 2)
    blocks = [torch.randn(3, 4, 2), torch.randn(2, 5, 6)]
    x = torch.randn(4, 6)
    dense = chain.dense(blocks)
    assert torch.allclose(chain.apply(x, blocks), x @ dense.T, atol=1e-5)
    y = torch.randn(4, 10)
    assert torch.allclose(chain.apply_transpose(y, blocks), y @ dense, atol=1e-5)
    with pytest.raises(ValueError, match="must be divisible by the number of blocks"):
        gsoft.GSOrthogonal(10, 4)
    with pytest.raises(ValueError, match="gives k\\*q = 12 features"):
        gsoft.gs_multiply(torch.randn(2, 6), torch.randn(5, 2, 2), torch.randn(3, 4, 2))
    with pytest.raises(ValueError, match="blocks_L must be a 3-D"):
        gsoft.gs_multiply(torch.randn(2, 6), torch.randn(5, 2), torch.randn(3, 4, 2))
    with pytest.raises(ValueError, match="official"):
        gsoft.gs_multiply(torch.randn(2, 16), torch.randn(4, 4, 4), torch.randn(4, 4, 4), layout="diagonal")


def _with(q, L, R):
    """A GSOrthogonal whose blocks are the given tensors (for gradcheck over them)."""
    clone = gsoft.GSOrthogonal(q.n, q.nblocks).double()
    del clone.L, clone.R
    clone.L, clone.R = L, R
    return clone
