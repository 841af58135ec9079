import json
import shutil

import numpy as np
import pytest

from espnet2.bin import speechlm_prepare
from espnet2.speechlm.data import prepare as prep
from espnet2.speechlm.data.dataset import SpeechLMDataset
from espnet2.speechlm.data.index import IndexFileError, read_index
from espnet2.speechlm.tasks.template import load_template
from espnet2.speechlm.vocab import JointVocabulary


def run(*args):
    speechlm_prepare.main([str(a) for a in args])


def prepare_task(task, data_dir, tok_conf, tmp_path, nj=1, shard_size=3):
    tok_dir = tmp_path / "tokenizers"
    run("train_tokenizers", "--data_dir", data_dir, "--tasks", task, "--tokenizer_config", tok_conf,
        "--tokenizer_dir", tok_dir)
    out = tmp_path / "dump" / task / "train"
    run("tokenize", "--task", task, "--data_dir", data_dir, "--tokenizer_config", tok_conf,
        "--tokenizer_dir", tok_dir, "--out_dir", out, "--nj", nj, "--shard_size", shard_size)
    return out


def test_asr_end_to_end_tokens_match_tokenizer(tiny_data_dir, tokenizer_config, tmp_path):
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path)
    meta = json.loads((out / "data.json").read_text())
    assert meta["num_examples"] == 8 and meta["num_skipped"] == 0 and len(meta["shards"]) == 3
    assert meta["tokenizers"]["codec"]["n_streams"] == 2
    run("vocab", "--data_json", out / "data.json", "--out_dir", tmp_path / "vocab")
    vocab = JointVocabulary.load(tmp_path / "vocab")
    ds = SpeechLMDataset([out / "data.json"], vocab)
    assert len(ds) == 8
    ex = ds[0]
    text_tok = prep.load_tokenizer(prep.TokenizerSpec("text", "char"), tmp_path / "tokenizers")
    ref = dict(l.split(maxsplit=1) for l in (tiny_data_dir / "text").read_text().splitlines())[ex["id"]]
    n_text = len(ref)
    text_part = ex["seq"][-1 - n_text : -1, 0]
    assert text_tok.detokenize(vocab.to_local("text", text_part[:, None])) == ref
    assert ds.lengths[0] == ex["seq"].shape[0]
    pre = ds.prefix(0)
    assert pre["prefix"][-1, 0] == vocab.indicator("text")
    np.testing.assert_array_equal(pre["prefix"], ex["seq"][: pre["prefix"].shape[0]])


def test_bad_input_is_reported_not_lost(tiny_data_dir, tokenizer_config, tmp_path):
    wav = read_index(tiny_data_dir / "wav.scp")[0]
    ids = sorted(wav)
    lines = (tiny_data_dir / "wav.scp").read_text().splitlines()
    lines[1] = f"{ids[1]} /no/such/file.wav"  # unreadable audio
    lines[2] = f"{ids[2]}"  # empty content
    (tiny_data_dir / "wav.scp").write_text("\n".join(lines) + "\n")
    text = (tiny_data_dir / "text").read_text().splitlines()
    (tiny_data_dir / "text").write_text("\n".join(text[:-1]) + "\n")  # last id has no text
    import soundfile as sf

    sf.write(tiny_data_dir / "wav" / "sr8k.wav", np.zeros(800, dtype=np.float32) + 0.1, 8000)
    lines = (tiny_data_dir / "wav.scp").read_text().splitlines()
    lines[3] = f"{ids[3]} {tiny_data_dir / 'wav' / 'sr8k.wav'}"  # wrong sample rate
    (tiny_data_dir / "wav.scp").write_text("\n".join(lines) + "\n")
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path)
    kept = set()
    for shard in sorted((out / "shards").iterdir()):
        kept |= set((shard / "ids.txt").read_text().split())
    report = (out / "skipped.txt").read_text().splitlines()
    skipped = {l.split()[1]: l for l in report}
    assert kept | set(skipped) == set(ids) and not kept & set(skipped)
    assert f"wav.scp:2 {ids[1]} unreadable audio" in skipped[ids[1]]
    assert f"wav.scp:3 {ids[2]} empty content" in skipped[ids[2]]
    assert "sample rate 8000 != 16000" in skipped[ids[3]]
    assert "missing in text" in skipped[ids[-1]]


