"""examples/cluster.py submitted unchanged as a Ray job to a real two-node cluster: `ray start
--head` plus a second raylet joined with `ray start --address`, one CPU each, so the two Ray
Train workers can only run one per node; checkpoints go to the run directory both nodes share."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from tests.conftest import read_jsonl

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cluster_script_as_ray_job(tmp_path, monkeypatch):
    texts, labels = read_jsonl("clinc_domain.jsonl", n=24, seed=3)
    data = tmp_path / "small.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)))
    out = tmp_path / "out"
    bindir = str(Path(sys.executable).parent)
    # Ray >= 2.59 turns token auth on for clusters started locally; the CLI client must opt in
    # too (it reads the token `ray start` wrote to ~/.ray/auth_token).
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # for the SDK client below
    port, dash = _free_port(), _free_port()
    # Every port explicit: the test session's own Ray (ray.init) already holds the defaults, and
    # a head whose dashboard agent cannot bind never registers ("No available agent").
    def node_ports(*names: str) -> list[str]:
        return [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                      "metrics-export-port", "runtime-env-agent-port",
                                                      "node-manager-port", "object-manager-port", *names)]

    temp_dir = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")  # short: Ray's socket paths are length-limited
    worker_temp_dir = tempfile.mkdtemp(prefix="rayjobw", dir="/tmp")
    ray = [os.path.join(bindir, "ray")]
    start_log = open(tmp_path / "ray-start.log", "w")
    # Creates ~/.ray/auth_token only when none exists (a fresh machine that never ran Ray).
    subprocess.run(ray + ["get-auth-token", "--generate"], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    subprocess.run(ray + ["start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=true",
                          f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--disable-usage-stats",
                          f"--temp-dir={temp_dir}", *node_ports("ray-client-server-port")],
                   # A file, not a pipe: the daemons inherit these handles and block once a pipe fills.
                   check=True, env=env, stdout=start_log, stderr=subprocess.STDOUT, timeout=180)
    try:
        joined = subprocess.run(ray + ["start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                                       "--disable-usage-stats", f"--temp-dir={worker_temp_dir}", *node_ports()],
                                env=env, stdout=start_log, stderr=subprocess.STDOUT, timeout=180)
        assert joined.returncode == 0, (tmp_path / "ray-start.log").read_text()[-3000:]
        address = f"http://127.0.0.1:{dash}"
        for _ in range(30):  # the dashboard's job API comes up a little after `ray start` returns
            probe = subprocess.run(ray + ["job", "list", "--address", address], env=env, capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(2)
        sid = f"coevo-test-{os.getpid()}-{int(time.time())}"
        cmd = ray + ["job", "submit", "--address", address, "--submission-id", sid, "--no-wait",
                     "--working-dir", str(REPO), "--",
                     "python", "examples/cluster.py", "--input", str(data), "--label-field", "label",
                     "--task", "utterance scenario: life scenario", "--k", str(len(set(labels))),
                     "--max-tokens", "24", "--iterations", "0", "--output-dir", str(out)]

        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(address)

        def status() -> str:
            try:
                return str(client.get_job_status(sid).value)
            except Exception:  # not known (yet)
                return ""

        # The job agent registers a few seconds after the dashboard, and a busy 2-core head can
        # answer "No available agent" even after accepting the job: resubmit only if it is unknown.
        for _ in range(20):
            sub = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            if sub.returncode == 0 or status():
                break
            time.sleep(3)
        assert status(), f"job never accepted: {sub.stdout[-2000:]} {sub.stderr[-2000:]}"
        deadline = time.time() + 900
        while status() not in ("SUCCEEDED", "FAILED", "STOPPED") and time.time() < deadline:
            time.sleep(5)
        final = status()
        log = client.get_job_logs(sid)
        assert final == "SUCCEEDED", (final, sub.stdout[-2000:], sub.stderr[-2000:], log[-4000:])
        assert "iteration 0: ACC" in log
        assignments = (out / "assignments.jsonl").read_text().splitlines()
        assert len(assignments) == 24
        summary = json.loads((out / "summary.json").read_text())
        assert summary["history"][0]["iteration"] == 0 and "acc" in summary["history"][0]
        embedder = summary["history"][0]["embedder"]
        assert embedder["world_size"] == 2  # Ray Train ran inside the job ...
        assert len(set(embedder["rank_nodes"])) == 2, embedder["rank_nodes"]  # ... one worker per node
        from ray.util.state import list_actors, list_nodes

        assert len([n for n in list_nodes(address=f"127.0.0.1:{port}") if n.state == "ALIVE"]) == 2
        placed = {(a.class_name, a.node_id) for a in list_actors(address=f"127.0.0.1:{port}", limit=1000, detail=True)
                  if "UDF" in (a.class_name or "")}
        print("stage actors (class, node):", sorted(placed))
        assert {c for c, _ in placed} >= {"MapWorker(MapBatches(InterpretUDF))", "MapWorker(MapBatches(EmbedUDF))"}
        assert list((out / "ray_train").rglob("checkpoint_*"))  # the shared storage path holds the checkpoints
    finally:
        _stop_cluster(temp_dir, worker_temp_dir)
        start_log.close()


def _stop_cluster(*temp_dirs: str) -> None:
    """Stop only this test's cluster (`ray stop` would also stop the test session's Ray)."""
    import psutil

    procs = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(t in part for part in (p.info["cmdline"] or []) for t in temp_dirs):
                procs.append(p)
        except psutil.Error:
            continue
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    if os.environ.get("COEVO_KEEP_RAY_TMP") != "1":
        for t in temp_dirs:
            shutil.rmtree(t, ignore_errors=True)
