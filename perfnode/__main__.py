"""``python -m perfnode`` is the ``perfnode`` command."""

import sys

from perfnode.cli import main

sys.exit(main())
