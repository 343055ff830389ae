"""Adapters on whole torch.nn models, in PEFT's directory layout shared with the `gsoft` CLI.

inject() swaps every targeted torch.nn.Linear / Conv2d for its adapted wrapper (the wrapper keeps
the layer's own weight and bias Parameters, so the model's state_dict keys do not change), freezes
everything else except modules_to_save, and returns the C++ InjectionReport. save_adapter() writes
adapter_config.json + adapter_model.safetensors with keys "base_model.model.<module>.<name>",
exactly what `gsoft train` writes; load_adapter() reads either.
"""
import json

import torch
from torch import nn

from . import _C
from .config import AdapterConfig
from .layers import AdaptedConv2d, AdaptedLinear, _Adapted

_PREFIX = _C.PEFT_KEY_PREFIX


def adapted_layers(model):
    """[(module name, adapted layer)] in tree order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _Adapted)]


def _matches_any(name, suffixes):
    return any(_C.name_matches_suffix(name, s) for s in suffixes)


def inject(model: nn.Module, config) -> _C.InjectionReport:
    """Adapt the modules of `model` that the config targets (PEFT's rule: the dotted name equals a
    target_modules entry or ends with "." + it; or target_modules as a string is a full-match
    regex), in place. Raises ValueError when nothing matches, when a target is not a Linear or
    Conv2d, or when the sizes do not fit the config."""
    config = AdapterConfig(config)
    if adapted_layers(model):
        raise ValueError("inject: the model already has adapters; load_adapter() loads new values into them")
    report = _C.InjectionReport()
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        text = config.to_json()
        targets = [(n, m) for n, m in model.named_modules() if n and _C.is_target(text, n)]
        adapted = []
        for name, module in targets:
            if isinstance(module, nn.Linear):
                layer = AdaptedLinear(module, config, name)
                in_f, out_f = module.in_features, module.out_features
            elif isinstance(module, nn.Conv2d):
                layer = AdaptedConv2d(module, config, name)
                in_f = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                out_f = module.out_channels
            else:
                raise ValueError(f"{config.method}: target '{name}' is a {type(module).__name__}; adapters attach "
                                 "to torch.nn.Linear and torch.nn.Conv2d layers")
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
            count = sum(p.numel() for _, p in layer.adapter_parameters())
            adapted.append(_C.AdaptedModule(name, in_f, out_f, count))
            report.adapter_params += count
        if not adapted:
            wanted = config["target_modules"]
            wanted = ", ".join(wanted) if isinstance(wanted, list) else "regex " + wanted
            linear = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
            raise ValueError(f"{config.method}: no module matched the targets ({wanted}); the model's Linear and "
                             f"Conv2d modules are: {', '.join(linear[:20])}{' ...' if len(linear) > 20 else ''}")
        report.adapted = adapted
    saved = []
    for name, module in model.named_modules():
        if name and _matches_any(name, config["modules_to_save"]):
            saved.append(name)
            for p in module.parameters():
                p.requires_grad_(True)
    report.saved_modules = saved
    report.total_params = sum(p.numel() for p in model.parameters())
    report.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model._gsoft_config = config  # what save_adapter writes
    return report


def _model_config(model, config):
    if config is not None:
        return AdapterConfig(config)
    found = getattr(model, "_gsoft_config", None)
    if found is None:
        raise ValueError("save_adapter: the model was not adapted with gsoft.inject(); pass config=")
    return found


def save_adapter(model: nn.Module, directory, config=None):
    """Write the adapter directory (created if needed; each file atomically)."""
    config = _model_config(model, config)
    tensors = {}
    for name, layer in adapted_layers(model):
        for key, p in layer.adapter_parameters():
            tensors[f"{_PREFIX}{name}.{key}"] = p.detach().float().reshape(layer.peft_shape(key, p)).contiguous()
    adapter_keys = {f"{name}.{key}" for name, layer in adapted_layers(model) for key, _ in layer.adapter_parameters()}
    if config.method == "full":
        for name, p in model.named_parameters():
            tensors[_PREFIX + name] = p.detach().contiguous()
    for mname, module in model.named_modules():
        if mname and _matches_any(mname, config["modules_to_save"]):
            for pname, p in module.named_parameters():
                if f"{mname}.{pname}" not in adapter_keys:
                    tensors[f"{_PREFIX}{mname}.{pname}"] = p.detach().contiguous()
    if not tensors:
        raise ValueError("save_adapter: the model holds no adapter and no modules_to_save tensors")
    _C.write_adapter(str(directory), tensors, config.to_json())


def load_adapter(model: nn.Module, directory):
    """Adapt `model` as the directory's config says (unless it already is) and load the tensors.
    Every shape is checked; a tensor for a module the model lacks is an error naming it.
    Returns the InjectionReport (None when the model was already adapted)."""
    config_text, tensors = _C.read_adapter(str(directory))
    config = AdapterConfig(json.loads(config_text))
    report = None
    layers = dict(adapted_layers(model))
    if not layers:
        report = inject(model, config)
        layers = dict(adapted_layers(model))
    params = dict(model.named_parameters())
    origin = f"{directory}/adapter_model.safetensors"
    loaded = set()
    for key, value in tensors.items():
        rest = key[len(_PREFIX):]
        layer_name, layer = _owning_layer(rest, layers)
        if layer is not None:
            local = rest[len(layer_name) + 1:]
            try:
                target = layer.get_parameter(local)
            except AttributeError:
                target = None
            if target is not None and local in dict(layer.adapter_parameters()):
                _copy_checked(target, value, key, origin, layer.peft_shape(local, target))
                loaded.add(rest)
                continue
        if rest in params:
            _copy_checked(params[rest], value, key, origin, tuple(params[rest].shape))
            loaded.add(rest)
            continue
        raise ValueError(f"{origin}: tensor '{key}' names '{rest}', which the model does not have")
    for name, layer in layers.items():
        for local, _ in layer.adapter_parameters():
            if f"{name}.{local}" not in loaded:
                raise ValueError(f"{origin}: no tensor '{_PREFIX}{name}.{local}' for the adapted module '{name}'")
    model._gsoft_config = config
    return report


def _owning_layer(rest, layers):
    best = (None, None)
    for name, layer in layers.items():
        if rest.startswith(name + ".") and (best[0] is None or len(name) > len(best[0])):
            best = (name, layer)
    return best


def _copy_checked(target, value, key, origin, file_shape):
    if tuple(value.shape) != tuple(file_shape):
        raise ValueError(f"{origin}: tensor '{key}' has shape {list(value.shape)}, expected {list(file_shape)}")
    with torch.no_grad():
        target.copy_(value.reshape(target.shape))


def merge_adapters(model: nn.Module, safe_merge=True):
    """Fold every adapter into its layer's weight (unmerge_adapters takes them out again)."""
    for _, layer in adapted_layers(model):
        layer.merge(safe_merge)


def unmerge_adapters(model: nn.Module):
    for _, layer in adapted_layers(model):
        layer.unmerge()


def merge(base, adapter_dir, out):
    """`gsoft merge` on files: base checkpoint (file or directory) + adapter -> out. Returns what
    was merged: {"merged_modules": [...], "saved_modules_tensors": [...], "copied_tensors": n}."""
    return _C.merge(str(base), str(adapter_dir), str(out))
