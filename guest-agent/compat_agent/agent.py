"""The guest agent's main loop: announce itself, then answer the host's requests."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

from compat_agent.wire.framing import (
    PORT_NAME,
    PROTOCOL_VERSION,
    SCHEMA,
    ChannelClosed,
    ProtocolError,
    encode,
    fd_reader,
    read_frame,
)

from . import AGENT_VERSION

IMAGE_INFO = "/etc/compat-image.json"
# Present only in the test build of the image (compat.guest.image.ImageBuilder(test_faults=True)):
# then a check request for an object named compat-fault-<kind>... injects that fault instead.
TEST_FAULTS = "/etc/compat-test-faults"
FAULT_PREFIX = "compat-fault-"
FAULTS = ("panic", "hang", "garbage", "exit", "malformed")
# In the same build, compat-fault-nofile... is checked for real under a lowered open-file limit,
# so that a small object runs out of it as one with thousands of maps could (resources.py).
LIMIT_FAULTS = {"nofile": 64}


def find_port(timeout: float = 20.0) -> str:
    """The /dev node of the virtio-serial port named PORT_NAME (no udev in the guest)."""
    start = time.monotonic()
    deadline = start + timeout
    base = "/sys/class/virtio-ports"
    while True:
        try:
            for entry in sorted(os.listdir(base)):
                with open(f"{base}/{entry}/name") as f:
                    if f.read().strip() == PORT_NAME:
                        return f"/dev/{entry}"
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"compat-agent: no virtio port named {PORT_NAME}")
        if not os.path.isdir(base) and time.monotonic() > start + 2:  # drivers probe before /init runs
            raise SystemExit(
                "compat-agent: this kernel has no virtio-serial driver (virtio_console, virtio_pci): build them "
                "in, or give the kernel's modules in the matrix (modules: a lib/modules/RELEASE directory)"
            )
        time.sleep(0.02)


def libbpf_version() -> str | None:
    """major.minor of the libbpf shared library the agent loads."""
    try:
        lib = ctypes.CDLL("libbpf.so.1")
        return f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"
    except (OSError, AttributeError):
        return None


def hello() -> dict:
    """What the guest tells the host once it is ready."""
    uname = os.uname()
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError):
        uptime = None
    try:
        with open(IMAGE_INFO) as f:
            image = json.load(f)
    except (OSError, ValueError):
        image = {}
    try:
        with open("/proc/meminfo") as f:
            mem_total_kb = int(f.readline().split()[1])  # "MemTotal:  492000 kB"
    except (OSError, ValueError, IndexError):
        mem_total_kb = None
    return {
        "type": "hello",
        "schema": SCHEMA,
        "agent": AGENT_VERSION,
        "protocol": PROTOCOL_VERSION,  # the host refuses another (wire/messages.py check_protocol)
        "release": uname.release,
        "kernel_build": uname.version,
        "machine": uname.machine,
        "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
        "libbpf": libbpf_version(),
        "libbpf_package": image.get("libbpf"),
        "python": sys.version.split()[0],
        "uptime": uptime,
        "mem_total_kb": mem_total_kb,
    }


def handle(message: dict, payload: bytes) -> dict | None:
    """Answer one request; None means: stop the agent."""
    kind = message["type"]
    reply = {"id": message.get("id")}
    if kind == "ping":
        return {**reply, "type": "pong", "payload_bytes": len(payload)}
    if kind == "shutdown":
        return None
    if kind == "warm":
        # Before the host snapshots this guest: pay the imports once, so every guest restored
        # from the snapshot has them for free.
        import importlib

        for name in LAZY_IMPORTS:
            importlib.import_module(name)
        from compat_agent.bpf.kernelbtf import install  # and parse the kernel's BTF once for every later load

        return {**reply, "type": "warm", "modules": len(sys.modules), "kernel_btf": install()}
    if kind in ("check", "probe", "load_modules", "run"):
        # Imported here, not at start-up: python imports cost ~7x under emulation and a VM that
        # only answers pings should not pay for them.
        try:
            if kind == "check":
                from compat_agent.checker.check import check

                return {**check(message, payload), **reply}
            if kind == "run":  # compat run: the team's own loader (command/run.py)
                from compat_agent.command.run import run

                return {**run(message, payload), **reply}
            if kind == "load_modules":  # kernel modules that define functions the next object names
                from compat_agent.bpf.modules import load_given

                return {**load_given(list(message.get("modules") or []), payload), **reply}
            from compat_agent.probe.probe import probe

            return {**probe(message), **reply}
        except Exception as e:  # one broken request must not kill the agent (and the VM)
            import traceback

            error = f"{kind} failed: {type(e).__name__}: {e}"
            return {**reply, "type": "error", "error": error, "traceback": traceback.format_exc()[-4000:]}
    return {**reply, "type": "error", "error": f"unknown request type {kind!r}"}


def serve(fd: int) -> None:
    read_exact = fd_reader(lambda n: os.read(fd, n))

    def send(message: dict, payload: bytes = b"") -> None:
        data = memoryview(encode(message, payload))
        while data:
            data = data[os.write(fd, data) :]

    send(hello())
    # After the hello: a cold boot is ready as soon as the agent has said it (the checker's modules
    # are imported in the guest's warm-up, before its snapshot), and no request comes before it.
    from compat_agent.checker.resources import lowered_open_files, raise_open_files

    raise_open_files()  # objects with thousands of maps need more fds than the default 1024
    while True:
        try:
            message, payload = read_frame(read_exact)
        except ChannelClosed:
            return  # the host went away: nothing left to do
        except ProtocolError as e:
            send({"type": "error", "error": f"protocol error: {e}"})
            return
        fault = test_fault(message)
        if fault in LIMIT_FAULTS:
            with lowered_open_files(LIMIT_FAULTS[fault]):
                reply = handle(message, payload)
        elif fault:
            inject(fault, fd, message, send)
            continue
        else:
            reply = handle(message, payload)
        if reply is None:
            send({"type": "bye", "id": message.get("id")})
            return
        send(reply)


def test_fault(message: dict) -> str | None:
    """The fault a test asks for (test image only): compat-fault-panic.o -> "panic"."""
    name = str(message.get("object") or "") if message.get("type") == "check" else ""
    if not name.startswith(FAULT_PREFIX) or not os.path.exists(TEST_FAULTS):
        return None
    kind = name[len(FAULT_PREFIX) :].split(".")[0].split("-")[0]
    return kind if kind in FAULTS or kind in LIMIT_FAULTS else None


def inject(fault: str, fd: int, message: dict, send) -> None:
    """Misbehave as a dying, hung or broken guest would (for compat's fault-injection tests)."""
    print(f"compat-fault: {fault}", file=sys.stderr, flush=True)  # on the console: the tests wait for it
    if fault == "panic":
        with open("/proc/sysrq-trigger", "w") as f:
            f.write("c")
    elif fault == "hang":
        while True:
            time.sleep(3600)
    elif fault == "garbage":
        os.write(fd, b"\x00\xffnot a frame\n" * 64)
    elif fault == "exit":
        os._exit(3)
    elif fault == "malformed":
        program = {"program": 7, "verdict": "maybe", "log": ["not", "a", "string"]}
        send({"type": "check_result", "id": message.get("id"), "open": {"ok": True}, "programs": [program]})


# Modules the agent imports only on some paths (check and probe requests): the image trace
# imports them too so they are in the image.
LAZY_IMPORTS = (
    "compat_agent.bpf.libbpf",
    "compat_agent.checker.check",
    "compat_agent.elf.analysis",
    "compat_agent.attach.attach",
    "compat_agent.attach.perfevent",
    "compat_agent.probe.probe",
    "traceback",
    "compat_agent.bpf.modules",
    "compat_agent.command.run",
    "pyroute2",  # netlink for XDP/tc attach targets, imported when first needed
)


def trace_imports() -> None:
    """Print every module file the agent imports (the image keeps only those)."""
    import importlib

    for name in LAZY_IMPORTS:
        importlib.import_module(name)
    files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
    print(json.dumps(files))


def main() -> None:
    if "--trace-imports" in sys.argv:
        trace_imports()
        return
    fd = os.open(find_port(), os.O_RDWR)
    try:
        serve(fd)
    finally:
        os.close(fd)
