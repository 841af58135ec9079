"""DPO pieces in process (no DeepSpeed): sequence log-probs, the loss, the wrapper, weights, pair data."""

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from toy import NQ, VOCAB, ToyDataset, ToyPairDataset, collate  # noqa: E402

from espnet2.speechlm.data.pairs import (  # noqa: E402
    PreferenceDataset, collate_pairs, pair_rows, split_pair_template,
)
from espnet2.speechlm.models import build_speechlm, save_pretrained  # noqa: E402
from espnet2.speechlm.tasks.template import TaskTemplate  # noqa: E402
from espnet2.speechlm.train.checkpoint import load_weights, save_safetensors  # noqa: E402
from espnet2.speechlm.train.dpo import DPOModel, build_reference, dpo_loss, scoring_mode, sequence_logprob  # noqa: E402

BODY = dict(d_model=32, n_layer=1, n_head=2, n_kv_head=2, d_ff=64, max_len=128, dropout=0.1)


def build(arch="delay", seed=0, **conf):
    torch.manual_seed(seed)
    return build_speechlm(arch, "builtin", BODY, VOCAB, NQ, **conf)


def toy_batch(n=3):
    ds = ToyDataset(n, 0)
    return collate([ds[i] for i in range(n)])


@pytest.mark.parametrize("arch, conf", [("delay", {}), ("parallel", {}), ("valle", {}),
                                        ("multiscale", {"local_heads": 2})])
def test_sequence_logprob_is_each_examples_weighted_log_likelihood(arch, conf):
    b = toy_batch()
    model = build(arch, **conf)
    with scoring_mode(model):  # valle "sample" scores every stream in this mode; dropout is off
        logp = sequence_logprob(model, b["seqs"], b["weights"], b["lengths"])
        assert model.training is False
        for i in range(3):
            L = int(b["lengths"][i])
            loss, _, w = model(b["seqs"][i:i + 1, :L], b["weights"][i:i + 1, :L], b["lengths"][i:i + 1])
            assert float(w) == float(b["weights"][i].sum())  # every target token is scored
            assert torch.allclose(logp[i].detach(), -loss.detach() * w, rtol=1e-4), (i, logp[i], -loss * w)
    assert model.training is True  # restored
    logp.sum().backward()  # differentiable
    assert model.embed.weight.grad is not None


def test_dpo_loss_formula():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.0))
    losses, rewards = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # chosen reward 0.5 * 1, rejected 0.5 * -1: margin 1
    assert rewards["chosen_reward"].item() == 0.5 and rewards["rejected_reward"].item() == -0.5
    assert losses.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))


def test_dpo_model_starts_at_log2_trains_the_policy_only():
    policy = build("delay")
    model = DPOModel(policy, build_reference(policy, None), beta=0.5)
    assert [n for n, _ in model.named_parameters()] == [f"policy.{n}" for n, _ in policy.named_parameters()]
    ds = ToyPairDataset(6, 0)
    batch = collate_pairs([ds[i] for i in range(6)])
    assert batch["seqs"].shape[0] == 12 and batch["n_pairs"] == 6 and len(batch["tasks"]) == 6
    model.train()
    loss, stats, n = model(batch["seqs"], batch["weights"], batch["lengths"])
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6) and float(stats["margin"]) == 0.0 and n.item() == 6
    ref_before = copy.deepcopy(model.reference.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        loss, stats, _ = model(batch["seqs"], batch["weights"], batch["lengths"])
        loss.backward()
        opt.step()
    loss, stats, _ = model(batch["seqs"], batch["weights"], batch["lengths"])
    assert loss.item() < math.log(2) - 0.01 and float(stats["margin"]) > 0 and float(stats["acc"]) == 1.0
    ref = model.reference
    assert all(torch.equal(v, ref_before[k]) for k, v in ref.state_dict().items())
    assert not any(p.requires_grad or p.grad is not None for p in ref.parameters())
    with pytest.raises(ValueError, match="odd batch"):
        model(batch["seqs"][:3], batch["weights"][:3], batch["lengths"][:3])
    sub = pair_rows(batch, [1, 4])  # pairs 1 and 4 keep their chosen / rejected rows
    assert sub["n_pairs"] == 2
    assert torch.equal(sub["seqs"][3, :int(sub["lengths"][3])], batch["seqs"][10, :int(batch["lengths"][10])])


def test_load_weights_formats_and_errors(tmp_path):
    src = build("delay", seed=1)
    save_pretrained(src, tmp_path / "exported")  # exported model dir
    (tmp_path / "ckpt").mkdir()
    save_safetensors(src.state_dict(), tmp_path / "ckpt" / "model.safetensors")  # checkpoint dir
    for path in (tmp_path / "exported", tmp_path / "ckpt", tmp_path / "ckpt" / "model.safetensors"):
        dst = build("delay", seed=2)
        load_weights(dst, path)
        assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), src.state_dict().values()))
    ref = build_reference(build("delay", seed=3), str(tmp_path / "exported"))
    assert torch.equal(ref.embed.weight, src.embed.weight) and not ref.training
    torch.save(src.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="only .safetensors"):
        load_weights(build(), tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="no model weights"):
        load_weights(build(), tmp_path / "nowhere")
    with pytest.raises(ValueError, match="weights do not match"):
        load_weights(build("parallel", shared_head=True), tmp_path / "exported")


