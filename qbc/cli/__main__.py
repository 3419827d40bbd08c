"""``python -m qbc.cli``: the ``qbc`` command."""

import sys

from qbc.cli import main

sys.exit(main())
