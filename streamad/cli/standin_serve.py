"""``streamad serve`` with the stand-in extractor (block means, no backbone): for tests and smoke runs of
whole serve processes, e.g. ``streamad soak --extractor standin``. Not a subcommand; run it as
``python -m streamad.cli.standin_serve serve CONFIG [serve options]`` (the arguments of ``streamad``).

Worker processes (``[serve] workers``, started with spawn) import this module again as their main
module; the ``__main__`` guard keeps them from starting a serve of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``streamad`` with ``argv`` (default: this process's arguments) and the stand-in extractor."""
    import streamad.runtime.serve.session as serve_session
    from streamad.cli import main as cli_main
    from streamad.testing.standin import BlockMeans

    serve_session.make_extractor = lambda features: BlockMeans()
    return cli_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