def test_duplicate_id_is_a_listed_skip_and_bad_utf8_is_fatal_with_location(tiny_data_dir, tokenizer_config, tmp_path):
    """One policy everywhere (stage 2 too): a repeated id keeps its first line, the repeat is listed."""
    text = tiny_data_dir / "text"
    first = text.read_text().splitlines()[0]
    text.write_text(text.read_text() + first.split()[0] + " another transcript\n")
    entries, skips = read_index(text)
    assert entries["spk0_utt00"].content == first.split(maxsplit=1)[1]
    assert [str(s) for s in skips] == [f"{text}:9 spk0_utt00 duplicate id (first on line 1, which is used)"]
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path)
    assert "spk0_utt00" in _kept_ids(out) and len(_kept_ids(out)) == 8
    assert "text:9 spk0_utt00 duplicate id" in (out / "skipped.txt").read_text()
    text.write_bytes(b"a hello\nb \xff\xfe\n")
    with pytest.raises(IndexFileError, match=r"text:2: not valid UTF-8"):
        read_index(text)


def test_missing_tokenizer_in_config_is_clear(tiny_data_dir, tmp_path):
    conf = tmp_path / "tok.yaml"
    conf.write_text("text: {type: char}\n")
    job = prep.PrepareJob(tiny_data_dir, load_template("asr"), prep.load_tokenizer_config(conf), tmp_path, tmp_path / "o")
    with pytest.raises(KeyError, match="'codec' is used by a template but missing"):
        prep.plan(job)


def test_kill_and_resume_gives_identical_output(tiny_data_dir, tokenizer_config, tmp_path):
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, nj=2)
    snapshot = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    # simulate a kill: one shard half-written (tmp dir, no done marker), another gone, no manifest
    shard1 = out / "shards" / "shard_00001"
    shutil.move(shard1, out / "shards" / "shard_00001.tmp")
    (out / "shards" / "shard_00001.tmp" / "done").unlink()
    shutil.rmtree(out / "shards" / "shard_00002")
    (out / "data.json").unlink()
    before = (out / "shards" / "shard_00000" / "item0.npy").stat().st_mtime_ns
    out2 = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, nj=1)
    assert (out2 / "shards" / "shard_00000" / "item0.npy").stat().st_mtime_ns == before  # not redone
    again = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert again.keys() == snapshot.keys()
    for k in snapshot:
        if k.name != "prepare.yaml":
            assert again[k] == snapshot[k], k


def _kept_ids(out):
    ids = []
    for shard in sorted((out / "shards").iterdir()):
        ids += (shard / "ids.txt").read_text().split()
    return ids


@pytest.mark.parametrize("sizes", [(4, 3), (2, 4), (3, 2)])
def test_resume_with_another_shard_size_loses_and_doubles_nothing(tiny_data_dir, tokenizer_config, tmp_path, sizes):
    """Done shards used to be reused by index alone: 4 -> 3 gave 12 examples (10 unique) and
    2 -> 4 lost four of 8 without a word. A shard records what it was made from."""
    first, second = sizes
    prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, shard_size=first)
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, shard_size=second)
    ids = _kept_ids(out)
    assert sorted(ids) == sorted(read_index(tiny_data_dir / "wav.scp")[0])  # all 8, once each
    manifest = json.loads((out / "data.json").read_text())
    assert manifest["num_examples"] == 8 and len(manifest["shards"]) == -(-8 // second)
    assert len(SpeechLMDataset([out / "data.json"], _vocab_of(out, tmp_path))) == 8


def _vocab_of(out, tmp_path):
    run("vocab", "--data_json", out / "data.json", "--out_dir", tmp_path / "vocab_check")
    return JointVocabulary.load(tmp_path / "vocab_check" / "vocab.json")


def test_changed_index_rows_redo_exactly_their_shard(tiny_data_dir, tokenizer_config, tmp_path):
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, shard_size=3)
    stamps = {d.name: (d / "item0.npy").stat().st_mtime_ns for d in sorted((out / "shards").iterdir())}
    text = tiny_data_dir / "text"
    lines = text.read_text().splitlines()
    lines[4] = lines[4].split()[0] + " a changed transcript"  # utterance 5 of 8: shard 1
    text.write_text("\n".join(lines) + "\n")
    prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, shard_size=3)
    now = {d.name: (d / "item0.npy").stat().st_mtime_ns for d in sorted((out / "shards").iterdir())}
    assert [k for k in stamps if now[k] != stamps[k]] == ["shard_00001"]


def test_tokenizer_cache_is_keyed_by_config(tiny_data_dir, tmp_path):
    """Two jobs in one process, same tokenizer dir and names, other confs: two tokenizers."""
    toy = "toy_tokenizers:ToyAudioTokenizer"
    jobs = [prep.PrepareJob(tiny_data_dir, load_template("audiolm"), {"codec": prep.TokenizerSpec("codec", toy, {
        "codebook_size": n})}, None, tmp_path / str(n)) for n in (16, 8)]
    assert [prep._tokenizers(j)["codec"].codebook_size for j in jobs] == [16, 8]


