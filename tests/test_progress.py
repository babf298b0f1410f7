"""The driver's progress lines for a Ray Train fit: rank 0 posts its steps to a small actor from a
Ray worker process, and the driver logs each quarter (worker logs do not reach the driver)."""

import logging
import time


def test_steps_posted_from_a_worker_reach_the_driver_log_by_quarter(ray_session, caplog):
    import ray

    from coevo_ray.progress import report_step, train_progress

    @ray.remote(num_cpus=0)
    def rank0(board, steps: int) -> None:
        for step in range(1, steps + 1):
            report_step(board, step, steps)
            time.sleep(0.5)

    with caplog.at_level(logging.INFO, logger="coevo_ray.progress"):
        with train_progress("DPO", poll_s=0.1) as board:
            ray.get(rank0.remote(board, 8))
    lines = [r.getMessage() for r in caplog.records if r.name == "coevo_ray.progress"]
    assert len(lines) == 3, lines
    for quarter, line in enumerate(lines, 1):
        done = int(line.split(": ")[1].split("/")[0])
        assert line.startswith(f"DPO: {done}/8 steps (") and 4 * done // 8 == quarter, lines
        assert "s left" in line

    # The actor is gone once the fit is: a late post neither waits nor raises, nor does one
    # without a handle (a trainer run outside fit_and_export).
    report_step(board, 9, 8)
    report_step(None, 1, 8)
