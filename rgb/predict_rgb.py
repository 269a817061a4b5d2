"""Reconstruct coloured point clouds from your own images with a trained RGB experiment.

    python rgb/predict_rgb.py --exp experiments/demo_rgb photo.png folder_of_images/ --out predictions
    python rgb/predict_rgb.py --exp experiments/demo_rgb --export experiments/demo_rgb/saved_model   # SavedModel

Writes <name>.ply (coloured), <name>.png (input + cloud from 4 angles), optionally a GIF and the
raw arrays; ``--help`` says what input the model expects. The shared code is utils/eval/inference.py.
"""

from rgb.task import TASK
from utils.eval import inference


def main(argv=None):
    return inference.main(TASK, argv)


if __name__ == "__main__":
    inference.cli_main(TASK)
