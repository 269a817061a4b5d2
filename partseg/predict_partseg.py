"""Reconstruct part-labelled point clouds from your own images with a trained partseg experiment.

    python partseg/predict_partseg.py --exp experiments/demo_partseg photo.png --out predictions
    python partseg/predict_partseg.py --exp experiments/demo_partseg --export experiments/demo_partseg/saved_model

Writes <name>.ply (one colour per part and a ``label`` vertex property: the 0-based part index),
<name>.png (input + cloud from 4 angles, with the part legend), optionally a GIF and the raw
arrays (part probabilities); ``--help`` says what input the model expects.
"""

from partseg.task import TASK
from utils.eval import inference


def main(argv=None):
    return inference.main(TASK, argv)


if __name__ == "__main__":
    inference.cli_main(TASK)
