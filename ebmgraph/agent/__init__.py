"""The agent of Figure 2, assembled from compiled parts: Mode-2 planning (§3.1.2, Figure 4)
against real environments (gymnasium, as installed). It sits above ``infer`` and ``train``;
only the CLI, the demo and the benchmarks import it.

* :mod:`.envs` — environments by id, and how a spec's variables meet their spaces (:func:`bind`);
* :mod:`.mpc` — receding-horizon control as a function over explicit state (:func:`plan_step`),
  episodes (:func:`run`);
* :mod:`.collect` — transitions written to ``.npz`` for training world models;
* :mod:`.report` — returns plots, frame strips and GIFs.
"""
from .envs import Binding, EnvMismatch, bind, make_env
from .mpc import (Decision, Episode, Mode1, Planner, PlanError, PlanState, Results, make_planner, plan_step, run,
                  run_episode, shift_plan)

__all__ = ["Binding", "EnvMismatch", "bind", "make_env", "Decision", "Episode", "Mode1", "Planner", "PlanError", "PlanState",
           "Results", "make_planner", "plan_step", "run", "run_episode", "shift_plan"]
