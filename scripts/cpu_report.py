"""Print the CPU as its programs see it: CPUID's vendor and brand, and the SIMD kernels torch and NumPy dispatch to.

Run natively, or under an emulator (scripts/other_isa.sh --emulate-amd), where /proc/cpuinfo still describes the
host and only CPUID tells the emulated CPU. x86-64 Linux only: the CPUID call is nine instructions in an
executable page.
"""

import ctypes
import mmap
import struct

import numpy
import torch

from ropelab.determinism import numpy_simd

# cpuid(leaf in edi, subleaf 0) -> eax, ebx, ecx, edx stored at rsi (System V calling convention)
_CPUID = bytes([
    0x53,              # push rbx (callee-saved; cpuid writes it)
    0x89, 0xF8,        # mov eax, edi
    0x31, 0xC9,        # xor ecx, ecx
    0x0F, 0xA2,        # cpuid
    0x89, 0x06,        # mov [rsi], eax
    0x89, 0x5E, 0x04,  # mov [rsi+4], ebx
    0x89, 0x4E, 0x08,  # mov [rsi+8], ecx
    0x89, 0x56, 0x0C,  # mov [rsi+12], edx
    0x5B,              # pop rbx
    0xC3,              # ret
])


def main() -> None:
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_CPUID)
    call = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_void_p)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    out = (ctypes.c_uint32 * 4)()

    def cpuid(leaf: int) -> tuple[int, int, int, int]:
        call(leaf, ctypes.addressof(out))
        return tuple(out)

    _, ebx, ecx, edx = cpuid(0)
    vendor = struct.pack("<III", ebx, edx, ecx).decode()
    brand = b"".join(struct.pack("<IIII", *cpuid(leaf)) for leaf in (0x80000002, 0x80000003, 0x80000004))
    brand_text = brand.rstrip(b"\0").decode().strip()
    simd = numpy_simd()
    print(f"CPUID: {vendor}, {brand_text}; torch CPU capability: "
          f"{torch.backends.cpu.get_cpu_capability()}; NumPy {numpy.__version__} SIMD: {', '.join(simd) or 'none'}")


if __name__ == "__main__":
    main()
