"""ebmgraph's benchmarks (never tests): each prints one table, measured side by side in one run.

Not installed with the package; run from a checkout, through the CLI (``ebmgraph bench WHAT``) or
``python -m benchmarks WHAT``:

* ``suite.py``: ``compiler``, ``scaling``, ``mpc`` and the registry of the rest;
* ``rollout.py``: the fused Triton rollout kernels against eager / torch.compile / pytorch-mppi;
* ``planners.py``: MCTS against mctx, CEM/MPPI against plain loops and pytorch-mppi;
* ``mppi_step.py``: how far one compiled predictor step goes on this CPU (a script).
"""
