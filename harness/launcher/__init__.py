"""``aero-win7-docker``: run the harness in its Docker image from the host.

The launcher turns host paths into bind mounts (the disk image's folder read-only at ``/images``,
the output folder read-write at ``/out``), passes ``/dev/kvm`` only when KVM can really run
guests, runs the container as the caller's uid:gid, streams its output and returns the harness's
exit code. Engine calls that fail for transient reasons are retried; test verdicts never are.

==============  ===============================================================================
module          job
==============  ===============================================================================
``cli``         the entry point: flags, then the order of everything below
``mounts``      host paths -> mounts and container paths; the input checks that need no engine
``outlock``     one launcher per output folder (a lock of its own, taken before the folder changes)
``ownership``   a root caller's output folder lent to the image's user (10001) and given back
``engine``      connecting to the Docker engine
``kvm``         whether the container gets ``/dev/kvm``
``container``   one container's life: create, attach, start, stream, wait, remove
``retry``       the retry policy of engine calls
==============  ===============================================================================
"""
