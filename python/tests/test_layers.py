"""Adapted layers and injection from Python: the authors' golden layers, merge/unmerge, every
method through one table, Conv2d, training, and errors as ValueError."""
import pytest
import torch
from torch import nn

import gsoft

METHODS = [
    {"method": "gsoft", "block_size": 4},
    {"method": "double_gsoft", "nblocks": 4},
    {"method": "gsoft", "block_size": 4, "parametrization": "exp", "scale": False},
    {"method": "oft", "block_size": 4},
    {"method": "boft", "block_size": 4, "boft_n_butterfly_factor": 2},
    {"method": "lora", "r": 4, "lora_alpha": 8},
]


def ids(c):
    return "-".join(f"{v}" for v in c.values())


@pytest.mark.parametrize("case", ["gsoft_linear_0_32x32_k4", "double_linear_1_48x48_k6"])
def test_gsoft_layers_reproduce_the_authors_golden_layers(data_dir, case):
    t, _ = gsoft.read_safetensors(str(data_dir / "golden" / f"{case}.safetensors"))
    out_f, in_f = t["weight"].shape
    base = nn.Linear(in_f, out_f)
    base.load_state_dict({"weight": t["weight"], "bias": t["bias"]})
    k = t["in_L"].shape[0]
    double = "out_L" in t
    layer = gsoft.DoubleGSOFTLinear(base, nblocks=k) if double else gsoft.GSOFTLinear(base, nblocks=k)
    with torch.no_grad():
        layer.gsoft_L.copy_(t["in_L"])
        layer.gsoft_R.copy_(t["in_R"])
        layer.gsoft_s.copy_(t["scale"])
        if double:
            layer.gsoft_out_L.copy_(t["out_L"])
            layer.gsoft_out_R.copy_(t["out_R"])
    assert (layer(t["x"]) - t["y"]).abs().max().item() < 1e-5
    layer.merge()
    assert (layer.weight - t["merged_weight"]).abs().max().item() < 1e-5
    assert (layer(t["x"]) - t["y"]).abs().max().item() < 1e-5


@pytest.mark.parametrize("case", METHODS, ids=ids)
def test_every_method_is_identity_at_init_merges_and_unmerges(case):
    base = nn.Linear(16, 12)
    x = torch.randn(5, 16)
    before = base(x).detach()
    w0 = base.weight.detach().clone()
    layer = gsoft.AdaptedLinear(base, dict(case, init_weights=False) if case["method"] != "lora" else case)
    if case["method"] == "lora":
        with torch.no_grad():
            layer.lora_B.weight.normal_()
    fresh = gsoft.AdaptedLinear(nn.Linear(16, 12), case)  # default init: the identity
    assert torch.allclose(fresh(x), nn.functional.linear(x, fresh.weight, fresh.bias), atol=1e-6)
    adapted = layer(x).detach()
    assert (adapted - before).abs().max().item() > 1e-3
    layer.merge()
    assert layer.merged
    assert torch.allclose(layer(x), adapted, atol=1e-5)
    layer.unmerge()
    assert torch.allclose(layer.weight, w0, atol=1e-5)
    assert torch.allclose(layer(x), adapted, atol=1e-5)


@pytest.mark.parametrize("case", METHODS, ids=ids)
def test_only_adapter_parameters_are_trained_and_their_names_are_pefts(case):
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 12))
    report = gsoft.inject(model, dict(case, target_modules=["0"]))
    assert [m.name for m in report.adapted] == ["0"]
    assert "0" in str(report) and "adapter parameters" in str(report)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    prefix = gsoft._C.parameter_prefix(case["method"])
    assert trainable and all(n.startswith("0." + prefix) for n in trainable), trainable
    assert report.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    model(torch.randn(3, 16)).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    # The state_dict keeps the base keys, so a base checkpoint still loads after injection.
    assert {"0.weight", "0.bias", "2.weight", "2.bias"} <= set(model.state_dict())


def test_conv2d_adapter_equals_conv_with_the_merged_weight():
    conv = nn.Conv2d(3, 8, (3, 2), stride=(2, 1), padding=(1, 0))
    layer = gsoft.AdaptedConv2d(conv, {"method": "gsoft", "block_size": 3, "init_weights": False})
    x = torch.randn(2, 3, 9, 7)
    y = layer(x).detach()
    assert y.shape == conv(x).shape
    layer.merge()
    assert torch.allclose(nn.functional.conv2d(x, layer.weight, layer.bias, (2, 1), (1, 0)), y, atol=1e-5)
    with pytest.raises(ValueError, match="groups=2"):
        gsoft.AdaptedConv2d(nn.Conv2d(4, 4, 3, groups=2), {"method": "gsoft", "block_size": 3})


def test_a_small_sequential_trains_with_gsoft_linear_and_stays_orthogonal():
    torch.manual_seed(1)
    teacher = nn.Linear(32, 8)
    model = nn.Sequential(gsoft.GSOFTLinear(nn.Linear(32, 32), block_size=8), nn.Tanh(), nn.Linear(32, 8))
    params = [p for n, p in model.named_parameters() if "gsoft_" in n or n.startswith("2.")]
    opt = torch.optim.AdamW(params, lr=2e-2)
    x = torch.randn(256, 32)
    target = teacher(x).detach()
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    layer = model[0]
    assert layer.gsoft_L.grad is not None and layer.gsoft_L.abs().max().item() > 1e-3
    q_blocks = gsoft.orthogonal_blocks(layer.gsoft_L.detach())
    assert gsoft.orthogonality_error(q_blocks) < 1e-5
    # .double() converts the Parameters in place, and the C++ adapter computes with them.
    model.double()
    assert model(x.double()).dtype == torch.float64


def test_errors_are_value_errors_with_the_cpp_message():
    with pytest.raises(ValueError, match="no module matched the targets \\(query\\)"):
        gsoft.inject(nn.Sequential(nn.Linear(4, 4)), {"method": "gsoft", "block_size": 2, "target_modules": ["query"]})
    with pytest.raises(ValueError, match="target '1' is a ReLU"):
        gsoft.inject(nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
                     {"method": "gsoft", "block_size": 2, "target_modules": ["1"]})
    with pytest.raises(ValueError, match="divisible|divide"):
        gsoft.GSOFTLinear(nn.Linear(10, 4), block_size=4)
    with pytest.raises(ValueError, match="unknown method 'loraa'"):
        gsoft.AdapterConfig(method="loraa", target_modules=["q"])
    assert gsoft.AdapterConfig(method="gsoft", target_modules=["q"])["block_size"] == 8  # the authors' default
    with pytest.raises(ValueError, match="block_size"):
        gsoft.AdapterConfig(method="gsoft", block_size=4, nblocks=2, target_modules=["q"])
    with pytest.raises(ValueError, match="both 'block_size' and 'oft_block_size'"):
        gsoft.AdapterConfig(method="oft", block_size=4, oft_block_size=4, target_modules=["q"])
    with pytest.raises(ValueError, match="unknown peft_type"):
        gsoft.AdapterConfig({"peft_type": "IA3", "target_modules": ["q"]})
    layer = gsoft.GSOFTLinear(nn.Linear(8, 4), block_size=4)
    with pytest.raises(ValueError, match="expected shape \\[2, 4, 4\\], got \\[3\\]"):
        layer._adapter.set_parameter("gsoft_L", torch.zeros(3))
