"""``aero-win7-harness provision``: the media that turns a fresh Windows 7 install into a test image.

``layout`` names the files on the media and in the guest, ``quoting`` writes Windows and cmd.exe
command lines, ``script`` renders ``provision.cmd``, ``media`` gathers the files and ``iso`` writes
them as an ISO (or a folder).
"""
