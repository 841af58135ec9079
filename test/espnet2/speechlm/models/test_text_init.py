"""A pretrained text LLM under the joint vocabulary: its logits, cache and greedy output are kept."""

import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")

from espnet2.speechlm.inference import ModalityTable, SearchConfig  # noqa: E402
from espnet2.speechlm.models import build_speechlm, load_pretrained, save_pretrained, vocab_build_args  # noqa: E402
from espnet2.speechlm.vocab import PAD, JointVocabulary  # noqa: E402

N_TEXT = 96  # the LLM's vocabulary = our text range
LLAMA = dict(vocab_size=N_TEXT, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)


def _vocab() -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("textlm")
    v.add_tokenizer("text", "hf_text", N_TEXT, 1)
    v.add_tokenizer("codec", "y", 16, 4)  # a multi-stream range too: nq = 4
    return v


def _llm(tmp_path, tied: bool, cls=transformers.LlamaForCausalLM, **conf):
    torch.manual_seed(0)
    lm = cls(cls.config_class(**{**LLAMA, **conf, "tie_word_embeddings": tied})).eval()
    if not tied:
        assert lm.lm_head.weight.data_ptr() != lm.model.embed_tokens.weight.data_ptr()
    lm.save_pretrained(tmp_path / "llm")
    return lm


def _ours(tmp_path, vocab, restrict: bool, arch: str = "delay"):
    """Build from the LLM folder, save, delete the LLM folder, load back: weights must come from our checkpoint."""
    model = build_speechlm(arch, "hf", {"model": str(tmp_path / "llm")}, vocab.size, vocab.max_streams,
                           **vocab_build_args(vocab, "text", restrict_heads=restrict))
    save_pretrained(model, tmp_path / "ours")
    shutil.rmtree(tmp_path / "llm")
    return model, load_pretrained(tmp_path / "ours").eval()


def _rows(vocab, ids: torch.Tensor) -> torch.Tensor:
    """LLM ids [B, T] -> our rows [B, T, nq] (text in stream 0, PAD elsewhere)."""
    rows = torch.full((*ids.shape, vocab.max_streams), PAD)
    rows[..., 0] = ids + vocab.range("text").offset
    return rows


def _text_cols(model, vocab) -> torch.Tensor:
    off = vocab.range("text").offset
    return model.to_head_index(0, torch.arange(off, off + N_TEXT))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("restrict", [True, False])
def test_logits_and_cache_match_the_llm(tmp_path, tied, restrict):
    vocab = _vocab()
    lm = _llm(tmp_path, tied)
    built, model = _ours(tmp_path, vocab, restrict)
    assert model.build_config["text_init"] == {"offset": vocab.range("text").offset, "n_tokens": N_TEXT}
    assert "embed_tokens" not in str(list(dict(model.named_parameters())))  # the LLM table lives in ours
    ids = torch.randint(0, N_TEXT, (2, 12), generator=torch.Generator().manual_seed(1))
    cols = _text_cols(model, vocab)
    with torch.no_grad():
        ref = lm(input_ids=ids).logits  # [2, 12, N]
        full = model.head_logits(model.body(model.embed_rows(_rows(vocab, ids))), 0)[..., cols]
        assert torch.allclose(full, ref, atol=1e-5)
        # KV-cached: a 5-token prompt, then one token per step, against HF's own cached steps
        out = lm(input_ids=ids[:, :5], use_cache=True)
        past, cache = out.past_key_values, model.new_cache(2, 16)
        frame = model.next_frame(_rows(vocab, ids[:, :5]), None, None, cache)
        assert torch.allclose(frame.stream_logits(0, None)[:, cols], out.logits[:, -1], atol=1e-5)
        for t in range(5, 12):
            step = lm(input_ids=ids[:, t: t + 1], past_key_values=past, use_cache=True)
            past = step.past_key_values
            frame = model.next_frame(_rows(vocab, ids[:, t: t + 1]), None, None, cache)
            assert torch.allclose(frame.stream_logits(0, None)[:, cols], step.logits[:, -1], atol=1e-5)
            assert torch.allclose(step.logits[:, -1], ref[:, t], atol=1e-5)
    if restrict:  # restricted heads: head 0 is narrower than the joint vocabulary
        assert model.heads[0].weight.shape[0] < vocab.size and model.heads[1].weight.shape[0] == 1 + 16


