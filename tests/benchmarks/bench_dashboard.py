"""Page load of the central's dashboard: server time and time to charts drawn in a real browser.

    .venv/bin/python tests/benchmarks/bench_dashboard.py [--rounds 100] [--reps 20] [--browser-reps 10]

Starts `fedxray-central serve` (SQLite) in a temporary home, records a finished run with --rounds rounds of
pooled metrics shaped like the ServerApp's (per-class metrics, confusion matrix, AUROC site means) and a model
version per round, five enrolled workstations and an administrator account, then, interleaved:
  - server time: GET of the overview, of the run's page and of its chart data (data.json) over a keep-alive
    HTTPS connection with the session cookie, `--reps` times each (client-measured on loopback);
  - browser: Debian's headless Chromium (Selenium) loads each page `--browser-reps` times; from navigation start
    to the response's end, to DOMContentLoaded, and to the charts drawn (dashboard.js records the moment).
Prints medians and 95th percentiles (JSON).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from fl.classes import CLASSES  # noqa: E402
from tests.support.central import CentralProcess, dashboard_browser  # noqa: E402

PASSWORD = "benchmark password 1"


def pooled(rng: random.Random, r: int, rounds: int) -> dict:
    """Metrics shaped like fl.strategy.pool_validation's, improving with the round."""
    p = 0.3 + 0.5 * r / rounds
    cm = [[int(40 * (p if t == q else (1 - p) / 3)) for q in range(4)] for t in range(4)]
    per_class = {c: {"sensitivity": p + rng.uniform(-.05, .05), "specificity": 0.9, "precision": p, "f1": p,
                     "auroc": None, "support": 40, "auroc_site_weighted_mean": min(1, p + 0.1)} for c in CLASSES}
    return {"loss": 1.4 - p, "accuracy": p, "macro_sensitivity": p, "macro_specificity": 0.9, "macro_precision": p,
            "macro_f1": p - 0.02, "macro_auroc": None, "macro_auroc_site_weighted_mean": min(1, p + 0.1),
            "per_class": per_class, "confusion_matrix": cm, "classes": list(CLASSES), "num_examples": 160,
            "num_sites": 3}  # fmt: skip


def seed(central: CentralProcess, rounds: int) -> int:
    rng = random.Random(0)
    for i in range(5):
        token = central.create_token(f"Site {i}")
        public = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        with central.client() as anonymous:
            anonymous.post("/api/v1/enrollment", json={"token": token["token"], "public_key": public}).raise_for_status()
    with central.client(central.credential("service")) as service:
        run = service.post("/api/v1/runs", json={"num_rounds": rounds, "min_sites": 3,
                                                 "config": {"arch": "tiny", "input-size": 64}}).json()
        service.patch(f"/api/v1/runs/{run['id']}", json={"status": "running"}).raise_for_status()
        for r in range(1, rounds + 1):
            m = pooled(rng, r, rounds)
            service.put(f"/api/v1/runs/{run['id']}/rounds/{r}", json={
                "num_sites": 3, "train_metrics": {"train_loss": m["loss"] - 0.1, "train_accuracy": m["accuracy"] + 0.05,
                                                  "num_examples": 480},
                "evaluate_metrics": m}).raise_for_status()
            service.post("/api/v1/models", json={"version": f"run{run['id']}-round{r}", "run_id": run["id"],
                                                 "server_round": r, "is_best": r == rounds - 3,
                                                 "card": {"metrics": {"validation": m}}}).raise_for_status()
        service.patch(f"/api/v1/runs/{run['id']}", json={"status": "finished"}).raise_for_status()
    central.admin("admin", "create", "bench", "--password-stdin", input_text=f"{PASSWORD}\n")
    return run["id"]


def signed_in(central: CentralProcess) -> httpx.Client:
    client = httpx.Client(base_url=central.url, verify=central.ssl_context(), timeout=30)
    page = client.get("/dashboard/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/dashboard/sign-in", data={"csrf": csrf, "name": "bench", "password": PASSWORD})
    assert r.status_code == 303, r.text[:300]
    return client


def stats(values: list[float]) -> dict:
    values = sorted(values)
    return {"median_ms": round(statistics.median(values), 1),
            "p95_ms": round(values[min(len(values) - 1, int(0.95 * len(values)))], 1), "n": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--browser-reps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedxray-dash-") as tmp:
        central = CentralProcess(Path(tmp) / "home").start()
        try:
            run_id = seed(central, args.rounds)
            pages = {"overview": "/dashboard/", "run": f"/dashboard/runs/{run_id}",
                     "run data.json": f"/dashboard/runs/{run_id}/data.json"}
            server: dict[str, list[float]] = {k: [] for k in pages}
            sizes = {}
            client = signed_in(central)
            try:
                for path in pages.values():
                    client.get(path)  # warm up
                for _ in range(args.reps):
                    for name, path in pages.items():
                        t0 = time.perf_counter()
                        r = client.get(path)
                        server[name].append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, (path, r.status_code)
                        sizes[name] = len(r.content)
            finally:
                client.close()
            browser = dashboard_browser(central, Path(tmp) / "profile")
            timings: dict[str, dict[str, list[float]]] = {}
            try:
                browser.get(central.url + "/dashboard/sign-in")
                browser.find_element("id", "name").send_keys("bench")
                browser.find_element("id", "password").send_keys(PASSWORD)
                browser.find_element("css selector", "form button[type=submit]").click()
                time.sleep(1)
                for _ in range(args.browser_reps):
                    for name in ("overview", "run"):
                        browser.get(central.url + pages[name])
                        for _ in range(200):
                            drawn = browser.execute_script("return window.fedxrayChartsDrawnAt || null")
                            if drawn:
                                break
                            time.sleep(0.05)
                        nav = browser.execute_script(
                            "var n = performance.getEntriesByType('navigation')[0];"
                            "return [n.responseEnd, n.domContentLoadedEventEnd];")
                        points = browser.execute_script("var c = window.fedxrayCharts.accuracy; return c ? c.data[0].length : 0")
                        assert points == args.rounds, points  # both pages chart the 100-round run
                        t = timings.setdefault(name, {"response_end": [], "dom_content_loaded": [], "charts_drawn": []})
                        t["response_end"].append(nav[0])
                        t["dom_content_loaded"].append(nav[1])
                        t["charts_drawn"].append(drawn)
            finally:
                browser.quit()
        finally:
            central.stop()
    result = {"rounds": args.rounds, "server": {k: {**stats(v), "bytes": sizes[k]} for k, v in server.items()},
              "browser": {k: {m: stats(v) for m, v in t.items()} for k, t in timings.items()}}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
