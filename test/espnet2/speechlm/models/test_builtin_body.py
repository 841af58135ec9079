import pytest
import torch

from espnet2.speechlm.models import decode_weights
from espnet2.speechlm.models.bodies import BODIES
from espnet2.speechlm.models.bodies.builtin import BuiltinBodyConfig


def _body(**kw):
    torch.manual_seed(0)
    cfg = BuiltinBodyConfig(**{**dict(d_model=32, n_layer=2, n_head=4, n_kv_head=2, d_ff=64, max_len=64), **kw})
    return BODIES.get("builtin")(cfg).eval()


def test_llama_parameter_names():
    names = set(dict(_body().named_parameters()))
    for n in ["layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight",
              "layers.0.self_attn.v_proj.weight", "layers.0.self_attn.o_proj.weight",
              "layers.1.mlp.gate_proj.weight", "layers.1.mlp.up_proj.weight", "layers.1.mlp.down_proj.weight",
              "layers.1.input_layernorm.weight", "layers.1.post_attention_layernorm.weight", "norm.weight"]:
        assert n in names
    assert _body().layers[0].self_attn.k_proj.weight.shape == (16, 32)  # 2 kv heads x 8


def test_incremental_equals_full():
    body = _body()
    x = torch.randn(2, 10, 32)
    full = body(x)
    cache = body.new_cache(2, 16)
    parts = [body(x[:, :4], cache=cache)] + [body(x[:, t: t + 1], cache=cache) for t in range(4, 8)]
    parts.append(body(x[:, 8:], cache=cache))  # a multi-row chunk after the cache
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_left_padding_matches_unpadded():
    body = _body()
    x = torch.randn(1, 6, 32)
    alone = body(x)
    padded = torch.cat([torch.randn(1, 3, 32), x], dim=1)  # 3 junk pad rows on the left
    valid = torch.tensor([[False] * 3 + [True] * 6])
    pos = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4, 5]])
    out = body(padded, pos=pos, key_valid=valid)
    assert torch.allclose(out[:, 3:], alone, atol=1e-5)
    cache = body.new_cache(1, 12)  # and the same through the cache, step by step
    body(padded[:, :5], pos=pos[:, :5], key_valid=valid[:, :5], cache=cache)
    step = [body(padded[:, t: t + 1], pos=pos[:, t: t + 1], cache=cache) for t in range(5, 9)]
    assert torch.allclose(torch.cat(step, 1), alone[:, 2:], atol=1e-5)


def test_training_backward():
    body = _body(dropout=0.1).train()
    body(torch.randn(2, 5, 32)).pow(2).mean().backward()
    assert body.layers[0].self_attn.q_proj.weight.grad is not None


def test_bidirectional_mode():
    """causal=False: early outputs depend on later inputs; right padding masked by key_valid."""
    body = _body(causal=False)
    x = torch.randn(2, 7, 32)
    out = body(x)
    later = x.clone()
    later[:, -1] += 1.0
    assert not torch.allclose(body(later)[:, 0], out[:, 0])  # sees the future
    one, one_causal = _body(n_layer=1, causal=False), _body(n_layer=1)  # same weights, only the mask differs
    assert torch.allclose(one(x)[:, -1], one_causal(x)[:, -1], atol=1e-5)  # last query: all keys either way
    assert not torch.allclose(one(x)[:, 0], one_causal(x)[:, 0])
    padded = torch.cat([x[:1, :4], torch.randn(1, 3, 32)], dim=1)  # example 0 cut to 4 frames + junk
    valid = torch.tensor([[True] * 4 + [False] * 3])
    assert torch.allclose(body(padded, key_valid=valid)[:, :4], body(x[:1, :4]), atol=1e-5)
    try:
        body.new_cache(1, 8)
    except ValueError:
        pass
    else:
        raise AssertionError("a bidirectional body must refuse a KV cache")


def test_inference_mode_fused_projections_match_modules():
    """Decoding fuses q/k/v and gate/up into one matmul each; outputs must not change, and a
    weight update (training between two decodes) must be seen by the next decode."""
    body = _body()
    x = torch.randn(2, 6, 32)
    with torch.no_grad():  # per-module path
        ref = body(x)
    with torch.inference_mode():  # fused path
        fused = body(x)
    assert torch.allclose(fused, ref, atol=1e-6)
    with torch.no_grad():
        body.layers[0].self_attn.k_proj.weight.mul_(2.0)
        body.layers[1].mlp.up_proj.weight.add_(0.1)
        ref2 = body(x)
    with torch.inference_mode():
        fused2 = body(x)
    assert not torch.allclose(ref2, ref, atol=1e-3)
    assert torch.allclose(fused2, ref2, atol=1e-6)


def test_cache_longer_than_rope_table_is_refused():
    with pytest.raises(ValueError, match="max_len 8"):
        _body(max_len=8).new_cache(1, 9)


