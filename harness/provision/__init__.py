"""``aero-win7-harness provision``: the media that turns a fresh Windows 7 install into a test image.

``layout`` names the files on the media and in the guest, ``request`` holds what a run asks for,
``flags`` the selftest's baked options (their checks and the guest's argv), ``infs`` chooses the
driver INFs, ``quoting`` writes Windows and cmd.exe command lines, ``task`` defines the boot-time
task, ``script`` renders ``provision.cmd``, ``manifest`` and ``description`` write the manifest and
the text files, ``media`` gathers the files and ``iso`` writes them as an ISO (or a folder).
"""
