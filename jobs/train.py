"""`ray job submit --working-dir . -- python jobs/train.py --profile cluster --dataset DIR --out DIR`: phase 3 as a Ray job.

With `training.num_workers >= 1` the job runs a Ray Train V2 TorchTrainer (GPU workers on a cluster).
"""

import sys

from deepcoder.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
