"""Real Flower processes on loopback for tests and benchmarks: non-IID site folders, a test CA, a SuperLink,
SuperNodes and `flwr run`, each started in its own process group and always stopped."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import ipaddress
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from fl.classes import CLASSES
from fl.processes import descendants
from fl.processes import flower_env as _flower_env

BIN = Path(sys.executable).parent
# Share of each class's patients that goes to each site; site-c has no Covid images at all.
NON_IID = {
    "site-a": {"Covid": 0.6, "Normal": 0.2, "Pneumonia-Bacterial": 0.5, "Pneumonia-Viral": 0.2},
    "site-b": {"Covid": 0.4, "Normal": 0.3, "Pneumonia-Bacterial": 0.2, "Pneumonia-Viral": 0.5},
    "site-c": {"Covid": 0.0, "Normal": 0.5, "Pneumonia-Bacterial": 0.3, "Pneumonia-Viral": 0.3},
}


def flower_env(**extra: str) -> dict[str, str]:
    """fl.processes.flower_env for test processes (oneDNN's banner off too)."""
    return _flower_env(**{"TF_ENABLE_ONEDNN_OPTS": "0", **extra})


def make_sites(cxr: Path, out: Path, *, shares: dict | None = None, per_class: int | None = None,
               seed: int = 0) -> dict[str, Path]:  # fmt: skip
    """Class-folder sites (symlinks + manifest.csv) from the shared set, whole patients per site.

    `per_class` limits the number of patients taken from each class (small sets for fast tests).
    """
    shares = shares or NON_IID
    with open(cxr / "manifest.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    patients: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        patients[r["class"]][r["patient_id"]].append(r["filename"])
    rng = random.Random(seed)
    sites = {name: out / name for name in shares}
    manifests: dict[str, list[tuple[str, str]]] = {name: [] for name in shares}
    for cls in CLASSES:
        ids = sorted(patients[cls])
        rng.shuffle(ids)
        if per_class:
            ids = ids[:per_class]
        start = 0
        names = list(shares)
        for i, name in enumerate(names):
            n = len(ids) - start if i == len(names) - 1 else round(shares[name][cls] * len(ids))
            if shares[name][cls] == 0:
                n = 0
            for pid in ids[start:start + n]:
                for fname in patients[cls][pid]:
                    target = sites[name] / fname
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if not target.exists():
                        target.symlink_to(cxr / fname)
                    manifests[name].append((fname, pid))
            start += n
    for name, entries in manifests.items():
        sites[name].mkdir(parents=True, exist_ok=True)
        with open(sites[name] / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["filename", "patient_id"])
            w.writerows(entries)
    return sites


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def make_test_ca(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for localhost/127.0.0.1 (PEM files in `folder`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())  # fmt: skip

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FedXray test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(pem_key(key))
    os.chmod(paths["key"], 0o600)
    return paths


def _kill_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class Processes:
    """Processes started for one test, each in its own session; stop_all() ends every one (and its children)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str], *, env: dict | None = None, cwd: Path | None = None
              ) -> subprocess.Popen:  # fmt: skip
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env or flower_env(), cwd=cwd, start_new_session=True)  # fmt: skip
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            family = descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            _kill_pids(family, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def stop_all(self) -> None:
        family = [p for proc in self.procs.values() if proc.poll() is None for p in descendants(proc.pid)]
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():  # the process group: ClientApps/ServerApps the Flower processes started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        _kill_pids(family, signal.SIGKILL)  # SuperExec, ServerApp and ClientApp processes in their own sessions


def superlink_cmd(port: int, *, tls: dict[str, Path] | None, database: Path | None = None) -> list[str]:
    cmd = [str(BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(port),
           "--disable-runtime-dependency-installation"]  # fmt: skip
    if tls:
        cmd += ["--ssl-ca-certfile", str(tls["ca"]), "--ssl-certfile", str(tls["cert"]), "--ssl-keyfile", str(tls["key"])]
    else:
        cmd.append("--insecure")
    if database:
        cmd += ["--database", str(database)]
    return cmd


def supernode_cmd(superlink_port: int, runtime_port: int, node_config: Path, *, ca: Path | None) -> list[str]:
    cmd = [str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{superlink_port}",
           "--port", str(runtime_port), "--node-config", str(node_config)]  # fmt: skip
    cmd += ["--root-certificates", str(ca)] if ca else ["--insecure"]
    return cmd


def write_node_config(path: Path, **values: str) -> Path:
    """A node-config TOML file (the form `flower-supernode --node-config` reads for paths with any characters)."""
    import tomli_w

    path.write_text(tomli_w.dumps(values), encoding="utf-8")
    return path


def write_flwr_config(flwr_home: Path, port: int, *, ca: Path | None) -> None:
    """$FLWR_HOME/config.toml with the connection tests.support.launch uses (named there CONNECTION)."""
    from tests.support.launch import write_connection

    write_connection(flwr_home, f"127.0.0.1:{port}", root_certificates=ca)


# ---------------------------------------------------------------- metrics of a round, recomputed in the test
def predict_folder_samples(model, samples, *, input_size: int, scaling: str, batch_size: int = 16):
    """(labels, probabilities) of `model` on `samples`, each image read and scaled by fl.preprocess as inference
    does, in batches (not through the training input pipeline the sites and the server use)."""
    import numpy as np

    from fl.preprocess import load_for_model

    probs = []
    for i in range(0, len(samples), batch_size):
        x = np.stack([load_for_model(s.path, input_size=input_size, scaling=scaling)
                      for s in samples[i:i + batch_size]])  # fmt: skip
        probs.append(np.asarray(model(x, training=False), np.float64))
    return np.array([s.label for s in samples]), np.concatenate(probs)


def load_as_sent(model_dir, downlink: str = "float32"):
    """A saved global model as the sites received it: every float array rounded to float16 for a float16
    downlink (the strategy sends float16 when transfer-dtype is float16 or int8)."""
    import numpy as np

    from fl.modelfile import load_model

    model, card = load_model(model_dir)
    if downlink == "float16":
        model.set_weights([w.astype(np.float16).astype(np.float32) for w in model.get_weights()])
    return model, card


def pairwise_auroc(scores, positive) -> float | None:
    """P(score of a positive > score of a negative) + 1/2 P(tie), over every pair: the definition, O(n^2)."""
    import numpy as np

    pos, neg = np.asarray(scores)[positive], np.asarray(scores)[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def metrics_by_hand(parts: list[tuple]) -> dict:
    """Pooled metrics of several sites' (labels, probabilities), written out from the definitions: the summed
    confusion counts give accuracy and every per-class ratio (a value without a denominator is undefined and
    left out of its macro mean; precision is 0 for a class that occurs but is never predicted), the loss is the
    mean cross-entropy over all pooled images (Keras' clipping to [1e-7, 1 - 1e-7]), AUROC is each site's
    pairwise AUROC weighted by its number of images."""
    import numpy as np

    k = len(CLASSES)
    cm = np.zeros((k, k), np.int64)
    losses, aurocs = [], []
    for y, p in parts:
        for t, q in zip(y, p.argmax(axis=1), strict=True):
            cm[t, q] += 1
        q = np.clip((p / p.sum(axis=1, keepdims=True))[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
        losses.extend(-np.log(q))
        aurocs.append((len(y), [pairwise_auroc(p[:, c], y == c) for c in range(k)]))
    n = int(cm.sum())
    per = {"sensitivity": [], "specificity": [], "precision": [], "f1": []}
    for c in range(k):
        tp, fn, fp = cm[c, c], cm[c].sum() - cm[c, c], cm[:, c].sum() - cm[c, c]
        tn = n - tp - fn - fp
        per["sensitivity"].append(tp / (tp + fn) if tp + fn else None)
        per["specificity"].append(tn / (tn + fp) if tn + fp else None)
        per["precision"].append(tp / (tp + fp) if tp + fp else (0.0 if tp + fn else None))
        per["f1"].append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None)
    site_auroc = []
    for c in range(k):
        pairs = [(n_site, a[c]) for n_site, a in aurocs if a[c] is not None]
        site_auroc.append(sum(w * a for w, a in pairs) / sum(w for w, _ in pairs) if pairs else None)
    out = {"confusion_matrix": cm.tolist(), "num_examples": n, "accuracy": float(np.trace(cm) / n),
           "loss": float(np.mean(losses)), "auroc_by_site": site_auroc}
    for key, values in per.items():
        defined = [v for v in values if v is not None]
        out[f"macro_{key}"] = float(np.mean(defined)) if defined else None
    return out


def pooled_mismatches(recorded: dict, expected: dict, *, auroc: str | None = "auroc_site_weighted_mean",
                      loss_atol: float = 1e-4) -> list[str]:
    """Every difference between a round's recorded metrics and metrics_by_hand (all listed, not the first only).
    Counts must be equal; ratios of equal counts equal to 1e-12; the loss within `loss_atol` (the sites' input
    pipeline and this one may round the last float32 bit differently)."""
    import numpy as np

    wrong = []
    for key in ("confusion_matrix", "num_examples"):
        if recorded.get(key) != expected[key]:
            wrong.append(f"{key}: recorded {recorded.get(key)}, expected {expected[key]}")
    for key in ("accuracy", "macro_sensitivity", "macro_specificity", "macro_precision", "macro_f1"):
        a, b = recorded.get(key), expected[key]
        if (a is None) != (b is None) or (b is not None and abs(a - b) > 1e-12):
            wrong.append(f"{key}: recorded {a}, expected {b}")
    if abs(recorded["loss"] - expected["loss"]) > loss_atol:
        wrong.append(f"loss: recorded {recorded['loss']}, expected {expected['loss']}")
    if auroc is not None:
        for name, b in zip(CLASSES, expected["auroc_by_site"], strict=True):
            a = recorded["per_class"][name].get(auroc)
            if (a is None) != (b is None) or (b is not None and abs(a - b) > 1e-6):
                wrong.append(f"{auroc}/{name}: recorded {a}, expected {b}")
        defined = [v for v in expected["auroc_by_site"] if v is not None]
        macro = recorded.get(f"macro_{auroc}")
        if defined and (macro is None or abs(macro - float(np.mean(defined))) > 1e-6):
            wrong.append(f"macro_{auroc}: recorded {macro}, expected {float(np.mean(defined))}")
    return wrong


def expected_round_validation(model_dir, site_dirs, *, downlink: str = "float32", val_fraction: float = 0.2,
                              seed: int = 0) -> dict:
    """What a round's pooled validation must be: its saved global model, as the sites received it, evaluated in
    the test on each site's validation patients (the same patient split the sites make), pooled by hand."""
    from fl.data import discover, split_by_patient

    model, card = load_as_sent(model_dir, downlink)
    parts = []
    for site in site_dirs:
        val = split_by_patient(discover(site), val_fraction=val_fraction, seed=seed)[1]
        parts.append(predict_folder_samples(model, val, input_size=int(card.input_size), scaling=card.scaling))
    return metrics_by_hand(parts)
