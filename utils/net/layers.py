"""Small layer library on ``tf.compat.v1.get_variable`` + ``tf.nn``.

Replaces tflearn (TF1 only) and ``tf.compat.v1.layers`` (needs the legacy
tf_keras package with Keras 3). Weight-decay terms are added to the
``REGULARIZATION_LOSSES`` collection; :func:`weight_decay_loss` sums them so a
training script can (and must) add them to its loss.
"""

import numpy as np

from utils.common.tfv1 import tf

_ACTIVATIONS = {
    None: lambda x: x,
    "linear": lambda x: x,
    "relu": tf.nn.relu,
    "sigmoid": tf.nn.sigmoid,
    "tanh": tf.nn.tanh,
    "softmax": tf.nn.softmax,
    "leaky_relu": lambda x: tf.nn.leaky_relu(x, 0.2),
}


def _activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(k for k in _ACTIVATIONS if k)}")
    return _ACTIVATIONS[name]


INITS = ("he", "tflearn")
TFLEARN_FC_STDDEV = 0.02  # tflearn's fully_connected default: truncated normal, stddev 0.02


def _weights_init(init, kind, scale=2.0):
    """Initialiser of a weight matrix / kernel.

    Args:
        init: 'he' -- variance scaling ``scale / fan_in``, truncated normal (He-normal for
            ``scale`` = 2) -- or 'tflearn' -- tflearn's defaults, which the original used:
            convolutions U(-sqrt(3 / fan_in), +sqrt(3 / fan_in)) ('uniform_scaling'), fully
            connected layers a truncated normal with stddev 0.02, whatever ``scale``.
        kind: 'conv' or 'fc'.
    """
    if init == "he":
        return tf.variance_scaling_initializer(scale, "fan_in", "truncated_normal")
    if init == "tflearn":
        if kind == "conv":
            return tf.variance_scaling_initializer(1.0, "fan_in", "uniform")
        return tf.truncated_normal_initializer(stddev=TFLEARN_FC_STDDEV)
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def _add_decay(w, weight_decay):
    if weight_decay and weight_decay > 0:
        tf.add_to_collection(
            tf.GraphKeys.REGULARIZATION_LOSSES, tf.multiply(weight_decay, tf.nn.l2_loss(w), name="weight_decay")
        )


def conv2d(x, filters, kernel_size=3, strides=1, activation="relu", weight_decay=1e-5, scope="conv", init="he"):
    """2D convolution, 'SAME' padding, zero bias; weights initialised by ``init``
    (:func:`_weights_init`: He-normal or tflearn's uniform scaling).

    Args:
        x: float32 (B, H, W, C_in).
        filters: int, output channels C_out.
        kernel_size, strides: int, square kernel and stride in pixels.
    Returns:
        float32 (B, ceil(H/strides), ceil(W/strides), C_out).
    """
    c_in = int(x.shape[-1])
    with tf.variable_scope(scope):
        w = tf.get_variable("W", [kernel_size, kernel_size, c_in, filters], tf.float32, _weights_init(init, "conv"))
        b = tf.get_variable("b", [filters], tf.float32, tf.zeros_initializer())
        _add_decay(w, weight_decay)
        y = tf.nn.conv2d(x, w, [1, strides, strides, 1], "SAME") + b
        return _activation(activation)(y)


def fully_connected(x, units, activation="relu", weight_decay=1e-5, scope="fc", init_scale=2.0, init="he"):
    """Dense layer on the flattened input, zero bias.

    Args:
        x: float32 (B, ...) -- flattened to (B, D).
        units: int, output width.
        init_scale: variance-scaling factor of the 'he' init (2 for ReLU, smaller for outputs).
        init: 'he' or 'tflearn' (truncated N(0, 0.02), ``init_scale`` unused); see :func:`_weights_init`.
    Returns:
        float32 (B, units).
    """
    d = int(np.prod([int(s) for s in x.shape[1:]]))
    x = tf.reshape(x, [-1, d])
    with tf.variable_scope(scope):
        w = tf.get_variable("W", [d, units], tf.float32, _weights_init(init, "fc", init_scale))
        b = tf.get_variable("b", [units], tf.float32, tf.zeros_initializer())
        _add_decay(w, weight_decay)
        return _activation(activation)(tf.matmul(x, w) + b)


def weight_decay_loss(scope=None):
    """Sum of the weight-decay terms registered under ``scope`` (float32 scalar; 0 if none)."""
    terms = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES, scope)
    return tf.add_n(terms) if terms else tf.constant(0.0)
