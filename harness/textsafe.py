"""Text from the guest, made safe for where people and parsers read it.

The guest writes whatever it likes to COM1, and the harness repeats some of it: in the verdict
line, in the ``guest:`` log lines, in ``--follow-serial``, in junit.xml and in http.log. A control
byte there must be shown, not obeyed: an escape sequence could clear the terminal, retitle its
window or write to the clipboard (OSC 52), and XML 1.0 cannot carry most of them at all. Every
control character (C0 but tab, DEL, C1, and the XML non-characters U+FFFE/U+FFFF) is written
as ``\\xNN`` (or ``\\uNNNN``) instead.
"""

from __future__ import annotations

import codecs
import re

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ufffe\uffff]")
_UNSAFE_KEEPING_NEWLINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """One line of guest text with every control character (newlines too) shown as ``\\xNN``."""
    return _UNSAFE.sub(_escape, text)


def visible_lines(text: str) -> str:
    """Like ``visible`` but keeps newlines (for multi-line fields such as junit's system-out)."""
    return _UNSAFE_KEEPING_NEWLINES.sub(_escape, text)


class SerialEcho:
    """Turns COM1 bytes, chunk by chunk, into text a terminal shows safely (``--follow-serial``).

    Invalid UTF-8 becomes ``\\xNN``; CRLF becomes a newline; every other control character is shown
    as ``\\xNN``. A CR at the end of a chunk waits for the next one, so a CRLF split across chunks
    is still one newline.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        self._held_cr = False

    def feed(self, chunk: bytes) -> str:
        text = self._decoder.decode(chunk)
        if self._held_cr:
            text = "\r" + text
            self._held_cr = False
        if text.endswith("\r"):
            text = text[:-1]
            self._held_cr = True
        return visible_lines(text.replace("\r\n", "\n"))

    def flush(self) -> str:
        text = self._decoder.decode(b"", final=True) + ("\r" if self._held_cr else "")
        self._held_cr = False
        return visible_lines(text)
