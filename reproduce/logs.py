"""Training curves in DVC's format, written by DVCLive: `CURVES/plots/metrics/**.tsv`, one row per point.

The points logged so far travel in the checkpoint: a resumed run replays them and goes on, so its
curves are whole and no step appears twice, whatever DVC removed before rerunning the stage.
"""
from pathlib import Path


class Curves:
    def __init__(self, directory: Path, history=()):
        from dvclive import Live  # here: importing it takes ~0.6 s that `bench` and `plan` don't need
        # dvcyaml=False: runs live inside matrix stages, whose outputs dvc.yaml declares itself.
        self.live = Live(str(directory), resume=False, save_dvc_exp=False, dvcyaml=False, report=None)
        self.history = []
        for step, values in history:
            self.log(step, values)

    def log(self, step: int, values: dict):
        self.history.append((step, dict(values)))
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, value)
