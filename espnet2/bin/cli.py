"""One line for a user's mistake, the traceback only when asked for (`--verbose`).

Why: a wrong path or a typo in a config should read like `speechlm_train: error: ...`, not
like a crash. Errors that are not the user's (anything outside USER_ERRORS) keep their
traceback, since they are bugs to report.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, List, Optional

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, NotImplementedError)
VERBOSE_FLAG = "--verbose"


def user_errors(name: str, extra: tuple = ()) -> Callable:
    """Decorate `main(argv)`: strips `--verbose` from argv; a USER_ERRORS (or `extra`) exception
    becomes `<name>: error: <message>` on stderr and exit status 1."""

    def wrap(main: Callable[[Optional[List[str]]], object]):
        @functools.wraps(main)
        def run(argv: Optional[List[str]] = None):
            argv = list(sys.argv[1:] if argv is None else argv)
            verbose = VERBOSE_FLAG in argv
            argv = [a for a in argv if a != VERBOSE_FLAG]
            try:
                return main(argv)
            except USER_ERRORS + tuple(extra) as e:
                if verbose:
                    raise
                message = e.args[0] if isinstance(e, KeyError) and e.args else e
                print(f"{name}: error: {message} (run with {VERBOSE_FLAG} for the traceback)", file=sys.stderr)
                sys.exit(1)

        return run

    return wrap