def test_split_pair_template_errors():
    def tpl(targets):
        return TaskTemplate.from_dict({"task": "asr", "conditions": [{"name": "wav.scp", "tokenizer": "codec",
                                                                      "reader": "audio"}], "targets": targets})

    ok = tpl([{"name": "text", "tokenizer": "text"}, {"name": "rejected_text", "tokenizer": "text"}])
    assert [it.name for it in split_pair_template(ok).targets] == ["text"]
    with pytest.raises(ValueError, match="even number of targets"):
        split_pair_template(tpl([{"name": "text", "tokenizer": "text"}]))
    with pytest.raises(ValueError, match="contain 'rejected'"):
        split_pair_template(tpl([{"name": "text", "tokenizer": "text"}, {"name": "other", "tokenizer": "text"}]))
    with pytest.raises(ValueError, match="same tokenizers"):
        split_pair_template(tpl([{"name": "text", "tokenizer": "text"},
                                 {"name": "rejected_text", "tokenizer": "g2p"}]))


PAIR_TEMPLATE = """task: asr
conditions:
  - {name: wav.scp, tokenizer: codec, reader: audio}
targets:
  - {name: text, tokenizer: text, reader: text}
  - {name: rejected_text, tokenizer: text, reader: text}
"""


def prepare_pairs(data_dir, tok_conf, root):
    from espnet2.bin import speechlm_prepare

    lines = (data_dir / "text").read_text().splitlines()
    (data_dir / "rejected_text").write_text("".join(f"{l.split()[0]} {' '.join(l.split()[1:][::-1])} xx\n"
                                                    for l in lines))
    (root / "asr_pref.yaml").write_text(PAIR_TEMPLATE)

    def run(*a):
        speechlm_prepare.main([str(x) for x in a])

    run("train_tokenizers", "--data_dir", data_dir, "--tasks", root / "asr_pref.yaml", "--tokenizer_config", tok_conf,
        "--tokenizer_dir", root / "tok")
    run("tokenize", "--task", root / "asr_pref.yaml", "--data_dir", data_dir, "--tokenizer_config", tok_conf,
        "--tokenizer_dir", root / "tok", "--out_dir", root / "dump" / "asr_pref", "--shard_size", 4)
    run("vocab", "--data_json", root / "dump/asr_pref/data.json", "--out_dir", root / "vocab")
    return root / "dump/asr_pref/data.json", root / "vocab"


