"""`fedxray federate`: take part in the central's federated training (runs this workstation's SuperNode)."""

from __future__ import annotations

import argparse
import contextlib
import stat
from pathlib import Path

from app.cli.common import fail

DESCRIPTION = (
    "Take part in federated training in the foreground: runs this workstation's Flower SuperNode (through "
    "FedXray's launcher), connected to the central it is enrolled with, until stopped (Ctrl-C), with the CPU and "
    "GPU limits of `fedxray federation schedule`. The images never leave this computer; only model weights and "
    "summary metrics are sent. Progress is shown here and written to federation-status.json in FedXray's data "
    "folder. The background form is `fedxray federation opt-in`."
)


def register(subparsers) -> None:
    p = subparsers.add_parser("federate", help="take part in federated training", description=DESCRIPTION)
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="class-folder data set to train on (default: this workstation's labelled set)")
    p.add_argument("--superlink", metavar="HOST:PORT",
                   help="the central's Fleet API address (default: from the enrolment)")
    p.add_argument("--root-certificates", type=Path, metavar="CA.pem",
                   help="the central's CA certificate (default: from the enrolment)")
    p.add_argument("--key", type=Path, metavar="KEYFILE",
                   help="the node's private key file (default: from the keyring, as stored by `fedxray enroll`)")
    p.add_argument("--insecure", action="store_true", help=argparse.SUPPRESS)  # plain HTTP: loopback tests only
    # How long the SuperLink may refuse the node before it is declared not enrolled (tests shorten it).
    p.add_argument("--refusal-grace", type=float, default=150.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _explicit(args):
    """Settings from --superlink/--root-certificates/--key (a node not enrolled through `fedxray enroll`)."""
    if not args.insecure and not args.root_certificates:
        raise ValueError("--superlink needs --root-certificates (the central's CA certificate)")
    if args.root_certificates and not args.root_certificates.is_file():
        raise ValueError(f"the CA certificate {args.root_certificates} does not exist")
    if args.key is not None:
        if not args.key.is_file():
            raise ValueError(f"the key file {args.key} does not exist")
        if args.key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"the key file {args.key} is readable by other users: run `chmod 600 {args.key}`")
    return args.superlink, args.root_certificates, contextlib.nullcontext(args.key), None


def _enrolled():
    """Settings from the enrolment: SuperLink address, CA certificate, private key from the keyring."""
    from app.core.central_client import CentralClient
    from app.core.enrollment import load_enrollment, private_key_file

    enrollment = load_enrollment()
    if enrollment is None:
        raise ValueError("this workstation is not enrolled: run `fedxray enroll --central URL --token TOKEN` first "
                         "(IT gives you both)")  # fmt: skip
    return (enrollment.superlink_address, enrollment.ca_cert_path, private_key_file(enrollment),
            CentralClient(enrollment).still_enrolled)  # fmt: skip


def run(args) -> int:
    from app.core import federation as fed
    from app.core.errors import AppError
    from app.core.labelled import LabelledSet
    from app.core.paths import data_dir

    data = (args.data or LabelledSet().root).expanduser().resolve()
    try:
        superlink, ca, key_context, check_enrolled = _explicit(args) if args.superlink else _enrolled()
        if args.data is None and not data.is_dir():
            raise ValueError(f"this workstation has no labelled images yet ({data}): confirm or correct cases in "
                             "the app to build its local labelled set, or pass --data DIR")  # fmt: skip
        counts = fed.check_data_dir(data)
    except (AppError, ValueError) as exc:
        return fail(str(exc))
    from app.core import federation_settings
    from app.core.agent_lock import AgentLock, running_agent

    try:
        limits = federation_settings.load()
    except AppError as exc:
        return fail(str(exc))
    lock = AgentLock.acquire(data_dir())  # one SuperNode per user: the background agent holds the same lock
    if lock is None:
        return fail(f"the background federation agent already takes part for this user (pid "
                    f"{running_agent(data_dir())}): follow it with `fedxray federation status`, or stop it with "
                    "`fedxray federation opt-out` first")  # fmt: skip
    print(f"Training data: {data} ({sum(counts.values())} images: "
          + ", ".join(f"{c} {n}" for c, n in counts.items()) + ")")  # fmt: skip
    try:
        return _federate(args, fed, data, superlink, ca, key_context, check_enrolled, limits)
    finally:
        lock.release()


def _federate(args, fed, data, superlink, ca, key_context, check_enrolled, limits) -> int:
    from app.core.errors import AppError
    from app.core.paths import data_dir

    with fed.stop_on_signals() as stopper:
        try:
            with key_context as key:  # the key file (0600 in a private folder) exists only inside this block
                if stopper.requested.is_set():
                    return 0
                settings = fed.NodeSettings(superlink=superlink, data_dir=data, root_certificates=ca,
                                            private_key=key, insecure=args.insecure, cpu_threads=limits.threads,
                                            gpu_memory_mb=limits.gpu_memory_mb)  # fmt: skip
                supervisor = fed.NodeSupervisor(settings, folder=data_dir(), echo=lambda m: print(m, flush=True),
                                                refusal_grace=args.refusal_grace, check_enrolled=check_enrolled)
                stopper.attach(supervisor)
                print(f"Connecting to the central's SuperLink at {superlink}… (Ctrl-C stops)", flush=True)
                supervisor.run()
        except fed.NotEnrolledError as exc:
            return fail(str(exc), 3)
        except AppError as exc:
            return fail(str(exc))
    print("Stopped; this workstation no longer takes part in federated training.")
    return 0
