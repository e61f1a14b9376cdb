"""`ray job submit --working-dir . -- python jobs/serve.py smoke --profile cluster [--model DIR]`: phase 5 as a Ray job.

`smoke` starts the agent app on the cluster, answers one real request and stops; `run` keeps it up
(for a long-lived deployment prefer `serve deploy serve_config.yaml`, see docs/deploy.md).
"""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
