"""A synthetic run and its baseline, built by hand (no VM): the input of the golden report tests.

Kernels (matrix order differs from version order on purpose): sid (7.2.13), 5.10 (5.10.262),
6.1.170, 6.1.176 (required). Objects counter.o and filter.o.

    program                 baseline (old)          now
    counter.o:count_getpid  accepted everywhere     rejected on 5.10 (missing bpf_loop): a regression
    counter.o:count_new     -                       added; no verdict on sid (the guest died)
    filter.o:xdp_filter     rejected on 6.1.176     accepted on 5.10 and 6.1.170, rejected on 6.1.176
                                                    (still rejected: a stable-backport regression on
                                                    the kernel axis), accepted on sid
    filter.o:xdp_pass       rejected on 5.10        accepted everywhere (fixed on 5.10)
    filter.o:xdp_old        accepted everywhere     removed
"""

from __future__ import annotations

from compat.results.model import KernelInfo, ObjectInfo, ProgramResult, RunResult

SHA_COUNTER = "1" * 64
SHA_FILTER = "2" * 64
SHA_COUNTER_OLD = "3" * 64

KERNELS = [
    ("sid", "Debian sid (newest)", "7.2.13", "7.2.13+deb14-amd64", False),
    ("5.10", "Debian 11 (5.10 LTS)", "5.10.262", "5.10.0-40-amd64", False),
    ("6.1.170", "Debian 12 (6.1.170)", "6.1.170", "6.1.0-40-amd64", False),
    ("6.1.176", "Debian 12 (6.1.176)", "6.1.176", "6.1.0-41-amd64", True),
]

STATS_LOG = (
    "processed {insns} insns (limit 1000000) max_states_per_insn 0 total_states {states} peak_states {states} "
    "mark_read 1\nverification time {us} usec\nstack depth 16\n"
)

