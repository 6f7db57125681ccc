"""`python -m ssps ...` (also what `torchrun -m ssps` runs)."""

import sys

from .cli import main

sys.exit(main())
