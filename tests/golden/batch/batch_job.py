"""``spark-submit batch_job.py [--date ...]``: the batch job started by Spark's own launcher.

The same job as ``python -m src.batch``, with the same options after the file name; spark-submit's
own options (``--master``, ``--conf``, ``--driver-memory``, ...) go before it and take the place of
SPARK_MASTER and SPARK_CONF_* settings.
"""

import sys

from src.batch.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
