"""examples/cluster.py submitted unchanged as a Ray job to a real two-node cluster: `ray start
--head` plus a second raylet joined with `ray start --address`, one CPU each, so the two Ray
Train workers can only run one per node; Ray Train's storage is the run directory both nodes share."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from coevo_ray.testing import checkpoint_dirs, read_jsonl

REPO = Path(__file__).resolve().parents[1]


_GIVEN: set[int] = set()


def _free_port() -> int:
    """A port free on every interface (the session's Ray binds some ports to the node IP only, and
    gRPC servers share ports through SO_REUSEPORT), never handed out twice."""
    while True:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def test_cluster_script_as_ray_job(tmp_path):
    texts, labels = read_jsonl("clinc_domain.jsonl", n=24, seed=3)
    data = tmp_path / "shared"  # the input as two shards in a directory both nodes read (Ray Data)
    data.mkdir()
    for part in (0, 1):
        (data / f"part-{part}.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in
                                                         zip(texts[part * 12:][:12], labels[part * 12:][:12])))
    out = tmp_path / "out"
    bindir = str(Path(sys.executable).parent)
    # Ray >= 2.59 turns token auth on for clusters started locally; the CLI client must opt in
    # too (it reads the token `ray start` wrote to ~/.ray/auth_token). Every client call is a CLI
    # subprocess: setting RAY_AUTH_MODE in this process would reach the test session's own Ray
    # connection (seen: the session's driver lost its GCS while this test ran).
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
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
        def cli(*args: str, stderr: bool = False) -> str:
            done = subprocess.run(ray + list(args), env=env, capture_output=True, text=True, timeout=120)
            return (done.stdout + (done.stderr if stderr else "")) if done.returncode == 0 else ""

        def run_job(*script_args: str) -> str:
            """Submit examples/cluster.py with these arguments; wait for it; its log."""
            sid = f"coevo-test-{os.getpid()}-{time.time_ns()}"
            cmd = ray + ["job", "submit", "--address", address, "--submission-id", sid, "--no-wait",
                         "--working-dir", str(REPO), "--", "python", "examples/cluster.py", *script_args]

            def status() -> str:  # "" while the job is not known (yet)
                # `ray job status` logs "Status for job '<id>': RUNNING", or "Job '<id>' succeeded /
                # failed / was stopped" once it has ended.
                lines = [line for line in cli("job", "status", sid, "--address", address, stderr=True).splitlines()
                         if "Status for job" in line or f"Job '{sid}'" in line]
                found = re.findall(r"\b(PENDING|RUNNING|SUCCEEDED|FAILED|STOPPED)\b", " ".join(lines).upper())
                return found[0] if found else ""

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
            log = cli("job", "logs", sid, "--address", address)
            assert final == "SUCCEEDED", (final, sub.stdout[-2000:], sub.stderr[-2000:], log[-4000:])
            return log

        log = run_job("--input", str(data), "--label-field", "label", "--task", "utterance scenario: life scenario",
                      "--k", str(len(set(labels))), "--max-tokens", "24", "--iterations", "0", "--output-dir", str(out))
        assert "iteration 0: ACC" in log
        assignments = (out / "assignments.jsonl").read_text().splitlines()
        assert len(assignments) == 24
        summary = json.loads((out / "summary.json").read_text())
        assert summary["history"][0]["iteration"] == 0 and "acc" in summary["history"][0]
        embedder = summary["history"][0]["embedder"]
        assert embedder["world_size"] == 2  # Ray Train ran inside the job ...
        assert len(set(embedder["rank_nodes"])) == 2, embedder["rank_nodes"]  # ... one worker per node
        nodes = json.loads(cli("list", "nodes", "--format", "json", "--address", address) or "[]")
        assert len([n for n in nodes if n["state"] == "ALIVE"]) == 2, nodes
        actors = json.loads(cli("list", "actors", "--detail", "--limit", "1000", "--format", "json", "--address",
                                address) or "[]")
        placed = {(a["class_name"], a["node_id"]) for a in actors if "UDF" in (a.get("class_name") or "")}
        print("stage actors (class, node):", sorted(placed))
        assert {c for c, _ in placed} >= {"MapWorker(MapBatches(InterpretUDF))", "MapWorker(MapBatches(EmbedUDF))"}
        # Ray Train used the run directory's shared storage: its record of the embedder fit lists
        # the checkpoint written there, deleted once the fit was exported into its stage.
        [run] = [p for p in (out / "ray_train").iterdir() if p.name.startswith("embedder-")]
        snapshot = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
        assert snapshot.get("checkpoint_results"), snapshot
        assert not checkpoint_dirs(out / "ray_train")
        # The assignments as Parquet shards written by Ray Data inside the job, in the run directory.
        table = pq.read_table(out / "assignments.parquet").sort_by("id")
        assert table.column("id").to_pylist() == list(range(24)) and table.column("text").to_pylist() == texts
        assert table.column("cluster").to_pylist() == [json.loads(line)["cluster"] for line in assignments]
        assert {"distance", "cluster_name"} <= set(table.column_names)
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
