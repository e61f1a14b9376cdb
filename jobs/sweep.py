"""`ray job submit --working-dir . -- python jobs/sweep.py --profile cluster --dataset DIR`: the lambda sweep as a Ray job."""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
