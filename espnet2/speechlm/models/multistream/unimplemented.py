"""Names reserved for architectures not built yet, so configs fail with a clear message."""

from espnet2.speechlm.models.multistream import MULTISTREAM_LMS


def _not_yet(name: str, what: str):
    def build(*args, **kwargs):
        raise NotImplementedError(
            f"multi-stream architecture {name!r} ({what}) is not implemented yet; "
            f"available: 'delay', 'parallel', 'multiscale'"
        )

    return build


MULTISTREAM_LMS.register("valle")(_not_yet("valle", "AR stream 0 + non-AR streams 1..nq-1"))
