"""The paper's renderer: cameras and the differentiable mask and feature projections of point clouds."""
