"""v2 devices: a BPF_PROG_TYPE_CGROUP_DEVICE program built from the allow list.

The kernel runs the program on every open or mknod of a device node by the group's
tasks, with a context of (access_type, major, minor) (include/uapi/linux/bpf.h,
struct bpf_cgroup_dev_ctx): access_type is (access << 16) | type, type 1 block or
2 char, access a mask of mknod 1, read 2, write 4. Return 1 allows, 0 denies (EPERM).
"""

from __future__ import annotations

import os
import struct

from minibox import explain

# eBPF opcodes (include/uapi/linux/bpf.h, bpf_common.h).
LDX_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
MOV64_X = 0xBF    # BPF_ALU64 | BPF_MOV | BPF_X: dst = src
MOV64_K = 0xB7    # BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
AND64_K = 0x57    # BPF_ALU64 | BPF_AND | BPF_K: dst &= imm
RSH64_K = 0x77    # BPF_ALU64 | BPF_RSH | BPF_K: dst >>= imm
JNE_K = 0x55      # BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + off
EXIT = 0x95

TYPES = {"b": 1, "c": 2}
ACCESS = {"m": 1, "r": 2, "w": 4}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(rules: list[dict]) -> bytes:
    """Allow-list program: the first matching allow rule returns 1; otherwise 0.

    Deny-all rules ("a", allow false) are the default here, so they emit nothing.
    """
    out = [
        _insn(LDX_W, 2, 1, 0),      # r2 = access_type
        _insn(MOV64_X, 3, 2),       # r3 = r2
        _insn(AND64_K, 3, imm=0xFFFF),  # r3 = type
        _insn(RSH64_K, 2, imm=16),  # r2 = access
        _insn(LDX_W, 4, 1, 4),      # r4 = major
        _insn(LDX_W, 5, 1, 8),      # r5 = minor
    ]
    for rule in rules:
        if not rule.get("allow"):
            continue
        # Each check is a few instructions ending in a jump past this rule's block
        # when the access does not match; offsets are filled in once the length is known.
        checks: list[list[tuple]] = []
        kind = rule.get("type", "a")
        if kind in TYPES:
            checks.append([(JNE_K, 3, TYPES[kind])])
        allowed = sum(ACCESS[c] for c in rule.get("access", "rwm"))
        if allowed != 7:
            # r6 = access & ~allowed; a bit left over means this rule does not cover it
            checks.append([(MOV64_X, 6, 2), (AND64_K, 6, ~allowed & 0x7), (JNE_K, 6, 0)])
        if rule.get("major") is not None:
            checks.append([(JNE_K, 4, rule["major"])])
        if rule.get("minor") is not None:
            checks.append([(JNE_K, 5, rule["minor"])])
        flat = [i for c in checks for i in c]
        length = len(flat) + 2
        for idx, (code, reg, imm) in enumerate(flat):
            if code == JNE_K:
                out.append(_insn(JNE_K, reg, off=length - (idx + 1), imm=imm))
            elif code == MOV64_X:
                out.append(_insn(MOV64_X, reg, 2))
            else:
                out.append(_insn(code, reg, imm=imm))
        out.append(_insn(MOV64_K, 0, imm=1))
        out.append(_insn(EXIT))
    out.append(_insn(MOV64_K, 0, imm=0))
    out.append(_insn(EXIT))
    return b"".join(out)


def apply(d: str, res: dict) -> None:
    rules = res.get("devices")
    if rules is None:
        return
    from minibox._native import ffi, lib

    code = program(rules)
    buf = ffi.new("char[]", code)
    log = ffi.new("char[]", 65536)
    n = len(code) // 8
    prog = lib.mb_bpf_load_devices(buf, n, log, 65536)
    why = "cgroup v2 has no devices.allow: a BPF program decides each device access"
    if prog < 0:
        err = OSError(ffi.errno, f"bpf(BPF_PROG_LOAD) of the device filter failed: "
                                 f"{os.strerror(ffi.errno)}: {ffi.string(log).decode()[:400]}")
        explain.failed(f"bpf(BPF_PROG_LOAD, CGROUP_DEVICE, {n} insns)", err, why, "bpf(2)")
        raise err
    explain.step(f"bpf(BPF_PROG_LOAD, CGROUP_DEVICE, {n} insns)", prog, why, "bpf(2)")
    try:
        cg = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if lib.mb_bpf_attach_devices(prog, cg) < 0:
                err = OSError(ffi.errno, f"bpf(BPF_PROG_ATTACH) to {d} failed: "
                                         f"{os.strerror(ffi.errno)}")
                explain.failed(f"bpf(BPF_PROG_ATTACH, {d}, BPF_CGROUP_DEVICE)", err, why,
                               "bpf(2)")
                raise err
            explain.step(f"bpf(BPF_PROG_ATTACH, {d}, BPF_CGROUP_DEVICE)", 0,
                         "attach the device filter to the container's group", "bpf(2)")
        finally:
            os.close(cg)
    finally:
        os.close(prog)  # the attachment keeps the program alive
