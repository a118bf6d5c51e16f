"""`fedxray federation …`: status, opt-in/opt-out of the background agent, schedule and limits, readiness.

A thin client of app.core (agent_control, federation_status, federation_settings, readiness, enrollment): the
desktop app's Federation page calls the same services.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.cli.common import fail
from app.core.errors import AppError

DESCRIPTION = ("Take part in the central's federated training in the background, on a schedule. The images never "
               "leave this computer; only model weights and summary metrics are sent.")  # fmt: skip


def register(subparsers) -> None:
    p = subparsers.add_parser("federation", help="background federated training: status, opt in/out, schedule",
                              description=DESCRIPTION)  # fmt: skip
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    s = sub.add_parser("status", help="enrolment, agent, schedule, current run, round and phase")
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.add_argument("--offline", action="store_true", help="do not ask the central (faster)")
    s.set_defaults(func=run_status)

    o = sub.add_parser("opt-in", help="take part: start the background agent now and at every login")
    o.add_argument("--data", metavar="DIR", help="class-folder data set to train on (default: the labelled set)")
    o.add_argument("--no-autostart", action="store_true", help=argparse.SUPPRESS)  # tests: keep the login alone
    o.add_argument("--json", action="store_true", help="print machine-readable JSON")
    o.set_defaults(func=run_opt_in)

    x = sub.add_parser("opt-out", help="stop taking part: stop the agent and remove the login entry")
    x.add_argument("--json", action="store_true", help="print machine-readable JSON")
    x.set_defaults(func=run_opt_out)

    c = sub.add_parser("schedule", help="show or set the training windows and resource limits",
                       description="Without options: show. Windows are local times, e.g. "
                       "'weekdays 19:00-07:00; weekends' (a window ending before it starts runs past midnight).")
    c.add_argument("--windows", metavar="TEXT", help="training windows separated by ';' (or 'always')")
    c.add_argument("--always", action="store_true", help="train at any time (the default)")
    c.add_argument("--cpu-threads", metavar="N|auto", help="CPU threads training may use (auto: half the cores)")
    c.add_argument("--gpu-memory", metavar="MB|none", help="GPU memory cap in megabytes (none: no cap)")
    c.add_argument("--overrun", type=int, metavar="MIN",
                   help="minutes a round may run past a window's end before it is abandoned")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print machine-readable JSON")
    c.set_defaults(func=run_schedule)

    k = sub.add_parser("check", help="is this workstation ready? (data, device, disk, clock, central)")
    k.add_argument("--no-device", action="store_true", help="skip the device check (it starts TensorFlow)")
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.set_defaults(func=run_check)

    a = sub.add_parser("agent", help=argparse.SUPPRESS)  # the background agent itself (autostart runs this)
    a.add_argument("--guard", type=int, metavar="PID", help=argparse.SUPPRESS)
    a.set_defaults(func=run_agent)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _fail(exc: AppError | str, args) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": str(exc)}))
    return fail(str(exc), 1)


# ---------------------------------------------------------------- status
def run_status(args) -> int:
    from app.core import agent_control, enrollment, federation_settings

    try:
        enrolled = enrollment.status(ask_central=not args.offline)
        agent = agent_control.status()
        settings = federation_settings.load()
    except AppError as exc:
        return _fail(exc, args)
    if args.json:
        _print_json({"enrollment": enrolled.to_dict(), "agent": agent.to_dict(), "schedule": settings.to_dict()})
        return 0
    if not enrolled.enrolled:
        print("Enrolment:   not enrolled (IT enrols this workstation: fedxray enroll --central URL --token TOKEN)")
    else:
        online = {True: "online", False: "offline", None: "unknown"}[enrolled.online]
        print(f"Enrolment:   node {enrolled.node_id} of site {enrolled.site!r} at {enrolled.central_url}, since "
              f"{enrolled.enrolled_at}")  # fmt: skip
        if enrolled.reachable:
            print(f"Central:     {enrolled.central_status}, {online}, last contact {enrolled.last_contact or 'never'}")
    if enrolled.problem:
        print(f"Problem:     {enrolled.problem}")
    state = "opted in" if agent.opted_in else "opted out"
    running = f"agent running (pid {agent.pid})" if agent.running else "agent not running"
    print(f"Taking part: {state}, {running}")
    window = "open now" if agent.schedule_open else "closed now"
    nxt = f", changes {agent.next_change}" if agent.next_change else ""
    print(f"Schedule:    {agent.windows} ({window}{nxt})")
    print(f"Limits:      {settings.limits_text()}")
    print(f"Phase:       {agent.phase_text}")
    if agent.run_id is not None:
        rounds = f"round {agent.round} of {agent.num_rounds}" if agent.num_rounds else f"round {agent.round}"
        print(f"Run:         {agent.run_id}, {rounds}")
    if agent.last_contact:
        print(f"Last contact {agent.last_contact}")
    if agent.error:
        print(f"Error:       {agent.error}")
    return 0


# ---------------------------------------------------------------- opt in / out
def run_opt_in(args) -> int:
    from pathlib import Path

    from app.core import agent_control

    data = str(Path(args.data).expanduser().resolve()) if args.data else None
    try:
        status = agent_control.opt_in(data_dir_override=data, autostart_entry=not args.no_autostart, wait=10.0)
    except AppError as exc:
        return _fail(exc, args)
    if args.json:
        _print_json({"ok": True, "agent": status.to_dict()})
        return 0
    print("Opted in: this workstation takes part in federated training in the background.")
    print(f"What leaves this computer: {agent_control.WHAT_LEAVES}")
    print(f"What never does: {agent_control.WHAT_STAYS}")
    print(f"The agent runs (pid {status.pid}) and starts again at login; `fedxray federation status` follows it, "
          "`fedxray federation opt-out` stops it." if status.running else
          "The agent is starting; `fedxray federation status` follows it.")  # fmt: skip
    return 0


def run_opt_out(args) -> int:
    from app.core import agent_control

    try:
        status = agent_control.opt_out()
    except AppError as exc:
        return _fail(exc, args)
    if args.json:
        _print_json({"ok": True, "agent": status.to_dict()})
        return 0
    print("Opted out: the background agent is stopped and will not start at login.")
    return 0


# ---------------------------------------------------------------- schedule
def run_schedule(args) -> int:
    from app.core import federation_settings as fs

    changes: dict = {}
    try:
        if args.always:
            changes["windows"] = ()
        elif args.windows is not None:
            changes["windows"] = fs.parse_windows(args.windows)
        if args.cpu_threads is not None:
            changes["cpu_threads"] = None if args.cpu_threads == "auto" else _int(args.cpu_threads, "--cpu-threads")
        if args.gpu_memory is not None:
            changes["gpu_memory_mb"] = None if args.gpu_memory == "none" else _int(args.gpu_memory, "--gpu-memory")
        if args.overrun is not None:
            changes["overrun_minutes"] = args.overrun
        settings = fs.update(**changes) if changes else fs.load()
    except AppError as exc:
        return _fail(exc, args)
    if args.json:
        _print_json({"ok": True, **settings.to_dict()})
        return 0
    print(("Saved. " if changes else "") + settings.describe()[0].upper() + settings.describe()[1:] + ".")
    change = settings.next_change()
    state = "open" if settings.in_window() else "closed"
    print(f"The training window is {state} now" + (f"; it changes {change:%a %d %b %H:%M}." if change else "."))
    return 0


def _int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        from app.core.federation_settings import FederationSettingsError

        raise FederationSettingsError(f"{option} takes a whole number, not {text!r}.") from None


# ---------------------------------------------------------------- readiness
def run_check(args) -> int:
    from app.core import readiness

    try:
        checks = readiness.run_checks(device=not args.no_device)
    except AppError as exc:
        return _fail(exc, args)
    if args.json:
        _print_json({"ready": all(c.ok for c in checks), "checks": [c.__dict__ for c in checks]})
    else:
        marks = {"ok": "✓", "warn": "!", "fail": "✗"}
        for c in checks:
            print(f" {marks[c.level]} {c.name}: {c.detail}")
        print("Ready to take part." if all(c.ok for c in checks) else "Not ready: fix the items marked ✗.")
    return 0 if all(c.ok for c in checks) else 1


# ---------------------------------------------------------------- the agent process
def run_agent(args) -> int:
    from app.core.agent import Agent, guard
    from app.core.paths import data_dir

    def echo(message: str) -> None:
        import datetime as dt

        print(f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} {message}", flush=True)

    if args.guard:
        return guard(args.guard, data_dir(), echo=echo)
    try:
        return Agent(data_dir(), echo=echo).run()
    except AppError as exc:
        print(f"fedxray federation agent: {exc}", file=sys.stderr)
        return 1
