"""The one place that imports TensorFlow for this project.

DIFFER is written in the TensorFlow 1 programming model (graphs, placeholders,
``tf.Session``, variable scopes, ``tf.train.Saver``). TensorFlow 1.13, which the
original code targeted, has no wheel for any Python we support, so we run
TensorFlow 2.x through ``tensorflow.compat.v1`` with the v2 behaviour switched
off (graph mode, no eager execution). Every module does::

    from utils.tfv1 import tf

and gets that ``tf``; importing this module is what switches graph mode on.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ info/warning spam

import tensorflow.compat.v1 as tf  # noqa: E402

tf.logging.set_verbosity(tf.logging.ERROR)  # before the next line, which warns
tf.disable_v2_behavior()

__all__ = ["tf"]
