"""`ray job submit --working-dir . -- python jobs/pipeline.py --profile demo`: the whole distillation as a Ray job.

Under `ray job submit` RAY_ADDRESS is set, so every stage joins the cluster the job runs on.
"""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
