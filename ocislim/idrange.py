"""Which ids exist in ocislim's own user namespace.

On a host, every id does.  In a nested user namespace (a rootless container,
``unshare --user``) usually only one does, and then root can neither chown files to
the image's owners nor map a subordinate range into the sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path

_ALL_IDS = "0 0 4294967295\n"


def read_id_map(kind: str) -> str:
    """``/proc/self/uid_map`` (``kind="uid"``) or ``gid_map``; all ids when unreadable."""
    try:
        return Path(f"/proc/self/{kind}_map").read_text()
    except OSError:
        return _ALL_IDS


def range_mapped(start: int, count: int, map_text: str) -> bool:
    """Whether ids ``start .. start+count-1`` all exist in the namespace ``map_text`` describes."""
    end = start + count
    for line in map_text.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            inside, length = int(fields[0]), int(fields[2])
            if inside <= start and end <= inside + length:
                return True
    return False


def owners_settable() -> bool:
    """Whether ocislim may give unpacked files any owner: root with the first 65536 ids."""
    return (
        os.geteuid() == 0
        and range_mapped(0, 65536, read_id_map("uid"))
        and range_mapped(0, 65536, read_id_map("gid"))
    )
