"""Fused mask and feature projections of point clouds, and pixel_nearest (the backward affinity's nearest point)."""
