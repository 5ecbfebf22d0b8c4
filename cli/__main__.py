"""`python -m cli ...` is the `omnirec` command."""

import sys

from cli.main import main

sys.exit(main())
