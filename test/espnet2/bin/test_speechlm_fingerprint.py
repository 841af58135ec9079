import shutil

from espnet2.bin.speechlm_fingerprint import fingerprint, main


def test_fingerprint_follows_contents_not_times_or_places(tmp_path, capsys):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "sub").mkdir()
    (d / "sub" / "w.bin").write_bytes(b"\x00\x01")
    first = fingerprint([d])
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)  # new times, same contents
    assert fingerprint([copy]) == first
    (copy / "sub" / "w.bin").write_bytes(b"\x00\x02")
    assert fingerprint([copy]) != first
    (copy / "sub" / "w.bin").write_bytes(b"\x00\x01")
    (copy / "extra.txt").write_text("")
    assert fingerprint([copy]) != first  # a new (even empty) file counts
    missing = tmp_path / "nothing"
    assert fingerprint([missing]) != fingerprint([]) and fingerprint([d, missing]) != first
    link = tmp_path / "link"
    link.symlink_to(d, target_is_directory=True)
    assert fingerprint([link]) == first  # links are followed
    assert main([str(d)]) == 0
    assert capsys.readouterr().out.strip() == first and len(first) == 12
