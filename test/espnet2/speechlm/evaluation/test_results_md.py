"""RESULTS.md: notes below the table (what a column was measured with) and row order."""

from espnet2.speechlm.evaluation.results_md import update_results_md


def rows(md):
    return [tuple(c.strip() for c in l.split("|")[1:3]) for l in md.read_text().splitlines()
            if l.startswith("| ") and not l.startswith("| task")]


def test_notes_are_grouped_replaced_and_kept_with_hand_written_text(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# RESULTS\n\nwritten by hand\n")
    update_results_md(md, "tts", "test", 4, {"tts_wer": "0.5"}, notes={"tts_wer": "recognizer A", "spk_sim": "embedding E"})
    update_results_md(md, "tts2", "test", 4, {"tts_wer": "0.4"}, notes={"tts_wer": "recognizer B"})
    text = md.read_text()
    assert "- tts_wer: recognizer A [tts/test]" in text and "- tts_wer: recognizer B [tts2/test]" in text
    assert "- spk_sim: embedding E [tts/test]" in text and "written by hand" in text
    # the note lines sit inside the markers, right below the table
    lines = text.splitlines()
    assert lines.index("<!-- speechlm-score:end -->") - 1 == max(i for i, l in enumerate(lines) if l.startswith("- "))
    update_results_md(md, "tts", "test", 4, {"tts_wer": "0.3"}, notes={"tts_wer": "recognizer B"})  # re-scored
    text = md.read_text()
    assert "- tts_wer: recognizer B [tts/test, tts2/test]" in text
    assert "recognizer A" not in text and "spk_sim: embedding E" not in text  # that row's notes were replaced
    update_results_md(md, "asr", "test", 4, {"wer": "0.1"})  # no notes: nothing added
    assert md.read_text().count("\n- ") == 1


def test_a_labelled_row_follows_its_task_row_for_each_test_set(tmp_path):
    md = tmp_path / "RESULTS.md"
    for task, test_set in [("tts (resynthesis topline)", "test"), ("tts (resynthesis topline)", "dev"), ("tts", "test"),
                           ("tts_x", "dev"), ("tts", "dev"), ("asr", "test")]:
        update_results_md(md, task, test_set, 1, {"m": "1"})
    assert rows(md) == [("asr", "test"), ("tts", "dev"), ("tts (resynthesis topline)", "dev"), ("tts", "test"),
                        ("tts (resynthesis topline)", "test"), ("tts_x", "dev")]
