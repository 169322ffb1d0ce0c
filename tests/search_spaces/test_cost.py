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


def test_memory_of_the_new_mixers():
    """A window's KV cache stops growing at the window; Gated DeltaNet keeps a [K, V] state per value head
    and its q/k/v convolution's inputs; a gated short convolution only its convolution's inputs."""
    local = ArchConfig(pattern="W*", d_model=64, local_attention={"heads": 4, "kv_heads": 2, "window": 1024},
                       attention={"heads": 4, "kv_heads": 2})
    per_token = 2 * 2 * 16 * 2  # K and V · kv heads · head dim · bf16
    assert cache_bytes(local, 512).kv == 2 * 512 * per_token
    assert cache_bytes(local, T4K).kv == (1024 + T4K) * per_token
    assert cache_bytes(local, T128K).kv - cache_bytes(local, T4K).kv == (T128K - T4K) * per_token  # the global only

    delta = ArchConfig(pattern="D", d_model=64, deltanet={"heads": 2, "v_heads": 4, "head_dim": 16,
                                                          "v_head_dim": 24, "d_conv": 4})
    conv = 3 * (2 * 2 * 16 + 4 * 24) * 2  # d_conv − 1 inputs of q, k and v, bf16
    assert cache_bytes(delta, T4K) == cache_bytes(delta, T128K)
    assert cache_bytes(delta, T4K).state == 4 * 16 * 24 * 4 + conv  # v_heads · K · V fp32
    assert cache_bytes(ArchConfig(pattern="C", d_model=64, shortconv={"d_conv": 3}), T4K).state == 2 * 64 * 2


def test_decode_flops_of_a_window_stop_growing_at_the_window():
    local = ArchConfig(pattern="W-", d_model=64, local_attention={"heads": 4, "window": 1024})
    assert decode_flops_per_token(local, T4K) == decode_flops_per_token(local, T128K)
    assert decode_flops_per_token(local, T4K) - decode_flops_per_token(local, 0) == 4 * 64 * 1023
    # training: a query sees min(t, window) keys, on average over the sequence
    keys = (1024 * 1025 / 2 + (T4K - 1024) * 1024) / T4K
    glob = ArchConfig(pattern="*-", d_model=64, attention={"heads": 4})
    assert train_flops_per_token(local, T4K) - train_flops_per_token(glob, T4K) == pytest.approx(
        3 * 4 * 64 * (keys - (T4K + 1) / 2))


def test_the_delta_rule_costs_six_flops_per_state_element():
    cfg = ArchConfig(pattern="D", d_model=64, deltanet={"heads": 2, "d_conv": 4})
    no_state = 2 * (2 * 64 + 64) * 4  # the convolution
    matmuls = decode_flops_per_token(cfg, 0) - 6 * 2 * 32 * 32 - no_state
    assert matmuls == 2 * (param_counts(cfg).total - 64 - 64 - 192 * 4 - 2 - 2 - 32)  # minus norms and non-matmul
