"""`python -m idf_jax.runtime.cli ...`: the `idf` command."""

import sys

from . import main

sys.exit(main())
