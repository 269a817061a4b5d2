"""The reconstruction network shared by both tasks (the original's two-branch net).

Structure branch: a strided convolutional encoder and a fully connected decoder
that outputs N x 3 coordinates. Feature branch: a shallower encoder of the same
image whose fully connected decoder outputs N x C per-point features; with
``skipconn`` it also receives the structure branch's last hidden layer (the
original's "skip connection" that lets colours follow the shape). The task
picks C and the output activation (sigmoid colours, softmax part scores).

Weight decay as in the original (1e-5 on convolutions, 1e-3 on fully connected
layers) is registered by :mod:`utils.net.layers`; the training graph adds it to the
loss (the original declared it and never used it).
"""

from utils.common.tfv1 import tf
from utils.net import layers

CONV_DECAY = 1e-5
FC_DECAY = 1e-3


def structure_branch(img, n_pts, bottleneck=128, init="he"):
    """Image -> point coordinates.

    Args:
        img: float32 (B, H, W, 3), [0, 1] (or 0..255 with the original's input scaling);
            H, W divisible by 16 (64 in the original).
        n_pts: int, N.
        bottleneck: int, latent size.
        init: 'he' or 'tflearn' (utils.net.layers).
    Returns:
        xyz float32 (B, N, 3) in world units; hidden float32 (B, 128), the last
        hidden layer (fed to the feature branch with skipconn).
    """
    x = img
    for i, (filters, k) in enumerate([(32, 3), (64, 3), (128, 3), (256, 5)]):
        x = layers.conv2d(x, filters, k, strides=2, weight_decay=CONV_DECAY, scope=f"conv{i + 1}", init=init)
    x = layers.fully_connected(x, bottleneck, weight_decay=FC_DECAY, scope="fc1", init=init)
    x = layers.fully_connected(x, 128, weight_decay=FC_DECAY, scope="fc2", init=init)
    hidden = layers.fully_connected(x, 128, weight_decay=FC_DECAY, scope="fc3", init=init)
    # A small output init keeps the first clouds near the object's size.
    xyz = layers.fully_connected(
        hidden, n_pts * 3, activation=None, weight_decay=FC_DECAY, scope="fc_out", init_scale=0.05, init=init
    )
    return tf.reshape(xyz, [-1, n_pts, 3]), hidden


def feature_branch(img, n_pts, n_feat, activation, bottleneck=128, skip=None, init="he"):
    """Image (and optionally the structure's hidden layer) -> per-point features.

    Args:
        img: float32 (B, H, W, 3) (as structure_branch).
        n_pts: int, N. n_feat: int, C (3 for colours, K for part classes).
        activation: 'sigmoid' (applied per value) or 'softmax' (over the C axis).
        skip: float32 (B, D) or None, concatenated before the last two layers.
        init: 'he' or 'tflearn' (utils.net.layers).
    Returns:
        float32 (B, N, C) after the activation.
    """
    y = layers.conv2d(img, 32, 3, strides=2, weight_decay=CONV_DECAY, scope="conv1", init=init)
    y = layers.conv2d(y, 64, 3, strides=2, weight_decay=CONV_DECAY, scope="conv2", init=init)
    y = layers.fully_connected(y, bottleneck, weight_decay=FC_DECAY, scope="fc1", init=init)
    y = layers.fully_connected(y, 128, weight_decay=FC_DECAY, scope="fc2", init=init)
    y = layers.fully_connected(y, 128, weight_decay=FC_DECAY, scope="fc3", init=init)
    if skip is not None:
        y = tf.concat([skip, y], axis=-1)
    y = layers.fully_connected(y, 128, weight_decay=FC_DECAY, scope="fc4", init=init)
    y = layers.fully_connected(
        y, n_pts * n_feat, activation=None, weight_decay=FC_DECAY, scope="fc_out", init_scale=0.1, init=init
    )
    y = tf.reshape(y, [-1, n_pts, n_feat])
    if activation == "sigmoid":
        return tf.nn.sigmoid(y)
    if activation == "softmax":
        return tf.nn.softmax(y, axis=-1)
    raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")


def recon_net(img, n_pts, n_feat, feat_activation, bottleneck=128, skipconn=False, scope="recon_net", init="he"):
    """Both branches under one variable scope (``init``: 'he' or 'tflearn', utils.net.layers).

    Returns:
        xyz float32 (B, N, 3), feat float32 (B, N, C).
    """
    with tf.variable_scope(scope):
        with tf.variable_scope("structure"):
            xyz, hidden = structure_branch(img, n_pts, bottleneck, init)
        with tf.variable_scope("feature"):
            feat = feature_branch(
                img, n_pts, n_feat, feat_activation, bottleneck, skip=hidden if skipconn else None, init=init
            )
    return xyz, feat
