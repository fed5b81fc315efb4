"""Specs the agent's demo and benchmarks use, embedded so an installed package needs no checkout
(each equals its copy in examples/specs/, which a test checks)."""

PENDULUM_MPC = """\
# Mode-2 planning (§3.1.2, Figure 4) on gymnasium's Pendulum-v1 with its true dynamics:
# s[0] is the observation [cos θ, sin θ, θ̇], s[t+1] = F(s[t], a[t]) the env's own equations
# (ebmgraph/dynamics.py, tested against gymnasium), and the energy the env's cost, summed over
# the horizon: minimizing it over a[0..T-1] maximizes the planned return.
#   .venv/bin/ebmgraph plan examples/specs/pendulum_mpc.yaml --env Pendulum-v1 --method mppi \\
#       --set sigma=1.5 --set temperature=0.1 --episodes 20
name: pendulum_mpc
figure: 4
index: {t: 0..T-1}
sizes: {T: 20}
variables:
  x: {observed: [3]}
  a[t]: {action: [1], bounds: [-2, 2]}
modules:
  F: fixed(pendulum)
  C: pendulum_cost
functions:
  s[0]: identity(x)
  s[t+1]: F(s[t], a[t])
energy:
  cost[t]: C(s[t], a[t])
"""
