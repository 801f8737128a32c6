"""Tiny x86 boot images, written byte by byte: no assembler needed.

They serve two jobs: the KVM probe (does this KVM really run a guest once it leaves real mode?)
and the test suite (a guest that writes chosen lines to COM1, then halts, powers off or resets).

The image is a 512-byte boot sector plus, when the message is longer than fits, further sectors
that the boot sector loads with BIOS ``int 13h``. The code walks the path every 64-bit kernel
walks: real mode, 32-bit protected mode, paging with PAE, EFER.LME through ``wrmsr``, 64-bit long
mode. A nested KVM that cannot really run guests fails on that path, as Linux and Windows would
(seen: a hang right after real mode, "failed to set MSR"). In long mode it writes the message to
the 16550 UART at 0x3F8, byte by byte as the UART takes them (so long messages arrive whole), then
ends as asked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum

SECTOR = 512
LOAD_ADDR = 0x7C00
EXTRA_ADDR = 0x7E00  # where further sectors are loaded
MAX_EXTRA_SECTORS = 60  # one int 13h read, staying below 0x10000
MIN_IMAGE_BYTES = 1 << 20  # SeaBIOS does not boot a virtio-blk disk of a single sector
_PAGE_TABLES = 0x1000  # PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000 (free low memory)
_COM1 = 0x3F8
_LSR = 5  # line status register, relative to the UART's base port
_LSR_THRE = 0x20  # transmit holding register empty
_PM1A_CNT = 0x604  # ACPI PM1a control port that SeaBIOS sets up on QEMU's pc and q35 machines
_SLP_EN_S5 = 0x2000  # SLP_EN with SLP_TYP 0: QEMU's S5 (soft off)
_EFER = 0xC0000080
_SEL_CODE32, _SEL_DATA, _SEL_CODE64 = 0x08, 0x10, 0x18


class Ending(Enum):
    HALT = "halt"  # stay up, as the Windows guest does after its RESULT line
    POWEROFF = "poweroff"  # ACPI soft-off: QEMU exits
    RESET = "reset"  # keyboard-controller reset: with -no-reboot QEMU exits, like a reboot/bugcheck


@dataclass
class _Asm:
    """Bytes with labels and absolute-address fixups (addresses relative to LOAD_ADDR)."""

    code: bytearray = field(default_factory=bytearray)
    labels: dict[str, int] = field(default_factory=dict)
    fixups: list[tuple[int, str, str]] = field(default_factory=list)  # (offset, label, struct fmt)

    def emit(self, *parts: int | bytes) -> None:
        for part in parts:
            self.code += bytes([part]) if isinstance(part, int) else part

    def addr(self, label: str, fmt: str) -> None:
        self.fixups.append((len(self.code), label, fmt))
        self.code += bytes(struct.calcsize(fmt))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def align(self, to: int) -> None:
        self.code += b"\x90" * (-len(self.code) % to)

    def link(self, external: dict[str, int]) -> bytes:
        out = bytearray(self.code)
        for offset, label, fmt in self.fixups:
            target = external[label] if label in external else LOAD_ADDR + self.labels[label]
            struct.pack_into(fmt, out, offset, target)
        return bytes(out)


def _emit_real_mode(asm: _Asm, extra_sectors: int) -> None:
    asm.emit(0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0)  # cli; ax=0; ds=es=ss=0
    asm.emit(0xBC, struct.pack("<H", LOAD_ADDR), 0xFC)  # mov sp, 0x7C00; cld
    if extra_sectors:
        asm.emit(0xFB)  # sti: the BIOS disk service wants interrupts
        asm.emit(0xB8, extra_sectors, 0x02)  # mov ax, 0x02NN: read NN sectors
        asm.emit(0xB9, 0x02, 0x00)  # mov cx, 2: cylinder 0, sector 2
        asm.emit(0x30, 0xF6)  # xor dh, dh: head 0 (DL = boot drive, from the BIOS)
        asm.emit(0xBB, struct.pack("<H", EXTRA_ADDR))  # mov bx, EXTRA_ADDR (ES:BX)
        asm.emit(0xCD, 0x13, 0xFA)  # int 13h; cli
    asm.emit(0x0F, 0x01, 0x16)  # lgdt [gdt_desc]
    asm.addr("gdt_desc", "<H")
    asm.emit(0x0F, 0x20, 0xC0, 0x66, 0x83, 0xC8, 0x01, 0x0F, 0x22, 0xC0)  # cr0 |= PE
    asm.emit(0x66, 0xEA)  # jmp dword 0x08:pm32
    asm.addr("pm32", "<I")
    asm.emit(struct.pack("<H", _SEL_CODE32))


def _emit_protected_mode(asm: _Asm) -> None:
    asm.label("pm32")
    asm.emit(0x66, 0xB8, struct.pack("<H", _SEL_DATA), 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0)  # ds=es=ss
    asm.emit(0xBF, struct.pack("<I", _PAGE_TABLES), 0x31, 0xC0)  # mov edi, tables; xor eax, eax
    asm.emit(0xB9, struct.pack("<I", 3 * 4096 // 4), 0xF3, 0xAB)  # mov ecx, 3 pages; rep stosd
    for table, entry in ((0x1000, 0x2003), (0x2000, 0x3003), (0x3000, 0x83)):  # identity-map 2 MiB
        asm.emit(0xC7, 0x05, struct.pack("<II", table, entry))  # mov dword [table], entry
    asm.emit(0xB8, struct.pack("<I", _PAGE_TABLES), 0x0F, 0x22, 0xD8)  # cr3 = PML4
    asm.emit(0x0F, 0x20, 0xE0, 0x83, 0xC8, 0x20, 0x0F, 0x22, 0xE0)  # cr4 |= PAE
    asm.emit(0xB9, struct.pack("<I", _EFER), 0x0F, 0x32)  # rdmsr EFER
    asm.emit(0x0D, struct.pack("<I", 0x100), 0x0F, 0x30)  # eax |= LME; wrmsr
    asm.emit(0x0F, 0x20, 0xC0, 0x0D, struct.pack("<I", 0x80000000), 0x0F, 0x22, 0xC0)  # cr0 |= PG
    asm.emit(0xEA)  # jmp 0x18:lm64
    asm.addr("lm64", "<I")
    asm.emit(struct.pack("<H", _SEL_CODE64))


def _emit_long_mode(asm: _Asm, ending: Ending, spin: int) -> None:
    asm.label("lm64")
    if spin:
        asm.emit(0xB9, struct.pack("<I", spin), 0xFF, 0xC9, 0x75, 0xFC)  # mov ecx, spin; dec ecx; jnz
    asm.emit(0xBE)  # mov esi, message (zero-extended into rsi)
    asm.addr("message", "<I")
    # Each byte waits for the UART's transmit holding register to be empty (line status bit 5), as
    # a real driver does: without that wait, bytes are lost once COM1's backend falls behind.
    asm.emit(0xAC, 0x84, 0xC0, 0x74, 0x14)  # next: lodsb; test al, al; jz done
    asm.emit(0x88, 0xC4)  # mov ah, al
    asm.emit(0x66, 0xBA, struct.pack("<H", _COM1 + _LSR))  # mov dx, COM1 + LSR
    asm.emit(0xEC, 0xA8, _LSR_THRE, 0x74, 0xFB)  # wait: in al, dx; test al, THRE; jz wait
    asm.emit(0x66, 0xBA, struct.pack("<H", _COM1))  # mov dx, COM1
    asm.emit(0x88, 0xE0, 0xEE, 0xEB, 0xE7)  # mov al, ah; out dx, al; jmp next  (done:)
    if ending is Ending.POWEROFF:
        asm.emit(0x66, 0xBA, struct.pack("<H", _PM1A_CNT), 0x66, 0xB8, struct.pack("<H", _SLP_EN_S5))
        asm.emit(0x66, 0xEF)  # out dx, ax
    elif ending is Ending.RESET:
        asm.emit(0xB0, 0xFE, 0xE6, 0x64)  # mov al, 0xFE; out 0x64, al
    asm.emit(0xF4, 0xEB, 0xFD)  # hlt; jmp back to hlt


def _emit_tables(asm: _Asm) -> None:
    asm.align(8)
    asm.label("gdt")
    asm.emit(struct.pack("<4Q", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, 0x00AF9A000000FFFF))
    asm.label("gdt_desc")
    asm.emit(struct.pack("<H", 4 * 8 - 1))
    asm.addr("gdt", "<I")


def build_image(message: bytes, ending: Ending = Ending.HALT, spin: int = 0) -> bytes:
    """A raw disk image whose guest writes ``message`` to COM1 from long mode, then ``ending``.

    ``spin`` is a count of busy-loop iterations run in long mode before the message: a guest
    that really runs does 10^8 of them in well under a second.
    """
    if not 0 <= spin < 1 << 32:
        raise ValueError("spin must fit in 32 bits")
    if b"\0" in message:
        raise ValueError("the message cannot contain NUL bytes")
    extra = 0
    while True:
        asm = _Asm()
        _emit_real_mode(asm, extra)
        _emit_protected_mode(asm)
        _emit_long_mode(asm, ending, spin)
        _emit_tables(asm)
        inline_room = SECTOR - 2 - len(asm.code)
        if extra or len(message) + 1 <= inline_room:
            break
        extra = -(-(len(message) + 1) // SECTOR)
        if extra > MAX_EXTRA_SECTORS:
            raise ValueError(f"message too long for a boot image: {len(message)} bytes")
    if extra:
        sector = asm.link({"message": EXTRA_ADDR})
        tail = (message + b"\0").ljust(extra * SECTOR, b"\0")
    else:
        asm.label("message")
        asm.emit(message, 0)
        sector, tail = asm.link({}), b""
    image = sector.ljust(SECTOR - 2, b"\0") + b"\x55\xaa" + tail
    return image.ljust(MIN_IMAGE_BYTES, b"\0")
