"""``python -m streamad``: the same as the ``streamad`` command."""

import sys

from streamad.cli import main

sys.exit(main())
