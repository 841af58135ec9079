"""Multi-stream LM architectures, registered by name ("delay", "parallel", "multiscale", "valle")."""

from espnet2.speechlm.registry import Registry

MULTISTREAM_LMS: Registry = Registry("multi-stream architecture")

from espnet2.speechlm.models.multistream import multiscale, pattern_lm, valle  # noqa: E402,F401
from espnet2.speechlm.models.multistream.abs_lm import AbsMultiStreamLM  # noqa: E402,F401
