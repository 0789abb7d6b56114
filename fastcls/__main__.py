"""``python -m fastcls demo``: the same as the ``fastcls`` command."""

import sys

from fastcls.cli import main

sys.exit(main())
