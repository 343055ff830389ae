"""torch.nn modules over the C++ core: GSOrthogonal and adapted Linear / Conv2d layers."""
import torch
import torch.nn.functional as F
from torch import nn

from . import _C
from .config import AdapterConfig


class GSOrthogonal(nn.Module):
    """An n x n GS orthogonal matrix Q = P_L L P R, a drop-in for the authors' module of this name.

    Same constructor, parameters `L` and `R` of shape (nblocks, n/nblocks, n/nblocks) initialised
    as theirs (zeros, so Q = I; identity blocks with orthogonal=False), state_dict keys `L`, `R`,
    and the same output: forward(x) = x @ Q.T over the last dimension. `method` is cayley or exp
    (S = (A - A^T)/2; Cayley (I + S)(I - S)^-1). The product runs on gsoft's fused kernel.
    `layout` "paper" selects the paper's permutation instead of the released code's.
    """

    def __init__(self, n, nblocks, orthogonal=True, method="cayley", layout="official"):
        super().__init__()
        if method not in ("cayley", "exp"):
            raise ValueError(f"GSOrthogonal: method must be 'cayley' or 'exp', got '{method}'")
        self.chain = _C.Chain.gs_orthogonal(n, nblocks, layout)  # checks n % nblocks
        self.n, self.nblocks, self.orthogonal, self.method, self.layout = n, nblocks, orthogonal, method, layout
        b = n // nblocks
        init = torch.zeros(nblocks, b, b) if orthogonal else torch.eye(b).repeat(nblocks, 1, 1)
        self.L = nn.Parameter(init.clone())
        self.R = nn.Parameter(init.clone())

    def blocks(self):
        """[R blocks, L blocks], after the orthogonal map: the chain's factors in order."""
        if not self.orthogonal:
            return [self.R, self.L]
        return [_C.orthogonal_blocks(self.R, self.method), _C.orthogonal_blocks(self.L, self.method)]

    def forward(self, x):
        return self.chain.apply(x, self.blocks())

    def matrix(self):
        """The dense Q (n x n); differentiable."""
        return self.chain.dense(self.blocks())

    def extra_repr(self):
        return f"n={self.n}, nblocks={self.nblocks}, orthogonal={self.orthogonal}, method={self.method}, " \
               f"layout={self.layout}"


class _Adapted(nn.Module):
    """What the adapted Linear and Conv2d share: the wrapped layer's own weight and bias (same
    Parameter objects, so state_dict keys are unchanged), the C++ adapter, and its tensors as
    nn.Parameters under PEFT's names (`gsoft_L`, `lora_A.weight`, ...)."""

    def _attach(self, base, config, name, in_features, out_features):
        config = AdapterConfig(config)
        if config.method == "full":
            raise ValueError("method 'full' trains the model itself and has no adapter layer")
        self.weight = base.weight
        self.bias = base.bias
        self.adapter_config = config
        self.adapter_name = name
        self._adapter = _C.make_linear_adapter(config.to_json(), in_features, out_features, name)
        self.merged = False
        self.adapter_enabled = True
        for key, value in self._adapter.named_parameters():
            p = nn.Parameter(value.detach().clone().to(base.weight.dtype))
            owner, _, leaf = key.rpartition(".")
            holder = self
            if owner:  # "lora_A.weight": a child module lora_A holding `weight`, as in PEFT
                if not hasattr(self, owner):
                    self.add_module(owner, nn.Module())
                holder = getattr(self, owner)
            holder.register_parameter(leaf, p)
            # The adapter now computes with (and autograd reaches) this very Parameter.
            self._adapter.set_parameter(key, p)

    def adapter_parameters(self):
        """[(PEFT name, Parameter)] in the adapter's order."""
        return [(key, self.get_parameter(key)) for key, _ in self._adapter.named_parameters()]

    @property
    def method(self):
        return self._adapter.method

    def _weight_matrix(self):
        return self.weight.view(self.weight.shape[0], -1)

    def merge(self, safe_merge=True):
        """Fold the adapter into the weight: the layer then computes the adapted output with the
        plain op. safe_merge refuses NaN/Inf results and leaves the weight as it was."""
        if self.merged:
            return
        with torch.no_grad():
            merged = self._adapter.merged_weight(self._weight_matrix())
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"merge: the {self.method} adapter of '{self.adapter_name}' produced NaN or Inf "
                                 "weights; the layer was left unmerged")
            self._weight_matrix().copy_(merged)
        self.merged = True

    def unmerge(self):
        if not self.merged:
            return
        with torch.no_grad():
            self._weight_matrix().copy_(self._adapter.unmerged_weight(self._weight_matrix()))
        self.merged = False

    def _active(self):
        if self.merged and not self.adapter_enabled:
            raise RuntimeError("the adapter is merged into the weight; unmerge before disabling it")
        return self.adapter_enabled and not self.merged

    def peft_shape(self, key, tensor):
        """The shape a tensor has in the adapter file (PEFT keeps conv LoRA as convolutions)."""
        return tuple(tensor.shape)


