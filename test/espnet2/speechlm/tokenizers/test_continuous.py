import pytest

from espnet2.speechlm.tokenizers import TOKENIZERS, build_tokenizer


@pytest.mark.parametrize("name", ["spk_embedding", "llm_embedding"])
def test_continuous_items_are_registered_and_refuse_clearly(name, tmp_path):
    assert name in TOKENIZERS.names()
    with pytest.raises(NotImplementedError, match="not implemented yet; use a `label`"):
        build_tokenizer(name, tmp_path)
