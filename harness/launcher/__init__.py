"""``aero-win7-docker``: run the harness in its Docker image from the host.

The launcher turns host paths into bind mounts (the disk image's folder read-only at ``/images``,
the output folder read-write at ``/out``), passes ``/dev/kvm`` only when KVM can really run
guests, runs the container as the caller's uid:gid, streams its output and returns the harness's
exit code. Engine calls that fail for transient reasons are retried; test verdicts never are.
"""
