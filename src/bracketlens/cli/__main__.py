"""``python -m bracketlens.cli``: the console script."""

import sys

from bracketlens.cli import main

sys.exit(main())
