"""One federation agent per user (app.core.agent_lock): the lock between real processes, released by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from app.core.agent_lock import AgentLock, running_agent

HOLD = ("import sys, time\n"
        "from pathlib import Path\n"
        "from app.core.agent_lock import AgentLock\n"
        "lock = AgentLock.acquire(Path(sys.argv[1]))\n"
        "print('held' if lock else 'refused', flush=True)\n"
        "time.sleep(600 if lock else 0)\n")  # fmt: skip


def holder(folder) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)


def test_only_one_holder_and_sigkill_frees_the_lock(tmp_path):
    first = holder(tmp_path)
    try:
        assert first.stdout.readline().strip() == "held"
        assert running_agent(tmp_path) == first.pid
        second = holder(tmp_path)
        assert second.stdout.readline().strip() == "refused"
        second.wait(30)
        assert AgentLock.acquire(tmp_path) is None  # nor this process
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert running_agent(tmp_path) is None  # a stale record names a dead process
        lock = AgentLock.acquire(tmp_path)
        assert lock is not None and running_agent(tmp_path) == os.getpid()
        lock.release()
        assert running_agent(tmp_path) is None
    finally:
        if first.poll() is None:
            first.kill()


def test_a_reused_pid_is_not_taken_for_the_agent(tmp_path):
    # The record names this process's pid with another start time, as after a reboot reused the number.
    (tmp_path / "federation-agent.lock").write_text(f'{{"pid": {os.getpid()}, "create_time": {time.time() - 3600}}}')
    assert running_agent(tmp_path) is None
