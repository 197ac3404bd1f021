"""params.yaml: its schema, one run's resolved config, the smoke profile and the `validate` stage."""
from .resolve import RunConfig, not_run_reason, run_config
from .schema import Params, Speed, load_params

__all__ = ["Params", "RunConfig", "Speed", "load_params", "not_run_reason", "run_config"]