def test_preference_dataset_from_prepared_data(tiny_data_dir, tokenizer_config, tmp_path):
    from espnet2.speechlm.data.dataset import SpeechLMDataset
    from espnet2.speechlm.vocab import JointVocabulary

    data_json, vocab_dir = prepare_pairs(tiny_data_dir, tokenizer_config, tmp_path)
    vocab = JointVocabulary.load(vocab_dir)
    ds = PreferenceDataset([data_json], vocab)
    assert len(ds) == 8 and ds.manifests[0].lm_template.targets[0].name == "text"
    texts = dict(l.split(maxsplit=1) for l in (tiny_data_dir / "text").read_text().splitlines())
    ex = ds[0]
    (c_seq, c_w), (r_seq, _) = ex["chosen"], ex["rejected"]
    n_cond = int(np.argmax(c_w[:, 0] > 0))  # the first weighted frame is the target's indicator
    np.testing.assert_array_equal(c_seq[:n_cond], r_seq[:n_cond])  # one shared condition
    assert c_seq[0, 0] == vocab.task("asr") and c_seq[n_cond, 0] == vocab.indicator("text")
    assert ds.lengths[0] == 2 * max(len(c_seq), len(r_seq))
    from espnet2.speechlm.data.prepare import TokenizerSpec, load_tokenizer

    tok = load_tokenizer(TokenizerSpec("text", "char"), tmp_path / "tok")
    chosen_text = tok.detokenize(vocab.to_local("text", c_seq[n_cond + 1:-1, :1]))
    assert chosen_text == texts[ex["id"]] and r_seq[-1, 0] == c_seq[-1, 0]
    batch = collate_pairs([ds[i] for i in range(3)])
    assert batch["seqs"].shape[0] == 6 and batch["lengths"].tolist()[:3] == [len(ds[i]["chosen"][0]) for i in range(3)]
    with pytest.raises(ValueError, match="not a preference manifest"):  # an LM manifest has no rejected items
        lm = json.loads(data_json.read_text())
        lm["template"]["targets"] = lm["template"]["targets"][:1]
        (data_json.parent / "lm.json").write_text(json.dumps(lm))
        PreferenceDataset([data_json.parent / "lm.json"], vocab)
    assert len(SpeechLMDataset([data_json], vocab)) == 8  # still a valid manifest for LM readers


# ---- continuous items (side features) in DPO ------------------------------------------
SPK_ID, V_SPK = 280, 300  # a placeholder id above the special range of a larger vocabulary


def _spk_rows(n: int, seed: int = 0):
    """n toy rows whose frame 1 is a speaker-embedding placeholder (a condition)."""
    b = collate([ToyDataset(n, seed)[i] for i in range(n)])
    b["seqs"][:, 1, 0], b["seqs"][:, 1, 1:] = SPK_ID, 0
    b["weights"][:, 1] = 0
    return b


@pytest.mark.parametrize("arch, conf", [("delay", {}), ("multiscale", {"local_heads": 2})])
def test_sequence_logprob_follows_each_rows_side_features(arch, conf):
    torch.manual_seed(0)
    model = build_speechlm(arch, "builtin", BODY, V_SPK, NQ, continuous={"spk": 4},
                           continuous_ids={"spk": SPK_ID}, **conf).eval()
    b = _spk_rows(3)
    feats = {"spk": torch.randn(3, 4)}
    with torch.no_grad():
        base = sequence_logprob(model, b["seqs"], b["weights"], b["lengths"], feats)
        moved = {"spk": feats["spk"].clone()}
        moved["spk"][1] += 3.0
        other = sequence_logprob(model, b["seqs"], b["weights"], b["lengths"], moved)
    changed = (other - base).abs() > 1e-5
    assert changed.tolist() == [False, True, False]  # only the row whose features moved
    with pytest.raises(ValueError, match="placeholder frame"):
        sequence_logprob(model, b["seqs"], b["weights"], b["lengths"])  # features forgotten: an error


def test_dpo_pairs_carry_side_features_through_collate_and_subsets():
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(3):
        seq = np.full((6, NQ), 0, dtype=np.int64)
        w = np.zeros((6, NQ), dtype=np.float32)
        pairs.append({"id": f"p{i}", "task": "tts", "chosen": (seq, w), "rejected": (seq + 1, w),
                      "feats": {"spk": rng.standard_normal((1, 4)).astype(np.float32)},
                      "feat_pos": {"spk": np.array([2])}})
    batch = collate_pairs(pairs)
    f = batch["feats"]["spk"]
    assert f.shape == (6, 4)  # chosen rows, then rejected rows, each with its pair's features
    for i, p in enumerate(pairs):
        assert torch.equal(f[i], torch.from_numpy(p["feats"]["spk"][0]))
        assert torch.equal(f[i + 3], torch.from_numpy(p["feats"]["spk"][0]))
    sub = pair_rows(batch, [2])
    assert sub["n_pairs"] == 1 and torch.equal(sub["feats"]["spk"], f[[2, 5]])
    assert sub["feat_pos"]["spk"].tolist() == [[0, 2], [1, 2]]  # chosen row 0, rejected row 1
    with pytest.raises(IndexError, match=r"pairs \[3\] out of range for a batch of 3 pairs"):
        pair_rows(batch, [0, 3])  # row 3 exists (a rejected row) but pair 3 does not
