"""Training: the `train` stage, the loop, its schedule, checkpoints, the recipes' SGD and the speed knobs."""
