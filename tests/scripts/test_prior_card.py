"""The model card's figures from the loss logs: the curve joins the runs in run order, the table's times are exact."""

import numpy as np
import pytest

from helpers import load_script


def prior_card():
    return load_script("prior_card")


def test_load_runs_orders_by_run_number_and_offsets_steps(tmp_path):
    for run, losses in {2: [0.5, 0.4], 10: [0.2, 0.1], 1: [0.9, 0.8]}.items():
        rows = "".join(f"{20 * (i + 1)},{loss},1e-4,0.1,100\r\n" for i, loss in enumerate(losses))
        (tmp_path / f"loss_run{run}.csv").write_text("step,loss,lr,grad_norm,samples_per_s\n" + rows)
    (tmp_path / "unshipped").mkdir()
    (tmp_path / "unshipped" / "loss_run7a.csv").write_text("step,loss,lr,grad_norm,samples_per_s\n20,1,1,1,1\n")

    runs = prior_card().load_runs(tmp_path)

    assert [name for name, _, _ in runs] == ["run1", "run2", "run10"]
    np.testing.assert_array_equal(np.concatenate([steps for _, steps, _ in runs]), [20, 40, 60, 80, 100, 120])
    np.testing.assert_array_equal(np.concatenate([loss for _, _, loss in runs]), [0.9, 0.8, 0.5, 0.4, 0.2, 0.1])


def test_run_summary_splits_compile_warm_up_from_training_time(tmp_path):
    log = tmp_path / "loss_run3b.csv"
    log.write_text("step,loss,lr,grad_norm,samples_per_s\n20,0.3,1,1,10\n40,0.2,1,1,640\n80,0.1,1,1,1280\n")

    summary = prior_card().run_summary(log, batch=128, last=2)

    # 20 steps of 128 at 10 samples/s; then 20 x 128 / 640 + 40 x 128 / 1280 = 8 s
    assert summary == {"steps": 80, "warmup_s": 256.0, "train_min": 8 / 60, "median_samples_per_s": 960.0,
                       "loss_last": pytest.approx(0.15)}


def test_a_misnamed_loss_log_is_refused_with_its_name(tmp_path):
    (tmp_path / "loss_run_final.csv").write_text("step,loss,lr,grad_norm,samples_per_s\n20,1,1,1,1\n")

    with pytest.raises(SystemExit, match="loss_run_final.csv.*loss_run<N>.csv"):
        prior_card().load_runs(tmp_path)


def test_a_log_without_throughput_is_refused(tmp_path):
    log = tmp_path / "loss_run1.csv"
    log.write_text("step,loss\n20,1\n")

    with pytest.raises(SystemExit, match="no column samples_per_s"):
        prior_card().run_summary(log, batch=128)
