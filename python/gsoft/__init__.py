"""gsoft from PyTorch: GS orthogonal matrices and orthogonal fine-tuning over gsoft's C++ core.

The same library as the `gsoft` command-line tool: the fused GS kernels with their hand-written
backward, the orthogonal block maps, every adapter method (GSOFT, Double GSOFT, OFT, BOFT, LoRA)
and the PEFT adapter directory format, so an adapter moves between Python and `gsoft` unchanged.

    import torch, gsoft
    q = gsoft.GSOrthogonal(768, 96)                     # drop-in for the authors' GSOrthogonal
    layer = gsoft.GSOFTLinear(torch.nn.Linear(768, 768), block_size=8)
    report = gsoft.inject(model, {"peft_type": "GSOFT", "block_size": 8,
                                  "target_modules": ["query", "value"]})
    gsoft.save_adapter(model, "run/adapter")           # loads with `gsoft merge`, `gsoft eval`

Bad shapes and configs raise ValueError with the C++ message.
"""
import torch  # noqa: F401  (loads libtorch before the extension that links it)

from . import _C
from ._C import Chain, InjectionReport, gs_multiply, keep_freed_memory, orthogonal_blocks, orthogonality_error, \
    read_safetensors, reference_butterfly_multiply, write_safetensors
from .config import AdapterConfig
from .layers import AdaptedConv2d, AdaptedLinear, DoubleGSOFTLinear, GSOFTLinear, GSOrthogonal
from .peft import adapted_layers, inject, load_adapter, merge, merge_adapters, save_adapter, unmerge_adapters

__version__ = _C.__version__

__all__ = [
    "AdaptedConv2d", "AdaptedLinear", "AdapterConfig", "Chain", "DoubleGSOFTLinear", "GSOFTLinear", "GSOrthogonal",
    "InjectionReport", "adapted_layers", "gs_multiply", "inject", "keep_freed_memory", "load_adapter", "merge",
    "merge_adapters", "orthogonal_blocks", "orthogonality_error", "read_safetensors", "reference_butterfly_multiply",
    "save_adapter", "unmerge_adapters", "write_safetensors",
]