@pytest.mark.parametrize("arch", ["delay", "parallel"])
def test_greedy_text_matches_hf_generate(tmp_path, arch):
    vocab = _vocab()
    lm = _llm(tmp_path, tied=False)
    _, model = _ours(tmp_path, vocab, restrict=True, arch=arch)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, N_TEXT, (n,), generator=g) for n in (7, 4)]  # ragged batch
    new = 10
    lengths = torch.tensor([len(p) for p in prompts])
    prefix = torch.full((2, int(lengths.max()), vocab.max_streams), PAD)
    for b, p in enumerate(prompts):
        prefix[b, : len(p)] = _rows(vocab, p[None])[0]
    table = ModalityTable.from_vocab(vocab).continue_only(vocab, "text")  # no indicator in the prompt
    cfg = SearchConfig(method="greedy", min_len_ratio=1e6, max_len_ratio=1e6, max_new_tokens=new)
    cached = model.generate(prefix, lengths, cfg, table)
    uncached = model.generate(prefix, lengths, cfg, table, use_cache=False)
    lm.generation_config.eos_token_id = None  # run exactly `new` steps, like ours
    for b, p in enumerate(prompts):
        hf = lm.generate(p[None], attention_mask=torch.ones(1, len(p), dtype=torch.long), max_new_tokens=new,
                         do_sample=False, pad_token_id=0)[0, len(p):]
        assert hf.shape[0] == new
        ours = cached[b][0][:, 0] - vocab.range("text").offset
        assert torch.equal(ours, hf)
        assert torch.equal(uncached[b][0], cached[b][0])


def test_rebuilding_from_our_checkpoint_ignores_the_llm_folder(tmp_path):
    """build -> save -> load: the grafted rows survive; loading never reads the LLM folder (deleted)."""
    vocab = _vocab()
    _llm(tmp_path, tied=True)
    built, model = _ours(tmp_path, vocab, restrict=True)
    for name, p in built.state_dict().items():
        assert torch.equal(p, model.state_dict()[name]), name
    assert model.build_config["body_conf"]["hf_config"]["vocab_size"] == N_TEXT


def test_old_hf_checkpoint_with_embed_tokens_still_loads(tmp_path):
    """Checkpoints written before the body dropped the LLM's unused input table keep loading."""
    from safetensors.torch import load_file, save_file

    vocab = _vocab()
    conf = dict(model_type="llama", overrides={k: v for k, v in LLAMA.items()})
    model = build_speechlm("delay", "hf", conf, vocab.size, vocab.max_streams).eval()
    save_pretrained(model, tmp_path / "m")
    state = load_file(tmp_path / "m" / "model.safetensors")
    state["body.model.embed_tokens.weight"] = torch.randn(N_TEXT, 32)
    save_file(state, tmp_path / "m" / "model.safetensors")
    loaded = load_pretrained(tmp_path / "m").eval()
    x = torch.randn(1, 4, 32)
    assert torch.allclose(loaded.body(x), model.body(x), atol=1e-6)


def test_text_init_errors(tmp_path):
    vocab = _vocab()
    with pytest.raises(ValueError, match="3 streams|4 streams"):
        vocab_build_args(vocab, "codec")
    with pytest.raises(ValueError, match="pretrained LLM"):
        build_speechlm("delay", "builtin", dict(d_model=32, n_layer=1, n_head=4, n_kv_head=2, d_ff=64), vocab.size,
                       vocab.max_streams, **vocab_build_args(vocab, "text"))
    with pytest.raises(ValueError, match="offset"):
        build_speechlm("delay", "builtin", dict(d_model=32, n_layer=1, n_head=4, n_kv_head=2, d_ff=64), vocab.size,
                       vocab.max_streams, text_init={"offset": 3})
    big = JointVocabulary()
    big.add_tokenizer("text", "hf_text", N_TEXT + 5, 1)  # more text tokens than the LLM has rows
    _llm(tmp_path, tied=True)
    with pytest.raises(ValueError, match="only 96"):
        build_speechlm("parallel", "hf", {"model": str(tmp_path / "llm")}, big.size, 1, **vocab_build_args(big, "text"))


def test_llm_with_scaled_logits_is_refused(tmp_path):
    """Cohere multiplies lm_head's output by logit_scale: copying rows would not reproduce it."""
    vocab = _vocab()
    _llm(tmp_path, tied=True, cls=transformers.CohereForCausalLM, logit_scale=0.25)
    with pytest.raises(NotImplementedError, match="after the output layer"):
        build_speechlm("delay", "hf", {"model": str(tmp_path / "llm")}, vocab.size, vocab.max_streams,
                       **vocab_build_args(vocab, "text"))
    # without text_init the same LLM is a fine body
    build_speechlm("delay", "hf", {"model": str(tmp_path / "llm")}, vocab.size, vocab.max_streams)
