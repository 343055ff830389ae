"""AdapterConfig: an adapter_config.json in PEFT's field names, validated by the C++ reader.

The C++ library is the one place that knows the fields, their defaults and their rules, so a
config is accepted here exactly when `gsoft` accepts the same file.
"""
import json

from . import _C

# method name (as the CLI's --method) -> the fields that select it
_METHODS = {
    "gsoft": {"peft_type": "GSOFT", "double_gsoft": False},
    "double_gsoft": {"peft_type": "GSOFT", "double_gsoft": True},
    "oft": {"peft_type": "OFT"},
    "boft": {"peft_type": "BOFT"},
    "lora": {"peft_type": "LORA"},
    "full": {"peft_type": "FULL"},
}

_ALIASES = {
    "OFT": {"block_size": "oft_block_size", "nblocks": "r"},
    "BOFT": {"block_size": "boft_block_size", "nblocks": "boft_block_num"},
}


class AdapterConfig:
    """adapter_config.json fields (PEFT's names), e.g.

        AdapterConfig(method="gsoft", block_size=8, target_modules=["query", "value"])
        AdapterConfig({"peft_type": "LORA", "r": 8, "target_modules": ["query"]})
        AdapterConfig.from_file("run/adapter/adapter_config.json")

    `method` (gsoft, double_gsoft, oft, boft, lora, full) is a shortcut for peft_type and
    double_gsoft. Unknown methods, missing block sizes and bad values raise ValueError.
    """

    def __init__(self, fields=None, **kwargs):
        if isinstance(fields, AdapterConfig):
            fields = fields.to_dict()
        merged = dict(fields or {})
        merged.update(kwargs)
        method = merged.pop("method", None)
        if method is not None:
            if method not in _METHODS:
                raise ValueError(f"unknown method '{method}'; expected one of: {', '.join(_METHODS)}")
            merged.update(_METHODS[method])
        if "peft_type" not in merged:
            raise ValueError("adapter config: expected 'method' or 'peft_type', found neither")
        # block_size / nblocks as on the command line, in PEFT's per-method spelling.
        for generic, specific in _ALIASES.get(merged["peft_type"], {}).items():
            if generic in merged:
                if specific in merged:
                    raise ValueError(f"adapter config: both '{generic}' and '{specific}' given; they are the same "
                                     f"field for peft_type {merged['peft_type']}")
                merged[specific] = merged.pop(generic)
        # The C++ reader fills in defaults and validates; its text is the canonical form.
        self._json = _C.normalize_config(json.dumps(merged))
        self._fields = json.loads(self._json)

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def to_dict(self):
        return dict(self._fields)

    def to_json(self):
        return self._json

    @property
    def method(self):
        t = self._fields["peft_type"]
        if t == "GSOFT":
            return "double_gsoft" if self._fields.get("double_gsoft") else "gsoft"
        return {"OFT": "oft", "BOFT": "boft", "LORA": "lora", "FULL": "full"}[t]

    def __getitem__(self, key):
        return self._fields[key]

    def get(self, key, default=None):
        return self._fields.get(key, default)

    def __eq__(self, other):
        return isinstance(other, AdapterConfig) and self._fields == other._fields

    def __repr__(self):
        return f"AdapterConfig({self._fields!r})"
