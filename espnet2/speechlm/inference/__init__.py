"""Inference: search configuration, modality masking, decoding strategies."""

from espnet2.speechlm.inference.masking import ModalityTable  # noqa: F401
from espnet2.speechlm.inference.search import SEARCHES, SearchConfig  # noqa: F401
