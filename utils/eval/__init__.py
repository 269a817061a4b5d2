"""Evaluation and use of trained models: the metrics run, inference on images and SavedModel export."""
