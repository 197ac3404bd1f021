"""Every unfinished run a job on submitit, on this machine's GPUs or a Slurm cluster: `launch`."""
