"""`ebmgraph demo --quick`: the main job runs end to end and its report says what it did."""
import json

from conftest import SPECS

from ebmgraph.demo import main_demo


def test_quick_demo_writes_a_report(tmp_path):
    summary = main_demo(tmp_path, seed=0, quick=True)
    report = (tmp_path / "README.md").read_text()
    assert all(p.name in report for p in SPECS)
    assert all(row["max_diff"] < 1e-9 for row in summary["specs"])  # compiled == reference, float64
    for method, row in summary["planning"].items():
        assert row["after"] < row["before"], method
    assert "linear-probe accuracy" in report
    assert json.loads((tmp_path / "summary.json").read_text())["specs"]
    # the agent acted in Pendulum-v1 and did better than zero torque on the same seed
    agent = summary["agent"]
    assert agent["episodes"] == 1 and agent["lengths"] == [200]
    assert agent["mean_return"] > agent["zero_torque_mean_return"] + 100
    for name in ("returns.png", "episode0_frames.png", "episode0.gif"):
        assert (tmp_path / "agent" / name).stat().st_size > 1000
        assert f"agent/{name}" in report


