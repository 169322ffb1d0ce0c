import pytest

from search_spaces import ArchConfig
from search_spaces.cost import cache_bytes, decode_flops_per_token, param_counts, train_flops_per_token
from search_spaces.presets import preset

T4K, T128K = 4096, 131072


def test_a_transformer_costs_about_six_flops_per_parameter_and_token_plus_attention():
    cfg = preset("transformer++")
    n = param_counts(cfg).total
    per_token = train_flops_per_token(cfg, 2048)
    # the 6N rule of thumb (N without the input embedding, a lookup), plus attention's 6·layers·d·T/2
    attention = 3 * 32 * 4 * 4096 * (2048 + 1) / 2
    assert per_token == pytest.approx(6 * (n - 32000 * 4096) + attention, rel=0.001)


def test_decode_flops_grow_with_context_only_for_attention():
    ssm = ArchConfig(pattern="M-" * 4, d_model=256)
    attn = ArchConfig(pattern="*-" * 4, d_model=256)
    assert decode_flops_per_token(ssm, T4K) == decode_flops_per_token(ssm, T128K)
    grow = decode_flops_per_token(attn, T128K) - decode_flops_per_token(attn, T4K)
    assert grow == 4 * 4 * 256 * (T128K - T4K)  # 4 layers × 4·heads·head_dim per cached key
    assert train_flops_per_token(attn, 1024) == pytest.approx(
        3 * (decode_flops_per_token(attn, 0) + 4 * 4 * 256 * (1025 / 2 - 1)))


def test_moe_flops_count_active_experts_only():
    dense = ArchConfig(pattern="-", d_model=64, mlp={"ratio": 2.0})
    moe = ArchConfig(pattern="E", d_model=64, moe={"experts": 8, "top_k": 1, "ratio": 2.0})
    router = 2 * 64 * 8
    assert decode_flops_per_token(moe, 1) == decode_flops_per_token(dense, 1) + router
    assert param_counts(moe).total > param_counts(dense).total * 5


def test_memory_formulas():
    cfg = ArchConfig(pattern="*Mm X".replace(" ", ""), d_model=64,
                     attention={"heads": 4, "kv_heads": 2},
                     mamba2={"d_state": 16, "head_dim": 16, "n_groups": 2, "d_conv": 4},
                     mamba1={"d_state": 8, "d_conv": 3}, mlstm={"heads": 2})
    kv = 2 * 2 * 16 * T4K * 2  # K and V · kv heads · head dim · tokens · bf16
    m2 = 8 * 16 * 16 * 4 + 3 * (128 + 2 * 2 * 16) * 2  # heads·P·N fp32 + conv state bf16
    m1 = 128 * 8 * 4 + 2 * 128 * 2
    x = 2 * (16 * 32 + 16 + 1) * 4  # C, n, m per head
    assert cache_bytes(cfg, T4K).kv == kv
    assert cache_bytes(cfg, T4K).state == m2 + m1 + x
