"""Training: the shared flags and presets (config), the experiment folder (snapshots, lock), the loop."""
