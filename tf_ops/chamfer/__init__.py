"""Chamfer distance: nearest neighbours between two clouds (nn_distance)."""
