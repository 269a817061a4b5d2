"""Evaluate a trained partseg experiment: Chamfer, EMD, part mIoU vs two image-free baselines.

python partseg/metrics_partseg.py --exp experiments/chair_partseg --snapshot best --eval_set test
"""

from partseg.task import TASK
from utils.eval import evaluate


def main(argv=None):
    return evaluate.main(TASK, argv)


if __name__ == "__main__":
    evaluate.cli_main(TASK)
