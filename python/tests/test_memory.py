"""gsoft.memory: the activation bytes per token that autograd keeps for each adapted layer, as
the saved-tensor hooks see them (C++ nodes included), against each method's formula."""
from gsoft import memory


def test_saved_bytes_per_token_match_the_formulas():
    rows = {r["method"]: r for r in memory.measure(rows=64, features=64)}
    assert set(rows) == {"frozen", "gsoft_b8", "double_gsoft_b8", "oft_b16", "boft_b8_m2", "boft_b8_m4", "lora_r8"}
    for name, r in rows.items():
        assert r["bytes_per_token"] == r["formula_bytes_per_token"], name
    # The input is kept by every adapter (not by the frozen layer, whose backward needs only W).
    assert rows["frozen"]["input_bytes_per_token"] == 0
    assert rows["lora_r8"]["input_bytes_per_token"] == 4 * 64
    # GSOFT's scale keeps the layer's own output (what attention's matmuls and GELU keep anyway),
    # not a tensor of its own, and Double GSOFT recovers Q_out's input from that output too; LoRA
    # keeps its rank-r intermediate.
    for name in ("gsoft_b8", "double_gsoft_b8"):
        assert rows[name]["output_bytes_per_token"] == 4 * 64, name
        assert rows[name]["own_bytes_per_token"] == 0, name
    assert rows["lora_r8"]["own_bytes_per_token"] == 4 * 8
