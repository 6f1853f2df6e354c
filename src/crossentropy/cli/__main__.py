"""``python -m crossentropy.cli``: the ``crossentropy`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
