"""python3 -m gsoft.memory: the activation bytes each adapted layer keeps for the backward, per
token, measured from the autograd graph and set beside the formula.

    PYTHONPATH=build/python python3 -m gsoft.memory [--rows 4096] [--features 768] [--json]

A Linear in -> out (frozen weight and bias, input requiring grad as inside a network) runs one
forward under torch.autograd.graph.saved_tensors_hooks, which sees every tensor any autograd node
saves, the C++ adapters' own nodes included. Tensors that share storage count once; parameters
(the frozen weight, the adapter's blocks) are not activations and are left out. What is left,
measured at two row counts, splits into what grows with the batch (bytes per token: what the
layer costs a training step per token) and what does not (per layer). Per token, the input x and
the layer's output are shown apart from what only the layer itself keeps ("own"): the network
keeps those two anyway wherever the neighbouring ops need them.
"""
import argparse
import json

import torch
import torch.nn as nn

import gsoft


def _cases(n):
    """(label, config or None, formula in floats per token, formula text) for in = out = n."""
    def cfg(method, **kw):
        c = {"method": method, "target_modules": ["layer"], "init_weights": False}
        c.update(kw)
        return c
    return [
        ("frozen", None, 0, "0"),
        ("gsoft_b8", cfg("gsoft", block_size=8), 2 * n, "in + out"),
        ("double_gsoft_b8", cfg("double_gsoft", block_size=8), 2 * n, "in + out"),
        ("oft_b16", cfg("oft", block_size=16), n, "in"),
        ("boft_b8_m2", cfg("boft", block_size=8, boft_n_butterfly_factor=2), 2 * n, "in + out"),
        ("boft_b8_m4", cfg("boft", block_size=8, boft_n_butterfly_factor=4), 2 * n, "in + out"),
        ("lora_r8", cfg("lora", r=8, lora_alpha=8), n + 8, "in + r"),
    ]


def saved_bytes(layer, x):
    """Bytes of distinct non-parameter storages that autograd saves during layer(x)."""
    params = {p.data_ptr() for p in layer.parameters()}
    seen = {}

    def pack(t):
        ptr = _storage_ptr(t)
        if t.data_ptr() not in params and ptr not in seen:
            seen[ptr] = t.untyped_storage().nbytes() if hasattr(t, "untyped_storage") else \
                t.storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    # The input is the previous layer's output and the output is what the next op reads: a network
    # keeps either whenever that op needs it for its own backward (a matmul, GELU), whichever
    # adapter sits here. Both are reported apart from what only this layer keeps.
    kept_input = seen.pop(_storage_ptr(x), 0)
    kept_output = seen.pop(_storage_ptr(y), 0)
    del y
    return sum(seen.values()), kept_input, kept_output


def _storage_ptr(t):
    return t.untyped_storage().data_ptr() if hasattr(t, "untyped_storage") else t.storage().data_ptr()


def measure(rows=4096, features=768):
    """One dict per method: bytes_per_token (what grows with the batch), of it the input's,
    per_layer_bytes (what does not), and the formula."""
    n = features
    torch.manual_seed(0)
    out = []
    for label, config, floats, text in _cases(n):
        base = nn.Linear(n, n)
        base.requires_grad_(False)
        layer = base if config is None else gsoft.AdaptedLinear(base, config, name="layer")
        # At rows and at 2 x rows: the difference is what grows with the batch (per token), the rest
        # is per layer (the orthogonal blocks the Cayley map made, its LU factors).
        measured = []
        for r in (rows, 2 * rows):
            x = torch.randn(r, n, requires_grad=True)
            measured.append(saved_bytes(layer, x))
        per_token = (sum(measured[1]) - sum(measured[0])) / rows
        fixed = sum(measured[0]) - per_token * rows
        out.append({"method": label, "bytes_per_token": per_token,
                    "input_bytes_per_token": (measured[1][1] - measured[0][1]) / rows,
                    "output_bytes_per_token": (measured[1][2] - measured[0][2]) / rows,
                    "own_bytes_per_token": (measured[1][0] - measured[0][0]) / rows,
                    "per_layer_bytes": fixed, "formula": text, "formula_bytes_per_token": 4 * floats})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--features", type=int, default=768)
    ap.add_argument("--json", action="store_true", help="one JSON object per method")
    a = ap.parse_args(argv)
    n, rows = a.features, a.rows
    out = measure(rows, n)
    if a.json:
        for r in out:
            print(json.dumps(r))
        return
    print(f"Linear {n} -> {n}, {rows} rows, float32: activation bytes saved for the backward per token")
    print(f"{'method':<18}{'measured':>10}{'input x':>9}{'output':>8}{'own':>7}{'formula':>14}{'= bytes':>9}"
          f"{'per layer':>11}")
    for r in out:
        print(f"{r['method']:<18}{r['bytes_per_token']:>10.0f}{r['input_bytes_per_token']:>9.0f}"
              f"{r['output_bytes_per_token']:>8.0f}{r['own_bytes_per_token']:>7.0f}{r['formula']:>14}"
              f"{r['formula_bytes_per_token']:>9}{r['per_layer_bytes']:>11.0f}")


if __name__ == "__main__":
    main()
