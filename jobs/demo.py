"""`ray job submit --working-dir . -- python jobs/demo.py`: the pipeline on the embedded default as a Ray job."""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
