#!/usr/bin/env python3
"""Writes a tiny bzImage for the vmm golden tests: a valid 64-bit boot
protocol header (Linux Documentation/arch/x86/boot.rst) around a few bytes of
hand-assembled x86-64 code at the 64-bit entry point (load address + 0x200).
Tiny guests run even where a full Linux guest cannot (a software-nested
/dev/kvm), so these tests check the VMM's boot state, devices and exits
without the parent-instance simulator.

Usage: tiny-guest.py PROGRAM OUTPUT

Programs (RSI points at the zero page on entry, as the protocol says):
  hello    prints the command line (cmd_line_ptr) and the initrd's first
           NUL-terminated string (ramdisk_image), then resets (0xFE to 0x64)
  panic    prints Linux's panic banner, then resets (as panic=1 reboot=k)
  panic-hang  prints the banner and halts for good (as panic=0)
  triple   int3 with an empty IDT: a triple fault
  hang     prints "waiting" and halts for good
  flood    prints a line over and over, never stopping
  echo     waits for one byte on COM1 (polling LSR), echoes it, resets
  unknown  reads CMOS port 0x71 and MMIO at 0xD0000000 (nothing there),
           prints each byte + '0', resets
  interact prints "console ready", then for each byte B read from COM1
           (polling LSR) prints "got B"; before that line, B = 'f' prints
           a burst of BURSTS blocks of 64 lines of 64 bytes (96 KiB; each
           byte is an exit, even with rep outsb, and a software-nested KVM
           takes some 15 us per exit); B = 'q' resets after its line
"""
import struct
import sys

OUT_COM1 = bytes.fromhex("66BAF803")            # mov dx, 0x3f8
PRINT_RDI = bytes.fromhex("0FB60784C07406EE48FFC7EBF3")  # print the NUL-terminated string at rdi
NEWLINE = bytes.fromhex("B00AEE")               # mov al, '\n'; out dx, al
RESET = bytes.fromhex("B0FEE664")               # mov al, 0xfe; out 0x64, al
HALT = bytes.fromhex("F4EBFD")                  # hlt; jmp hlt
MESSAGE_OFFSET = 0x400                          # data, inside the loaded kernel
LOAD_ADDRESS = 0x100000


def mov_edi(value):
    return b"\xBF" + struct.pack("<I", value)


def print_message():
    return OUT_COM1 + mov_edi(LOAD_ADDRESS + MESSAGE_OFFSET) + PRINT_RDI


BLOCK_OFFSET = 0x1000                           # interact's burst block
BURST_BLOCK = b"".join(f"burst line {i:02d} ".ljust(63, ".").encode() + b"\n" for i in range(64))
BURSTS = 24


def interact():
    """The `interact` program, its jumps computed from the parts' sizes."""
    ready = LOAD_ADDRESS + MESSAGE_OFFSET
    got = ready + len(b"console ready\n") + 1
    block = LOAD_ADDRESS + BLOCK_OFFSET
    mov_esi = lambda value: b"\xBE" + struct.pack("<I", value)
    mov_ecx = lambda value: b"\xB9" + struct.pack("<I", value)
    mov_ebp = lambda value: b"\xBD" + struct.pack("<I", value)
    start = OUT_COM1 + mov_edi(ready) + PRINT_RDI
    wait = (bytes.fromhex("66BAFD03" "EC" "A801" "74FB")              # poll LSR.DR
            + OUT_COM1 + bytes.fromhex("EC" "88C3"))                   # in al, dx; mov bl, al
    burst_loop = mov_esi(block) + mov_ecx(len(BURST_BLOCK)) + bytes.fromhex("F36E" "FFCD")  # rep outsb; dec ebp
    burst_loop += b"\x75" + struct.pack("<b", -(len(burst_loop) + 2))  # jnz burst_loop
    burst = mov_ebp(BURSTS) + burst_loop
    wait += bytes.fromhex("80FB66") + b"\x75" + struct.pack("<b", len(burst))  # cmp bl, 'f'; jne over the burst
    line = mov_edi(got) + PRINT_RDI + bytes.fromhex("88D8" "EE") + NEWLINE + bytes.fromhex("80FB71")  # cmp bl, 'q'
    body = wait + burst + line
    body += b"\x75" + struct.pack("<b", -(len(body) + 2))            # jne wait
    return start + body + RESET + HALT


PROGRAMS = {
    "hello": (OUT_COM1
              + bytes.fromhex("8BBE28020000") + PRINT_RDI + NEWLINE   # mov edi, [rsi+0x228]
              + bytes.fromhex("8BBE18020000") + PRINT_RDI + NEWLINE   # mov edi, [rsi+0x218]
              + RESET + HALT, b""),
    "panic": (print_message() + RESET + HALT,
              b"Kernel panic - not syncing: tiny guest test\n"),
    "panic-hang": (print_message() + HALT,
                   b"Kernel panic - not syncing: tiny guest test\n"),
    "triple": (bytes.fromhex("CC") + HALT, b""),
    "hang": (print_message() + HALT, b"waiting\n"),
    # mov edi, message; print; jmp back to the mov (-20 bytes).
    "flood": (OUT_COM1 + mov_edi(LOAD_ADDRESS + MESSAGE_OFFSET) + PRINT_RDI + bytes.fromhex("EBEC"),
              b"flooding the console\n"),
    "echo": (bytes.fromhex("66BAFD03" "EC" "A801" "74FB")            # poll LSR.DR
             + OUT_COM1 + bytes.fromhex("EC" "EE") + NEWLINE + RESET + HALT, b""),
    "unknown": (bytes.fromhex("E471" "0430") + OUT_COM1 + bytes.fromhex("EE")        # in al, 0x71
                + mov_edi(0xD0000000) + bytes.fromhex("8B07" "0430" "EE")            # mov eax, [rdi]
                + NEWLINE + RESET + HALT, b""),
    "interact": (interact(), b"console ready\n\0got ", BURST_BLOCK),
}


def bzimage(code, message, block=b""):
    setup_sects = 1
    setup = bytearray(512 * (setup_sects + 1))
    payload = bytearray(max(0x1000, BLOCK_OFFSET + len(block)))
    payload[0x200:0x200 + len(code)] = code
    payload[MESSAGE_OFFSET:MESSAGE_OFFSET + len(message) + 1] = message + b"\0"
    payload[BLOCK_OFFSET:BLOCK_OFFSET + len(block)] = block
    setup[0x1F1] = setup_sects
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200:0x202] = b"\xEB\x6A"                # header ends at 0x26C
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)    # protocol 2.15
    setup[0x211] = 0x01                             # LOADED_HIGH
    struct.pack_into("<I", setup, 0x214, LOAD_ADDRESS)
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)  # initrd_addr_max
    struct.pack_into("<I", setup, 0x230, 0x200000)  # kernel_alignment
    setup[0x234] = 1                                # relocatable
    struct.pack_into("<H", setup, 0x236, 0x03)      # XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    struct.pack_into("<I", setup, 0x238, 2047)      # cmdline_size
    struct.pack_into("<Q", setup, 0x258, 0x1000000) # pref_address
    struct.pack_into("<I", setup, 0x260, 0x400000)  # init_size
    return bytes(setup + payload)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in PROGRAMS:
        sys.exit(f"usage: tiny-guest.py {{{'|'.join(PROGRAMS)}}} OUTPUT")
    code, message, *block = PROGRAMS[sys.argv[1]]
    with open(sys.argv[2], "wb") as out:
        out.write(bzimage(code, message, *block))


if __name__ == "__main__":
    main()
