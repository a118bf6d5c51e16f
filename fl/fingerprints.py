"""How a CA certificate's SHA-256 fingerprint is written for people to compare: one home for the central's
dashboard, which shows it to IT, and the workstation's enrol wizard, which asks IT to compare it by phone."""

from __future__ import annotations

GROUP = 4  # hex digits per group
PER_LINE = 4  # groups per line: 64 hex digits make four lines


def readable(hex64: str) -> str:
    """64 hex digits as upper-case groups of four, four groups a line: `1A2B 3C4D 5E6F 7081` (four lines)."""
    fp = "".join(hex64.split()).replace(":", "").upper()
    groups = [fp[i:i + GROUP] for i in range(0, len(fp), GROUP)]
    return "\n".join(" ".join(groups[i:i + PER_LINE]) for i in range(0, len(groups), PER_LINE))
