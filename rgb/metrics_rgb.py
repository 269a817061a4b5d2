"""Evaluate a trained RGB experiment: Chamfer, EMD, colour error vs an image-free baseline.

    python rgb/metrics_rgb.py --exp experiments/chair_rgb --snapshot best --eval_set test

The architecture is read from <exp>/args.json.
"""

from rgb.task import TASK
from utils.eval import evaluate


def main(argv=None):
    return evaluate.main(TASK, argv)


if __name__ == "__main__":
    evaluate.cli_main(TASK)
