"""The model card's loss curve joins the runs in run order on one step axis."""

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prior_card.py"


def load_script():
    spec = importlib.util.spec_from_file_location("prior_card", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_runs_orders_by_run_number_and_offsets_steps(tmp_path):
    for run, losses in {2: [0.5, 0.4], 10: [0.2, 0.1], 1: [0.9, 0.8]}.items():
        rows = "".join(f"{20 * (i + 1)},{loss},1e-4,0.1,100\r\n" for i, loss in enumerate(losses))
        (tmp_path / f"loss_run{run}.csv").write_text("step,loss,lr,grad_norm,samples_per_s\n" + rows)
    (tmp_path / "unshipped").mkdir()
    (tmp_path / "unshipped" / "loss_run7a.csv").write_text("step,loss,lr,grad_norm,samples_per_s\n20,1,1,1,1\n")

    runs = load_script().load_runs(tmp_path)

    assert [name for name, _, _ in runs] == ["run1", "run2", "run10"]
    np.testing.assert_array_equal(np.concatenate([steps for _, steps, _ in runs]), [20, 40, 60, 80, 100, 120])
    np.testing.assert_array_equal(np.concatenate([loss for _, _, loss in runs]), [0.9, 0.8, 0.5, 0.4, 0.2, 0.1])
