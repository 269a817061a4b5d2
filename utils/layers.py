"""Small layer library on ``tf.compat.v1.get_variable`` + ``tf.nn``.

Replaces tflearn (TF1 only) and ``tf.compat.v1.layers`` (needs the legacy
tf_keras package with Keras 3). Weight-decay terms are added to the
``REGULARIZATION_LOSSES`` collection; :func:`weight_decay_loss` sums them so a
training script can (and must) add them to its loss.
"""
import numpy as np

from utils.tfv1 import tf

_ACTIVATIONS = {
    None: lambda x: x, "linear": lambda x: x, "relu": tf.nn.relu,
    "sigmoid": tf.nn.sigmoid, "tanh": tf.nn.tanh, "softmax": tf.nn.softmax,
    "leaky_relu": lambda x: tf.nn.leaky_relu(x, 0.2),
}


def _activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(k for k in _ACTIVATIONS if k)}")
    return _ACTIVATIONS[name]


def _add_decay(w, weight_decay):
    if weight_decay and weight_decay > 0:
        tf.add_to_collection(tf.GraphKeys.REGULARIZATION_LOSSES,
                             tf.multiply(weight_decay, tf.nn.l2_loss(w), name="weight_decay"))


def conv2d(x, filters, kernel_size=3, strides=1, activation="relu", weight_decay=1e-5,
           scope="conv"):
    """2D convolution, 'SAME' padding, He-normal init.

    Args:
        x: float32 (B, H, W, C_in).
        filters: int, output channels C_out.
        kernel_size, strides: int, square kernel and stride in pixels.
    Returns:
        float32 (B, ceil(H/strides), ceil(W/strides), C_out).
    """
    c_in = int(x.shape[-1])
    with tf.variable_scope(scope):
        w = tf.get_variable("W", [kernel_size, kernel_size, c_in, filters], tf.float32,
                            tf.variance_scaling_initializer(2.0, "fan_in", "truncated_normal"))
        b = tf.get_variable("b", [filters], tf.float32, tf.zeros_initializer())
        _add_decay(w, weight_decay)
        y = tf.nn.conv2d(x, w, [1, strides, strides, 1], "SAME") + b
        return _activation(activation)(y)


def fully_connected(x, units, activation="relu", weight_decay=1e-5, scope="fc",
                    init_scale=2.0):
    """Dense layer on the flattened input.

    Args:
        x: float32 (B, ...) -- flattened to (B, D).
        units: int, output width.
        init_scale: variance-scaling factor (2 for ReLU, smaller for outputs).
    Returns:
        float32 (B, units).
    """
    d = int(np.prod([int(s) for s in x.shape[1:]]))
    x = tf.reshape(x, [-1, d])
    with tf.variable_scope(scope):
        w = tf.get_variable("W", [d, units], tf.float32,
                            tf.variance_scaling_initializer(init_scale, "fan_in", "truncated_normal"))
        b = tf.get_variable("b", [units], tf.float32, tf.zeros_initializer())
        _add_decay(w, weight_decay)
        return _activation(activation)(tf.matmul(x, w) + b)


def weight_decay_loss(scope=None):
    """Sum of the weight-decay terms registered under ``scope`` (float32 scalar; 0 if none)."""
    terms = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES, scope)
    return tf.add_n(terms) if terms else tf.constant(0.0)
