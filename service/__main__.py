"""``python -m service``: the same as the ``numbaserve`` console script."""

import sys

from service.cli import main

sys.exit(main())
