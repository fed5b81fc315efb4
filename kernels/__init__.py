from .rollout import (  # noqa: F401  (no kernel launch at import time)
    MLPPredictor,
    RolloutCost,
    dispatch,
    mlp_rollout,
    mlp_rollout_reference,
    supports,
)
from .mppi import PlanResult, plan_cem, plan_mppi  # noqa: F401
