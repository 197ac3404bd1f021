"""From runs to verdicts: the paper's numbers, the seeds' statistics, each cell's and each claim's verdict."""