LOG_510_LOOP = """func#0 @0
func#1 @20
number of funcs in func_info doesn't match number of subprogs
processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""

LOG_FILTER_170 = """func#0 @0
0: R1=ctx(id=0,off=0,imm=0) R10=fp0
; void *data = (void *)(long)ctx->data; @ filter.bpf.c:10
0: (61) r2 = *(u32 *)(r1 +0)          ; R2_w=pkt(id=0,off=0,r=0,imm=0)
; void *data_end = (void *)(long)ctx->data_end; @ filter.bpf.c:11
1: (61) r3 = *(u32 *)(r1 +4)          ; R3_w=pkt_end(id=0,off=0,imm=0)
; if (data + 4 > data_end) @ filter.bpf.c:12
2: (bf) r1 = r2                       ; R1_w=pkt(id=0,off=0,r=0,imm=0)
3: (07) r1 += 4                       ; R1_w=pkt(id=0,off=4,r=0,imm=0)
4: (2d) if r1 > r3 goto pc+3          ; R1_w=pkt(id=0,off=4,r=4,imm=0)
; return *(__u32 *)data == 0x1234 ? XDP_DROP : XDP_PASS; @ filter.bpf.c:14
5: (61) r0 = *(u32 *)(r2 +0)          ; R0_w=scalar(umax=4294967295,var_off=(0x0; 0xffffffff))
6: (95) exit
processed 9 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1
verification time 31 usec
"""

LOG_FILTER_176 = """func#0 @0
0: R1=ctx(id=0,off=0,imm=0) R10=fp0
; void *data = (void *)(long)ctx->data; @ filter.bpf.c:10
0: (61) r2 = *(u32 *)(r1 +0)          ; R2_w=pkt(id=1,off=0,r=0,imm=0)
; void *data_end = (void *)(long)ctx->data_end; @ filter.bpf.c:11
1: (61) r3 = *(u32 *)(r1 +4)          ; R3_w=pkt_end(id=0,off=0,imm=0)
; if (data + 4 > data_end) @ filter.bpf.c:12
2: (bf) r1 = r2                       ; R1_w=pkt(id=1,off=0,r=0,imm=0)
3: (07) r1 += 4                       ; R1_w=pkt(id=1,off=4,r=0,imm=0)
4: (2d) if r1 > r3 goto pc+3          ; R1_w=pkt(id=1,off=4,r=0,imm=0)
; return *(__u32 *)data == 0x1234 ? XDP_DROP : XDP_PASS; @ filter.bpf.c:14
5: (61) r0 = *(u32 *)(r2 +0)
invalid access to packet, off=0 size=4, R2(id=1,off=0,r=0)
R2 offset is outside of the packet
processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1
verification time 44 usec
"""


def _stats(insns: int, states: int, us: int) -> dict:
    return {
        "insns_processed": insns,
        "states_total": states,
        "states_peak": states,
        "verification_time_us": us,
        "stack_depth": [16],
        "insn_cnt": insns,
    }


def _ok(obj, sha, prog, section, ptype, kernel, insns=20, states=2, us=40) -> ProgramResult:
    return ProgramResult(
        object=obj,
        object_sha256=sha,
        program=prog,
        section=section,
        prog_type=ptype,
        kernel=kernel,
        verdict="accepted",
        stats=_stats(insns, states, us),
        log=STATS_LOG.format(insns=insns, states=states, us=us),
        log_level=4,
        attach={"status": "ok", "errno": None, "reason": None},
        load_ms=1.5,
    )


def _rejected(obj, sha, prog, section, ptype, kernel, reason, message, log, source=None, errno=22) -> ProgramResult:
    return ProgramResult(
        object=obj,
        object_sha256=sha,
        program=prog,
        section=section,
        prog_type=ptype,
        kernel=kernel,
        verdict="rejected",
        stage="load",
        errno=errno,
        reason=reason,
        message=message,
        detail=message,
        stats=_stats(0, 0, 10),
        log=log,
        log_level=1,
        attach={"status": "not_attempted", "errno": None, "reason": "the program was not loaded"},
        load_ms=2.0,
        source=source,
    )


def _kernels() -> list[KernelInfo]:
    return [
        KernelInfo(
            id=i,
            label=label,
            version=v,
            release=rel,
            packages=[f"linux-image-{rel}"],
            libbpf="1.5.0",
            accel="tcg",
            btf=True,
            boot_seconds=2.5,
            order=n,
            required=req,
        )
        for n, (i, label, v, rel, req) in enumerate(KERNELS)
    ]


TP = "tracepoint/syscalls/sys_enter_getpid"
COUNTER_SOURCE = {
    "file": "src/counter.bpf.c",
    "line": 31,
    "column": 2,
    "text": "bpf_loop(1, add_one, &step, 0);",
    "insn": 9,
    "how": "call",
    "path": None,
}
FILTER_SOURCE = {
    "file": "src/filter.bpf.c",
    "line": 14,
    "column": None,
    "text": "return *(__u32 *)data == 0x1234 ? XDP_DROP : XDP_PASS;",
    "insn": 5,
    "how": "log",
    "path": None,
}


def current() -> RunResult:
    results = []
    for k, *_ in KERNELS:
        if k == "5.10":
            results.append(
                _rejected(
                    "counter.o",
                    SHA_COUNTER,
                    "count_getpid",
                    TP,
                    "tracepoint",
                    k,
                    "missing_helper",
                    "helper bpf_loop (181) is not available on this kernel",
                    LOG_510_LOOP,
                    COUNTER_SOURCE,
                )
            )
        else:
            results.append(_ok("counter.o", SHA_COUNTER, "count_getpid", TP, "tracepoint", k, insns=31, states=3))
        if k == "sid":
            results.append(
                ProgramResult(
                    object="counter.o",
                    object_sha256=SHA_COUNTER,
                    program="count_new",
                    section=TP,
                    prog_type=None,
                    kernel=k,
                    verdict="error",
                    reason="infrastructure_error",
                    message="sid: the guest died while checking counter.o (kernel panic)",
                    log="Kernel panic - not syncing",
                )
            )
        else:
            results.append(_ok("counter.o", SHA_COUNTER, "count_new", TP, "tracepoint", k, insns=12, states=1))
    for k, *_ in KERNELS:
        if k == "6.1.176":
            results.append(_filter_rejected_on_176(k))
        else:
            log_insns = 9 if k != "sid" else 11
            r = _ok("filter.o", SHA_FILTER, "xdp_filter", "xdp", "xdp", k, insns=log_insns, states=1, us=31)
            if k != "sid":
                r.log, r.log_level = LOG_FILTER_170, 1
            results.append(r)
        # A section that names no type: loaded as the type its context suggests (progtype.py).
        guessed = _ok("filter.o", SHA_FILTER, "xdp_pass", "fast_path", "xdp", k, insns=4, states=1)
        guessed.prog_type_from = "context"
        results.append(guessed)
    objects = [
        ObjectInfo("counter.o", "build/counter.o", SHA_COUNTER, 4096, ["count_getpid", "count_new"]),
        ObjectInfo("filter.o", "build/filter.o", SHA_FILTER, 2048, ["xdp_filter", "xdp_pass"]),
    ]
    return RunResult(
        kernels=_kernels(),
        objects=objects,
        results=results,
        image={"suite": "trixie", "python": "3.13", "libbpf": "1.5.0", "key": "0123456789abcdef"},
        options={"attach": True, "wall_seconds": 12.5, "kernel_axis": "version"},
        created="2025-01-02T03:04:05Z",
        compat_version="0.1.0",
    )


def _filter_rejected_on_176(kernel: str):
    """The stable-backport regression of the fixture: filter.o's xdp_filter rejected on 6.1.176."""
    return _rejected(
        "filter.o",
        SHA_FILTER,
        "xdp_filter",
        "xdp",
        "xdp",
        kernel,
        "verifier_rejection",
        "the verifier rejected the program: R2 offset is outside of the packet",
        LOG_FILTER_176,
        FILTER_SOURCE,
        errno=13,
    )


