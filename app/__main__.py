"""`python -m app` runs the `fedxray` command."""

import sys

from app.cli import main

sys.exit(main())
