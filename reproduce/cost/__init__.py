"""What the study costs and how fast it runs: `plan`, `bench` (CPU or GPU) and `gpu-check`."""
