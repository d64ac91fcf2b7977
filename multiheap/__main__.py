"""``python -m multiheap``."""

import sys

from multiheap.cli import main

sys.exit(main())
