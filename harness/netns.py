"""A private network (and mount) namespace for a run on a host: its own loopback and resolv.conf.

QEMU user networking shows the guest everything on the QEMU process's loopback (10.0.2.2 is the
host's 127.0.0.1) and sends the guest's DNS to the first nameserver of the process's resolv.conf.
In a namespace of its own, the run's loopback holds only the run's services, its resolv.conf
names the run's own DNS responder (127.0.0.1), and two runs on one host no longer share ports.

As root the run enters plain network and mount namespaces; as another user it first enters a user
namespace of its own, where the kernel allows that (the user stays who it is: its uid and gid are
mapped to themselves). ``unshare`` must come before the process starts a thread, so the runner
calls ``isolate`` first of all. In a container (network none, ``--dns 127.0.0.1``) the engine has
done all of this already.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.errors import InfraError
from harness.logsetup import get_logger
from harness.services.dns import first_nameserver

Mode = Literal["auto", "on", "off"]
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
SIOCSIFFLAGS, IFF_UP = 0x8914, 0x1
PR_SET_DUMPABLE = 4
THREADS_SETTLE_S = 1.0
RESOLV_CONF = Path("/etc/resolv.conf")
CONTAINER_MARKERS = (Path("/.dockerenv"), Path("/run/.containerenv"))
_libc = ctypes.CDLL(None, use_errno=True)
log = get_logger("netns")


def in_container() -> bool:
    """Docker and Podman leave a marker file; a Kubernetes pod (containerd, CRI-O) has the service
    environment the kubelet sets in every container."""
    return any(marker.exists() for marker in CONTAINER_MARKERS) or "KUBERNETES_SERVICE_HOST" in os.environ


@dataclass(frozen=True)
class Isolation:
    isolated: bool
    how: str  # "namespaces (root)", "user namespace", "the container", or why not

    def to_json(self) -> dict[str, object]:
        return {"isolated": self.isolated, "how": self.how}


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _threads_settled(within_s: float = THREADS_SETTLE_S) -> int:
    """The thread count once short-lived helpers are gone: asyncio's child watcher (QEMU's
    capability probe, before this) ends its waitpid thread just after ``asyncio.run`` returns."""
    deadline = time.monotonic() + within_s
    while (count := _threads()) > 1 and time.monotonic() < deadline:
        time.sleep(0.002)
    return count


def _call(name: str, *args: object) -> None:
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP))


def _private_resolv_conf() -> None:
    """Bind a resolv.conf naming 127.0.0.1 over the real one, in this mount namespace only."""
    _call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)  # nothing below propagates to the host
    fd, path = tempfile.mkstemp(prefix="aero-resolv-", suffix=".conf")
    try:
        os.write(fd, b"# aero-win7-harness: the run's own name server\nnameserver 127.0.0.1\n")
        os.close(fd)
        os.chmod(path, 0o644)
        _call("mount", path.encode(), str(RESOLV_CONF.resolve()).encode(), None, MS_BIND, None)
    finally:
        os.unlink(path)  # the bind mount keeps the file for as long as the namespace lives


def _enter() -> str:
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        _call("unshare", CLONE_NEWNET | CLONE_NEWNS)
        how = "network and mount namespaces"
    else:
        # A process that changed its uid (su, setuid) is not "dumpable": its /proc/self files stay root's,
        # and the maps below could not be written.
        _call("prctl", PR_SET_DUMPABLE, 1, 0, 0, 0)
        _call("unshare", CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
        how = "user, network and mount namespaces"
    _loopback_up()
    try:
        _private_resolv_conf()
    except OSError as err:
        # The network is the run's own already (there is no way back): say what is not.
        log.warning("the run has a network of its own, but its resolv.conf could not be replaced (%s): the guest's "
                    "name lookups go to %s, which this network cannot reach", err, first_nameserver() or "nowhere")
        how += f" (resolv.conf not replaced: {err.strerror or err})"
    return how


def _network_interfaces() -> list[str]:
    """The process's network interfaces other than loopback (a container started with --network
    none has none)."""
    try:
        return sorted(name for name in os.listdir("/sys/class/net") if name != "lo")
    except OSError:
        return []


def fallback_warned() -> bool:
    """True once ``isolate`` has warned that the run shares the host's network and resolver (a later
    warning about the guest's name lookups would say it again)."""
    return _state["fallback_warned"]


_state = {"fallback_warned": False}


def isolate(mode: Mode) -> Isolation:
    """Enter the run's own namespaces as ``mode`` asks; ``auto`` falls back with one warning."""
    if mode == "off":
        return Isolation(False, "--network-isolation off")
    nameserver = first_nameserver()
    interfaces = _network_interfaces()
    if in_container() and nameserver is not None and nameserver.startswith("127.") and not interfaces:
        return Isolation(True, "the container (its own network; --dns 127.0.0.1)")
    if _threads_settled() > 1:
        why = "the process already runs threads, and the kernel refuses a new namespace to those"
    else:
        try:
            how = _enter()
        except OSError as err:
            reason = {errno.EPERM: "not permitted here", errno.EINVAL: "not supported here",
                      errno.ENOSPC: "the namespace limit is reached", errno.EACCES: "not permitted here"}
            why = f"namespaces unavailable ({reason.get(err.errno or 0, err.strerror)}: {err})"
            if in_container():
                why += (f"; in a container, start it with --network none --dns 127.0.0.1 (aero-win7-docker does), "
                        f"not with resolv.conf naming {nameserver or 'no nameserver'}")
        else:
            log.info("the run has a network of its own (%s): its loopback, its resolv.conf", how)
            return Isolation(True, how)
    if in_container() and interfaces:
        why += f"; the container has a network ({', '.join(interfaces)}): start it with --network none"
    if mode == "on":
        raise InfraError(f"--network-isolation on, but {why}")
    _state["fallback_warned"] = True
    log.warning("no network isolation (%s): the guest reaches the host's loopback services, its name lookups go "
                "to the host's resolver, and two runs at once need other ports", why)
    return Isolation(False, why)
