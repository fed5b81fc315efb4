"""Minimize a small quadratic energy with every continuous method and compare to the closed form.

E(x, y, z) = ||y - Pred(x, z)||² + ½||z||² with a fixed linear predictor: the minimizer
solves a 2×2 linear system (§4.2, eq. 4), and F_β has a Gaussian-integral closed form.

Run:  python examples/infer_quadratic.py
"""
import math

import torch

import ebmgraph
from ebmgraph.infer import free_energy, minimize

SPEC = """
name: quad
variables:
  x: {observed: [2]}
  y: {observed: [3]}
  z: {latent: [2]}
modules:
  Pred: fixed(linear(4, 3))
energy:
  D: sq_dist(y, Pred(x, z))
  R: 0.5 * l2(z)
"""


def main():
    ebm = ebmgraph.compile(SPEC, seed=0).double()
    obs = ebm.random_inputs(1, seed=0, only=["x", "y"])
    W, b = ebm.mods["Pred"].lin.weight.detach(), ebm.mods["Pred"].lin.bias.detach()
    Wx, Wz = W[:, :2], W[:, 2:]
    H = 2 * (Wz.T @ Wz) + torch.eye(2, dtype=torch.float64)  # Hessian of E in z
    r = obs["y"][0] - Wx @ obs["x"][0] - b
    z_star = torch.linalg.solve(H, 2 * Wz.T @ r)
    print("closed form z* =", z_star.tolist())
    for method, kw in [("gradient", {}), ("gradient", {"optimizer": "adam"}), ("cem", {}), ("mppi", {"sigma_decay": 0.9})]:
        res = minimize(ebm, obs, over=["z"], method=method, **kw)
        err = float((res.values["z"][0] - z_star).norm() / z_star.norm())
        print(f"{res.method:<16} z = {[round(v, 6) for v in res.values['z'][0].tolist()]}  rel. error {err:.1e}")
    beta = 2.0
    e_min = float(ebm.energy(**obs, z=z_star[None]).total[0])
    closed = e_min - (math.log(2 * math.pi / beta) - 0.5 * math.log(float(torch.det(H)))) / beta
    print(f"F_beta (beta={beta}): importance sampling {float(free_energy(ebm, obs, ['z'], beta=beta)[0]):.6f}, "
          f"closed form {closed:.6f}")


if __name__ == "__main__":
    main()
