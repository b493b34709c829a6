"""`python -m cxr.cli`: the same as the `cxr` command."""

import sys

from cxr.cli import main

sys.exit(main())
