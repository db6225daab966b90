"""What an attach failure means on the guest's architecture, when the architecture is why.

An object built and tested on x86-64 often names x86-64's own symbols: a kprobe on
``__x64_sys_getpid`` (the syscall wrapper's name on x86-64; arm64's is ``__arm64_sys_getpid``).
And arm64 kernels got BPF trampolines later than x86-64: fentry, fexit and fmod_ret programs
attach to kernel functions on x86-64 from Linux 5.5, on arm64 only from 6.4 (the BPF trampoline
came to arm64 in 6.0, its calls from kernel functions, ftrace's direct calls, in 6.4); before,
the attach fails with ENOTSUPP (524). The verdict stays the kernel's: these words only say why.
"""

from __future__ import annotations

import os

# The prefix of the syscall wrappers each architecture's kernel has (uname -m), by its Debian name.
SYSCALL_PREFIXES = {"x86_64": ("amd64", "__x64_sys_"), "aarch64": ("arm64", "__arm64_sys_")}
ENOTSUPP = 524  # the kernel's internal "not supported" (not EOPNOTSUPP): what an arch hook without support says
TRAMPOLINE_TYPES = ("tracing",)  # fentry, fexit, fmod_ret (and fentry.s …): BPF trampolines


def hint(type_name: str, section: str, target: str | None, errno: int | None, machine: str | None = None) -> str | None:
    """Why an attach of a program of type_name (its section, its target) failed with errno on this
    guest's machine (uname -m), when its architecture is why; None else."""
    machine = machine or os.uname().machine
    target = target or section.partition("/")[2]
    own = SYSCALL_PREFIXES.get(machine)
    if own is not None and target:
        for other_machine, (arch, prefix) in SYSCALL_PREFIXES.items():
            if other_machine != machine and target.startswith(prefix):
                name = target.removeprefix(prefix)
                ksyscall = f'SEC("ksyscall/{name}")'
                return (f"{target} is {arch}'s syscall wrapper: an {own[0]} kernel's are {own[1]}* ({own[1]}{name} "
                        f"where it has the syscall; {ksyscall} names it on every architecture)")  # fmt: skip
    if machine == "aarch64" and errno == ENOTSUPP and type_name in TRAMPOLINE_TYPES:
        return ("arm64 kernels attach fentry/fexit/fmod_ret programs to kernel functions from Linux 6.4 on "
                "(BPF trampolines called by ftrace: x86-64 has them since 5.5)")
    return None