def test_rewritten_audio_redoes_its_shard(tiny_data_dir, tokenizer_config, tmp_path):
    """Same wav.scp paths, new audio behind them (stage 2 re-run with another --fs): not reused."""
    import os

    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, shard_size=3)
    stamps = {d.name: (d / "item0.npy").stat().st_mtime_ns for d in sorted((out / "shards").iterdir())}
    wav = read_index(tiny_data_dir / "wav.scp")[0]["spk0_utt00"].content  # shard 0
    st = os.stat(wav)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, shard_size=3)
    now = {d.name: (d / "item0.npy").stat().st_mtime_ns for d in sorted((out / "shards").iterdir())}
    assert [k for k in stamps if now[k] != stamps[k]] == ["shard_00000"]


def test_merge_refuses_a_shard_that_lost_an_example(tiny_data_dir, tokenizer_config, tmp_path):
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path, shard_size=3)
    ids_file = out / "shards" / "shard_00001" / "ids.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids_file.read_text().split()[:-1]))  # one id gone, no skip
    job = prep.PrepareJob(tiny_data_dir, load_template("asr"), prep.load_tokenizer_config(tokenizer_config),
                          tmp_path / "tokenizers", out, shard_size=3)
    shards, skips, tables = prep.plan(job)
    with pytest.raises(RuntimeError, match="loses"):
        prep.merge(job, shards, skips, tables)


def test_adding_a_task_keeps_token_ids(tiny_data_dir, tokenizer_config, tmp_path):
    asr = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path)
    run("vocab", "--data_json", asr / "data.json", "--out_dir", tmp_path / "vocab")
    before = (tmp_path / "vocab" / "vocab.txt").read_text().splitlines()
    tts = prepare_task("tts_spkid", tiny_data_dir, tokenizer_config, tmp_path)
    run("vocab", "--data_json", tts / "data.json", asr / "data.json", "--out_dir", tmp_path / "vocab")
    after = (tmp_path / "vocab" / "vocab.txt").read_text().splitlines()
    assert after[256 : len(before)] == before[256:]
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert changed and all("<reserved_" in a for a, _ in changed)
    vocab = JointVocabulary.load(tmp_path / "vocab")
    ds = SpeechLMDataset([asr / "data.json", tts / "data.json"], vocab)
    assert len(ds) == 16 and set(ds.tasks) == {"asr", "tts_spkid"}


def test_stats_writes_lengths(tiny_data_dir, tokenizer_config, tmp_path, capsys):
    out = prepare_task("textlm", tiny_data_dir, tokenizer_config, tmp_path)
    run("stats", "--data_json", out / "data.json")
    lengths = dict(l.split() for l in (out / "lengths.txt").read_text().splitlines())
    text = dict(l.split(maxsplit=1) for l in (tiny_data_dir / "text").read_text().splitlines())
    assert {k: int(v) for k, v in lengths.items()} == {k: len(v) + 3 for k, v in text.items()}
    stats = json.loads((out / "stats.json").read_text())
    expected = [len(v) + 3 for v in text.values()]
    assert stats["num_examples"] == 8 and stats["total_tokens"] == sum(expected)
    assert (stats["min"], stats["max"]) == (min(expected), max(expected))


def test_separate_shard_jobs_then_merge_equal_one_run(tiny_data_dir, tokenizer_config, tmp_path):
    """What `--prep_cmd` does on a cluster: jobs 0..N-1 tokenize their shards, a last call merges."""
    single = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path / "a")
    tok_dir = tmp_path / "a" / "tokenizers"
    out = tmp_path / "b" / "asr"
    args = ["tokenize", "--task", "asr", "--data_dir", tiny_data_dir, "--tokenizer_config", tokenizer_config,
            "--tokenizer_dir", tok_dir, "--out_dir", out, "--shard_size", 3]
    for j in range(2):
        run(*args, "--job_index", j, "--num_jobs", 2)
        assert not (out / "data.json").exists()  # a job never merges
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard_00000", "shard_00001", "shard_00002"]
    run(*args)
    for a in sorted(single.rglob("*")):
        if a.is_file() and a.name not in ("prepare.yaml", "data.json"):
            assert (out / a.relative_to(single)).read_bytes() == a.read_bytes(), a
    m1, m2 = (json.loads((d / "data.json").read_text()) for d in (single, out))
    assert m1["shards"] == m2["shards"] and m1["num_examples"] == m2["num_examples"] == 8


