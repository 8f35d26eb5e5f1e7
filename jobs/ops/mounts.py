"""Which filesystem the job folder is on, from the mount table: file locks are not reliable
across hosts on network filesystems, so the runner warns and health reports degraded there."""

from __future__ import annotations

import os
from typing import Any

import psutil

#: Filesystem types whose locks (flock/fcntl) are not trustworthy between hosts.
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "9p", "ceph", "glusterfs", "fuse.sshfs", "afs", "lustre"}
)


def filesystem(path: str | os.PathLike[str], partitions: list[Any] | None = None) -> dict[str, Any]:
    """The mount holding ``path``: ``{"mountpoint", "fstype", "network"}`` (longest matching mountpoint)."""
    target = os.path.realpath(path)
    best: Any = None
    for part in partitions if partitions is not None else _partitions():
        mp = part.mountpoint.rstrip("/") or "/"
        if (target == mp or target.startswith(mp + "/") or mp == "/") and (
            best is None or len(mp) > len(best.mountpoint.rstrip("/") or "/")
        ):
            best = part
    if best is None:
        return {"mountpoint": None, "fstype": None, "network": False}
    return {"mountpoint": best.mountpoint, "fstype": best.fstype, "network": best.fstype.lower() in NETWORK_FS}


def _partitions() -> list[Any]:
    try:
        return psutil.disk_partitions(all=True)
    except OSError:
        return []


def network_warning(info: dict[str, Any], root: str | os.PathLike[str]) -> str | None:
    if not info["network"]:
        return None
    return (
        f"the job folder {root} is on {info['fstype']} ({info['mountpoint']}): file locks are not reliable "
        "across hosts there; run runners from one host per folder, or use the distributed executor"
    )
