"""Load on the central's read routes from a second process on loopback: sustained rate, latency, errors.

    .venv/bin/python tests/benchmarks/bench_central_load.py [--rate 200] [--duration 60] [--threads 16] [--during-run]

Starts `fedxray-central serve` (SQLite, default settings, access log on) in a temporary home, enrols a
workstation through the API, records a run with rounds and model versions, then sends GET requests at a fixed
rate (open loop: each request has a scheduled start; a request that starts late still counts its lateness)
over keep-alive HTTPS connections: the workstation's status, runs, a run's rounds, model versions, /health.
Prints the achieved rate, latency percentiles and every error; exit code 1 if any request failed.

With --during-run the load runs while a real federated run is in progress: two more workstations enrolled
through the API run real `flower-supernode`s (node authentication, through the central's Fleet proxy) on two
sites made from ../shared/data/cxr, and the central runs FedXray's app (tiny network, 64 px, 200 rounds) started
through POST /api/v1/admin/runs; the load starts once round 1 is recorded, and the rounds recorded during the
load are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests.support.central import CentralProcess  # noqa: E402


def seed(central: CentralProcess) -> tuple[str, int]:
    """Enrol one workstation (returns its credential) and record a run with 10 rounds and 5 versions."""
    token = central.create_token("Load test")
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    public = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    with central.client() as anonymous:
        r = anonymous.post("/api/v1/enrollment", json={"token": token["token"], "public_key": public})
        r.raise_for_status()
        credential = r.json()["credential"]
    with central.client(central.credential("service")) as service:
        run = service.post("/api/v1/runs", json={"num_rounds": 10, "min_sites": 2, "config": {"arch": "tiny"}}).json()
        metrics = {"loss": 0.4, "accuracy": 0.85, "per_class": {c: {"f1": 0.8, "auroc": 0.9} for c in "ABCD"}}
        for n in range(1, 11):
            service.put(f"/api/v1/runs/{run['id']}/rounds/{n}", json={
                "num_sites": 3, "train_metrics": metrics, "evaluate_metrics": metrics}).raise_for_status()
        for n in range(1, 6):
            service.post("/api/v1/models", json={"version": f"r{run['id']}-{n}", "card": {"metrics": metrics},
                                                 "run_id": run["id"], "server_round": n}).raise_for_status()
    return credential, run["id"]


def drive(central: CentralProcess, credential: str, run_id: int, *, rate: float, duration: float,
          threads: int) -> dict:
    """Open-loop GETs at `rate` per second for `duration` seconds across `threads` connections."""
    paths = ["/api/v1/workstation", "/api/v1/runs", f"/api/v1/runs/{run_id}/rounds", "/api/v1/models", "/health"]
    latencies: list[float] = []
    lateness: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    start = time.perf_counter() + 1.0
    total = int(rate * duration)

    def worker(index: int) -> None:
        client = httpx.Client(base_url=central.url, verify=central.ssl_context(), timeout=10,
                              headers={"Authorization": f"Bearer {credential}"})
        mine_lat, mine_late, mine_err = [], [], Counter()
        for i in range(index, total, threads):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            try:
                r = client.get(paths[i % len(paths)])
                if r.status_code != 200:
                    mine_err[f"HTTP {r.status_code} {paths[i % len(paths)]}"] += 1
            except httpx.HTTPError as exc:
                mine_err[type(exc).__name__] += 1
            done = time.perf_counter()
            mine_lat.append(done - sent)
            mine_late.append(done - scheduled)
        client.close()
        with lock:
            latencies.extend(mine_lat)
            lateness.extend(mine_late)
            errors.update(mine_err)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1000

    return {
        "target_rate": rate, "duration_s": round(elapsed, 1), "requests": len(latencies),
        "sustained_rate": round(len(latencies) / elapsed, 1), "errors": sum(errors.values()),
        "error_kinds": dict(errors), "latency_ms": {"p50": round(pct(latencies, 0.50), 1),
                                                    "p95": round(pct(latencies, 0.95), 1),
                                                    "p99": round(pct(latencies, 0.99), 1),
                                                    "max": round(max(latencies) * 1000, 1)},
        "p99_from_schedule_ms": round(pct(lateness, 0.99), 1), "threads": threads,
    }  # fmt: skip


def start_run(central: CentralProcess, folder: Path, procs) -> int:
    """Two SuperNodes enrolled through the API on two sites of the shared data, and a run started through the
    admin route; returns the central's run id once round 1 is recorded."""
    from tests.conftest import shared_data_dir
    from tests.fl.flower_support import NON_IID, flower_env, free_port, make_sites, write_node_config

    sites = make_sites(shared_data_dir() / "cxr", folder / "data", shares=NON_IID, per_class=10, seed=0)
    for name in ("site-a", "site-b"):
        key = ec.generate_private_key(ec.SECP384R1())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()  # fmt: skip
        token = central.create_token(name)
        with central.client() as anonymous:
            anonymous.post("/api/v1/enrollment", json={"token": token["token"], "public_key": public}).raise_for_status()
        key_file = folder / f"{name}.key"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption()))  # fmt: skip
        key_file.chmod(0o600)
        config = write_node_config(folder / f"{name}.toml", **{"data-dir": str(sites[name])})
        procs.start(name, [str(Path(sys.executable).parent / "flower-supernode"), "--superlink", central.fleet_address,
                           "--root-certificates", str(central.ca_cert), "--auth-supernode-private-key", str(key_file),
                           "--node-config", str(config), "--port", str(free_port())], env=flower_env())  # fmt: skip
    with central.client(central.credential("admin")) as admin:
        for _ in range(120):
            if sum(1 for n in admin.get("/api/v1/admin/nodes").json() if n["online"]) >= 2:
                break
            time.sleep(1)
        run = admin.post("/api/v1/admin/runs", json={"settings": {
            "num-server-rounds": 200, "min-sites": 2, "arch": "tiny", "input-size": 64, "round-timeout": 600.0}},
            timeout=300).json()["run"]  # fmt: skip
        for _ in range(600):
            if admin.get(f"/api/v1/runs/{run['id']}/rounds").json():
                return run["id"]
            time.sleep(1)
    raise RuntimeError("round 1 of the run was not recorded within 10 minutes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--during-run", action="store_true", help="load the central while a real run trains")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedxray-load-") as tmp:
        from tests.fl.flower_support import Processes

        central = CentralProcess(Path(tmp) / "home").start()
        procs = Processes(Path(tmp) / "logs")
        try:
            credential, run_id = seed(central)
            live = start_run(central, Path(tmp), procs) if args.during_run else None
            before = len(central.admin_json("run", "status", str(live))["rounds"]) if live else 0
            result = drive(central, credential, run_id, rate=args.rate, duration=args.duration, threads=args.threads)
            if live:
                status = central.admin_json("run", "status", str(live))
                result["during_run"] = {"run": live, "status": status["run"]["status"],
                                        "rounds_recorded_during_load": len(status["rounds"]) - before}  # fmt: skip
                central.admin("run", "stop", str(live), check=False)
        finally:
            procs.stop_all()
            central.stop()
    print(json.dumps(result, indent=2))
    print(f"\n{result['sustained_rate']} req/s sustained for {result['duration_s']} s (target {args.rate}); "
          f"p99 {result['latency_ms']['p99']} ms; errors: {result['errors']}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
