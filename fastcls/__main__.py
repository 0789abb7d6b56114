"""``python -m fastcls demo``: the same as the ``fastcls`` command."""

import sys

from fastcls.cli import main

if __name__ == "__main__":
    sys.exit(main())