def test_tokenizer_rejecting_one_item_skips_only_that_example(tmp_path):
    """A ValueError from the tokenizer (here an unknown pitch) drops that example into the
    skip report; the rest of its batch and shard are kept."""
    data = tmp_path / "data"
    data.mkdir()
    lines = ["a C4:0.50:la D4:0.25:li", "b H4:0.50:la", "c rest:0.50 E4:1.00:lu"]
    (data / "text").write_text("\n".join(lines) + "\n")
    tok_conf = tmp_path / "tok.yaml"
    tok_conf.write_text("text: {type: music_score}\n")
    tok_dir = tmp_path / "tokenizers"
    out = tmp_path / "dump"
    # the tokenizer is trained on clean scores (its training would reject the bad one too)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "text").write_text(lines[0] + "\n" + lines[2] + "\n")
    run("train_tokenizers", "--data_dir", clean, "--tasks", "textlm", "--tokenizer_config", tok_conf,
        "--tokenizer_dir", tok_dir)
    run("tokenize", "--task", "textlm", "--data_dir", data, "--tokenizer_config", tok_conf,
        "--tokenizer_dir", tok_dir, "--out_dir", out, "--shard_size", 8)
    meta = json.loads((out / "data.json").read_text())
    assert meta["num_examples"] == 2 and meta["num_skipped"] == 1
    report = "".join(p.read_text() for p in out.rglob("skipped*.txt"))
    assert "b" in report.split() and "unknown pitch" in report and "text:2" in report.replace(str(data) + "/", "")


def test_tokenizer_retrained_only_when_its_config_changes(tiny_data_dir, tmp_path):
    """The `done` marker records the type and conf it was trained with: the same config (or
    an empty marker from an earlier version) is skipped, a changed one is retrained."""
    specs = {"text": prep.TokenizerSpec("text", "sentencepiece", {"vocab_size": 30, "model_type": "bpe"})}
    templates = [load_template("textlm")]
    tok_dir = tmp_path / "tok"
    assert prep.train_tokenizers(tiny_data_dir, templates, specs, tok_dir) == ["text"]
    assert '"vocab_size": 30' in (tok_dir / "text" / "done").read_text()
    assert prep.train_tokenizers(tiny_data_dir, templates, specs, tok_dir) == []  # same config: kept
    specs["text"] = prep.TokenizerSpec("text", "sentencepiece", {"vocab_size": 34, "model_type": "bpe"})
    assert prep.train_tokenizers(tiny_data_dir, templates, specs, tok_dir) == ["text"]
    assert prep.load_tokenizer(specs["text"], tok_dir).codebook_size == 34
    (tok_dir / "text" / "done").write_text("")  # a marker of an earlier version
    specs["text"] = prep.TokenizerSpec("text", "sentencepiece", {"vocab_size": 30, "model_type": "bpe"})
    assert prep.train_tokenizers(tiny_data_dir, templates, specs, tok_dir) == []


def test_missing_or_unknown_tokenizer_stops_training_before_any_tokenizer_trains(tiny_data_dir, tmp_path):
    """Stage 3 used to train the tokenizers that sort first (30-70 s on the mini recipe) and only
    then find a name missing from the config: every name and type is checked first."""
    templates = [load_template("asr")]  # codec (trained first), then text
    codec = prep.TokenizerSpec("codec", "mel_rvq", {"n_streams": 2, "codebook_size": 4})
    with pytest.raises(KeyError, match="'text' is used by a template but missing"):
        prep.train_tokenizers(tiny_data_dir, templates, {"codec": codec}, tmp_path / "tok")
    bad_type = {"codec": codec, "text": prep.TokenizerSpec("text", "sentencepiecee", {})}
    with pytest.raises(Exception, match="sentencepiecee"):
        prep.train_tokenizers(tiny_data_dir, templates, bad_type, tmp_path / "tok")
    assert not (tmp_path / "tok" / "codec").exists()  # nothing was trained


def test_truncated_wav_is_skipped_with_reason(tiny_data_dir, tokenizer_config, tmp_path):
    """The header promises more frames than the file holds: skipped, not read short."""
    wav = read_index(tiny_data_dir / "wav.scp")[0]
    ids = sorted(wav)
    path = tiny_data_dir / "wav" / f"{ids[2]}.wav"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 400])
    out = prepare_task("asr", tiny_data_dir, tokenizer_config, tmp_path)
    kept = set()
    for shard in sorted((out / "shards").iterdir()):
        kept |= set((shard / "ids.txt").read_text().split())
    skipped = {l.split()[1]: l for l in (out / "skipped.txt").read_text().splitlines()}
    assert set(skipped) == {ids[2]} and kept == set(ids) - {ids[2]}
    assert f"wav.scp:3 {ids[2]} truncated audio" in skipped[ids[2]]
    assert "the header promises" in skipped[ids[2]]
