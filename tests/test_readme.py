"""Every command in README.md and docs/*.md runs as written after ``make demo`` (issue 10 #12).

The shell blocks (```sh) are run line by line with bash from a scratch directory that holds
``specs/``, ``examples/`` and ``.venv`` (links to this checkout and to the running environment),
so a command that assumes an activated virtual environment, or a file that is not there, fails
here. Only sizes are made small: ``--epochs N`` becomes ``--epochs 2`` and a torchrun line gets
``--epochs 1`` and a free port; ``--episodes N`` becomes 1, ``collect --steps N`` 300, and a
``plan`` line stops its episode after 5 steps. ``make demo`` / ``make test`` (the quick start) are what runs
this suite and are not run again. Python blocks run as scripts from the same directory; the
listing of generated code in docs/spec-format.md is compared with what ``--emit python`` prints.
"""
from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV = Path(sys.prefix)
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(path: Path, lang: str) -> list[str]:
    return [body for tag, body in FENCE.findall(path.read_text()) if tag == lang]


def shell_lines(path: Path) -> list[str]:
    """The commands of a file's ```sh blocks: continuation lines joined, comments dropped."""
    out = []
    for body in blocks(path, "sh"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(re.sub(r"\s+", " ", line))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small(cmd: str) -> str:
    """The same command at a small size (fewer epochs, episodes, steps); nothing else changes."""
    cmd = re.sub(r"--epochs \d+", "--epochs 2", cmd)
    cmd = re.sub(r"--episodes \d+", "--episodes 1", cmd)
    cmd = re.sub(r"collect (.*?)--steps \d+", r"collect \1--steps 300", cmd)
    if " plan " in cmd:
        cmd += " --max-steps 5 --no-frames"
    if "/torchrun " in cmd:
        cmd = cmd.replace("/torchrun ", f"/torchrun --master_port {_free_port()} ", 1)
        if "--epochs" not in cmd:
            cmd += " --epochs 1"
    return cmd


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    if not (VENV / "bin" / "ebmgraph").exists():
        pytest.skip(f"{VENV} has no ebmgraph script (run the suite with make test)")
    d = tmp_path_factory.mktemp("readme")
    for name in ("specs", "examples"):
        (d / name).symlink_to(ROOT / name)
    (d / ".venv").symlink_to(VENV)
    return d


COMMANDS = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in shell_lines(p) if not c.startswith("make ")]


def test_the_docs_have_commands_and_the_quick_start_is_two_make_lines():
    readme = shell_lines(ROOT / "README.md")
    assert readme[:2] == ["make demo", "make test"]
    assert len(COMMANDS) >= 8, COMMANDS
    # a command that works only in an activated environment fails as written after make demo
    bare = [c for _, c in COMMANDS if not c.startswith(".venv/bin/")]
    assert not bare, f"commands that need an activated venv: {bare}"


DOCS_WITH_COMMANDS = sorted({d for d, _ in COMMANDS})


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS)
def test_shell_commands_run_as_written_in_order(scratch, doc):
    """A document's commands in its order, in one directory: later lines use what earlier ones wrote
    (collect -> train -> plan --weights)."""
    ran = 0
    for d, cmd in COMMANDS:
        if d != doc:
            continue
        words = shlex.split(cmd)
        if shutil.which("dot") is None and any(w.endswith((".svg", ".png", ".pdf")) for w in words):
            continue  # graphviz's dot is not installed (make test installs it where it can)
        r = subprocess.run(small(cmd), shell=True, executable="/bin/bash", cwd=scratch, capture_output=True,
                           text=True, timeout=600,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(scratch), "OMP_NUM_THREADS": "1",
                                "TRITON_INTERPRET": "1", "MPLBACKEND": "Agg"})
        assert r.returncode == 0, f"{doc}: `{cmd}` exited {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-2500:]}"
        ran += 1
    assert ran


PY_BLOCKS = [(p.relative_to(ROOT).as_posix(), i, b) for p in DOCS for i, b in enumerate(blocks(p, "python"))
             if not b.startswith("def forward(")]


@pytest.mark.parametrize("doc,i,code", PY_BLOCKS, ids=[f"{d}#{i}" for d, i, _ in PY_BLOCKS])
def test_python_block_runs_as_written(scratch, doc, i, code):
    script = scratch / f"block_{Path(doc).stem}_{i}.py"
    script.write_text(code)
    r = subprocess.run([str(VENV / "bin" / "python"), script.name], cwd=scratch, capture_output=True, text=True,
                       timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(scratch), "OMP_NUM_THREADS": "1",
                                         "TRITON_INTERPRET": "1"})
    assert r.returncode == 0, f"{doc} python block {i} failed:\n{r.stderr[-2500:]}"


def test_the_listed_generated_code_is_what_emit_python_prints():
    from ebmgraph.cli import main

    listings = [b for b in blocks(ROOT / "docs" / "spec-format.md", "python") if b.startswith("def forward(")]
    assert len(listings) == 1
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["compile", str(ROOT / "specs" / "fig04_mode2.yaml"), "--emit", "python"]) == 0
    assert listings[0].strip() in buf.getvalue()
