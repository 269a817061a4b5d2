"""Train DIFFER on coloured point clouds (2D supervision: masks and colour views).

    python rgb/train_rgb.py --exp experiments/chair_rgb --category chair --skipconn

See ``--help`` for every flag; ``run_train_rgb.sh`` has the recommended set.
"""

from rgb.task import TASK
from utils.train import loop as train_loop


def main(argv=None):
    return train_loop.main(TASK, argv)


if __name__ == "__main__":
    train_loop.cli_main(TASK)
