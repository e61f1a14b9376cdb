"""`ray job submit --working-dir . -- python jobs/verify.py`: check a cluster node's environment."""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["verify", *sys.argv[1:]]))
