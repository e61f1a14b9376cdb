"""`ray job submit --working-dir . -- python jobs/generate.py --profile demo --limit 100`: phase 1 as a Ray job.

The driver joins the cluster (RAY_ADDRESS is set by `ray job submit`) and runs the same code as
`deepcoder generate`.
"""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
