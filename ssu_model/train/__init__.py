"""Training: the fit loop, checkpoints, distributed data parallel helpers."""
