"""`ray job submit --working-dir . -- python jobs/evaluate.py --model teacher --model sad=runs/pipeline/train/final/merged`:
evaluation (pass@k, agentic suite, safety, report) as a Ray job."""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", "run", *sys.argv[1:]]))