def test_cache_forgets_padding_when_padded_rows_leave():
    """Once the only left-padded row is dropped, steps run unmasked and still match."""
    body = _body()
    x = torch.randn(2, 6, 32)
    valid = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    pos = torch.tensor([[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]])
    with torch.inference_mode():
        cache = body.new_cache(2, 10)
        body(x, pos=pos, key_valid=valid, cache=cache)
        assert cache.padded
        cache.select(torch.tensor([1]))
        assert not cache.padded
        step = body(x[1:, :1], pos=torch.tensor([[6]]), cache=cache)
        full = body(torch.cat([x[1:], x[1:, :1]], dim=1))[:, -1:]
    assert torch.allclose(step, full, atol=1e-5)


def test_decode_weights_follow_a_deep_copy():
    """A deep copy (e.g. DPO's frozen reference) must decode with its own weights."""
    import copy

    body = _body()
    x = torch.randn(1, 4, 32)
    with torch.inference_mode():
        body(x)  # builds the decode copies of the original
    twin = copy.deepcopy(body)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(1.5)
        ref = twin(x)
    with torch.inference_mode():
        assert torch.allclose(twin(x), ref, atol=1e-5)


def test_frozen_weights_checks_copies_once_per_block():
    """Inside frozen_weights() (one generate call) the decode copies are not re-checked;
    the next block sees a weight that changed in between."""
    from espnet2.speechlm.models.decode_weights import frozen_weights

    body = _body()
    x = torch.randn(1, 4, 32)
    with frozen_weights():
        with torch.inference_mode():
            before = body(x)
        with torch.no_grad():
            body.layers[0].mlp.down_proj.weight.mul_(3.0)
        with torch.inference_mode():
            assert torch.equal(body(x), before)  # promised frozen: the copy is not re-checked
    with torch.no_grad():
        ref = body(x)
    with torch.inference_mode(), frozen_weights():
        after = body(x)
    assert not torch.allclose(after, before, atol=1e-3)
    assert torch.allclose(after, ref, atol=1e-6)


@pytest.mark.skipif(not decode_weights.onednn_available(), reason="this torch build has no oneDNN")
def test_onednn_and_mkl_decode_layouts_agree(monkeypatch):
    """Several rows decode through oneDNN's packed weights, one row through MKL's [in, out]
    copy; both must give the module path's numbers, also when rows change in between."""
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        ref, ref1 = _body()(x), _body()(x[:1, :1])
    for flag in (True, False):
        monkeypatch.setattr(decode_weights, "use_onednn", flag)
        body = _body()  # same weights, no decode copies yet
        with torch.inference_mode():
            many, one = body(x), body(x[:1, :1])  # 10 rows, then 1 row
        assert torch.allclose(many, ref, atol=1e-5) and torch.allclose(one, ref1, atol=1e-5)
        qkv = body.layers[0].self_attn._qkv
        assert (qkv.packed is not None) == flag and qkv.t is not None  # only the layouts used are built


def test_decoded_model_still_pickles_and_deep_copies():
    """oneDNN's packed copies are opaque tensors: they must not travel with the model."""
    import copy
    import pickle

    body = _body()
    with torch.inference_mode():
        out = body(torch.randn(4, 3, 32))
    twin = pickle.loads(pickle.dumps(body))
    copy.deepcopy(body)
    with torch.inference_mode():
        assert torch.allclose(twin(torch.zeros(4, 3, 32)), body(torch.zeros(4, 3, 32)), atol=1e-6)
    assert out.shape == (4, 3, 32)


def test_onednn_packing_failure_falls_back_to_mkl(monkeypatch):
    """A build or CPU where oneDNN cannot pack a weight decodes through MKL, same numbers."""
    def refuse(*args, **kwargs):
        raise RuntimeError("no oneDNN kernel for this CPU")

    monkeypatch.setattr(decode_weights, "use_onednn", True)
    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", refuse, raising=False)
    body = _body()
    x = torch.randn(2, 3, 32)
    with torch.no_grad():
        ref = body(x)
    with torch.inference_mode():
        out = body(x)
    assert torch.allclose(out, ref, atol=1e-5)
    assert decode_weights.use_onednn is False


def test_frozen_weights_block_is_not_shared_with_other_threads():
    """A thread outside any block checks its copies even while another thread is inside one."""
    import threading

    from espnet2.speechlm.models.decode_weights import frozen_weights

    body = _body()
    x = torch.randn(2, 3, 32)
    seen = {}

    def other_thread():
        with torch.no_grad():
            seen["ref"] = body(x)
        with torch.inference_mode():
            seen["out"] = body(x)

    with frozen_weights():
        with torch.inference_mode():
            body(x)  # copies checked in this block
        with torch.no_grad():
            body.layers[1].self_attn.o_proj.weight.mul_(2.0)
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert torch.allclose(seen["out"], seen["ref"], atol=1e-5)
