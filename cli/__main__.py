"""`python -m cli`: the same as the `prefloop` command."""

import sys

from cli.main import main

sys.exit(main())
