"""Train DIFFER on part-segmented point clouds (2D supervision: masks and part-label views).

    python partseg/train_partseg.py --exp experiments/chair_partseg --category chair

See ``--help`` for every flag; ``run_train_partseg.sh`` has the recommended set.
"""

from partseg.task import TASK
from utils.train import loop as train_loop


def main(argv=None):
    return train_loop.main(TASK, argv)


if __name__ == "__main__":
    train_loop.cli_main(TASK)
