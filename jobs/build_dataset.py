"""`ray job submit --working-dir . -- python jobs/build_dataset.py --trajectories T.jsonl --out DIR`: phase 2 as a Ray job."""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-dataset", *sys.argv[1:]]))