def baseline() -> RunResult:
    results = []
    for k, *_ in KERNELS:
        results.append(_ok("counter.o", SHA_COUNTER_OLD, "count_getpid", TP, "tracepoint", k, insns=20, states=2))
        if k == "6.1.176":
            results.append(_filter_rejected_on_176(k))
        else:
            results.append(_ok("filter.o", SHA_FILTER, "xdp_filter", "xdp", "xdp", k, insns=9, states=1))
        if k == "5.10":
            results.append(
                _rejected(
                    "filter.o",
                    SHA_FILTER,
                    "xdp_pass",
                    "xdp",
                    "xdp",
                    k,
                    "unsupported_map_type",
                    "map type ringbuf (map events) is not supported by this kernel",
                    "",
                )
            )
        else:
            results.append(_ok("filter.o", SHA_FILTER, "xdp_pass", "xdp", "xdp", k, insns=4, states=1))
        results.append(_ok("filter.o", SHA_FILTER, "xdp_old", "xdp", "xdp", k, insns=3, states=1))
    objects = [
        ObjectInfo("counter.o", "old/counter.o", SHA_COUNTER_OLD, 4000, ["count_getpid"]),
        ObjectInfo("filter.o", "old/filter.o", SHA_FILTER, 2048, ["xdp_filter", "xdp_pass", "xdp_old"]),
    ]
    return RunResult(
        kernels=_kernels(),
        objects=objects,
        results=results,
        image={"suite": "trixie", "python": "3.13", "libbpf": "1.5.0", "key": "0123456789abcdef"},
        options={"attach": True, "wall_seconds": 11.0, "kernel_axis": "version"},
        created="2024-12-01T00:00:00Z",
        compat_version="0.1.0",
    )
