"""``python -m src.worker``: run one queue worker until SIGTERM or SIGINT."""

import sys

from src.worker.runner import main

sys.exit(main())
