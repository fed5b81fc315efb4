"""Quick start: load a spec, check it, evaluate its energy, print the generated code.

Run: .venv/bin/python examples/quickstart.py [SPEC]
"""
import sys

import torch

import ebmgraph

path = sys.argv[1] if len(sys.argv) > 1 else "specs/fig12_jepa.yaml"
graph = ebmgraph.load(path)
checked = ebmgraph.check(graph)
print(checked.summary())
for w in checked.warnings:
    print("warning:", w)

ebm = ebmgraph.compile(graph, seed=0)
inputs = ebm.random_inputs(batch=4, seed=0)
with torch.no_grad():
    result = ebm.energy(**inputs)
print("total energy [B]:", result.total)
for name, value in result.terms.items():
    print(f"  {name}: {value}")
print(ebm.code)