class AdaptedLinear(_Adapted):
    """A torch.nn.Linear with any gsoft adapter: y = adapter(x, W, b); merge() folds it into W."""

    def __init__(self, base: nn.Linear, config, name="layer"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"AdaptedLinear wraps a torch.nn.Linear, got {type(base).__name__}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self._attach(base, _with_target(config, name), name, base.in_features, base.out_features)

    def forward(self, x):
        if not self._active():
            return F.linear(x, self.weight, self.bias)
        return self._adapter.forward(x, self.weight, self.bias, self.training)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, adapter={self.method}" + \
            (" (merged)" if self.merged else "")


class GSOFTLinear(AdaptedLinear):
    """GSOFT on a torch.nn.Linear: y = s * (W Q x) + b with Q = P_L L P R (gsoft_L, gsoft_R raw
    Cayley blocks, zeros at init) and gsoft_s (ones at init). Give block_size or nblocks."""

    def __init__(self, base, block_size=None, nblocks=None, scale=True, parametrization="cayley",
                 layout="official", name="layer"):
        super().__init__(base, _rotation_config("gsoft", block_size, nblocks, scale, parametrization, layout), name)


class DoubleGSOFTLinear(AdaptedLinear):
    """Double GSOFT: y = s * (Q_out W Q_in x) + b; both sides get block_size (or nblocks) blocks."""

    def __init__(self, base, block_size=None, nblocks=None, scale=True, parametrization="cayley",
                 layout="official", name="layer"):
        super().__init__(base, _rotation_config("double_gsoft", block_size, nblocks, scale, parametrization, layout),
                         name)


class AdaptedConv2d(_Adapted):
    """A torch.nn.Conv2d with any gsoft adapter. The adapter sees the weight as a matrix
    out x (in * kh * kw) and each input patch as a row, so the adapted layer is exactly conv2d with
    the merged weight, and it trains as conv2d with the adapted weight. Grouped convolutions and
    padding other than explicit zeros are refused."""

    def __init__(self, base: nn.Conv2d, config, name="layer"):
        super().__init__()
        if not isinstance(base, nn.Conv2d):
            raise ValueError(f"AdaptedConv2d wraps a torch.nn.Conv2d, got {type(base).__name__}")
        if base.groups != 1:
            raise ValueError(f"AdaptedConv2d: adapters on grouped convolutions (groups={base.groups}) are not "
                             "supported; expected groups=1")
        if isinstance(base.padding, str) or base.padding_mode != "zeros":
            raise ValueError(f"AdaptedConv2d: adapters need explicit zero padding, got padding={base.padding!r}, "
                             f"padding_mode={base.padding_mode!r}")
        self.in_channels, self.out_channels = base.in_channels, base.out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = base.kernel_size, base.stride, base.padding, \
            base.dilation
        in_features = base.in_channels * base.kernel_size[0] * base.kernel_size[1]
        self._attach(base, _with_target(config, name), name, in_features, base.out_channels)

    def forward(self, x):
        if not self._active():
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"AdaptedConv2d: expected input (N, {self.in_channels}, H, W), got {list(x.shape)}")
        # Convolving with the adapted weight W' costs one pass over the weight's rows; running the
        # adapter on the patches costs one over k*k times the input (kept for LoRA's dropout).
        w = self._adapter.adapted_weight(self._weight_matrix(), self.training)
        if w is not None:
            return F.conv2d(x, w.reshape(self.weight.shape), self.bias, self.stride, self.padding, self.dilation)
        n = x.shape[0]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        h_out = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        w_out = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        patches = F.unfold(x, (kh, kw), dilation=self.dilation, padding=self.padding, stride=self.stride)
        y = self._adapter.forward(patches.transpose(1, 2), self._weight_matrix(), self.bias, self.training)
        return y.transpose(1, 2).reshape(n, self.out_channels, h_out, w_out)

    def peft_shape(self, key, tensor):
        kh, kw = self.kernel_size
        if key == "lora_A.weight":
            return (tensor.shape[0], self.in_channels, kh, kw)
        if key == "lora_B.weight":
            return (tensor.shape[0], tensor.shape[1], 1, 1)
        return tuple(tensor.shape)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, " \
               f"adapter={self.method}" + (" (merged)" if self.merged else "")


def _rotation_config(method, block_size, nblocks, scale, parametrization, layout):
    fields = {"method": method, "scale": scale, "parametrization": parametrization, "layout": layout}
    if block_size is not None:
        fields["block_size"] = block_size
    if nblocks is not None:
        fields["nblocks"] = nblocks
    return fields


def _with_target(config, name):
    """A config for one layer: target it by name when the config names no targets."""
    fields = config.to_dict() if isinstance(config, AdapterConfig) else dict(config)
    if not fields.get("target_modules") and fields.get("method", fields.get("peft_type")) not in ("full", "FULL"):
        fields["target_modules"] = [name]
    return fields
