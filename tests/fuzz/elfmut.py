"""A structure-aware mutator for BPF ELF objects: it finds the structures of a (valid) seed with
pyelftools and a small BTF/BTF.ext walker, and rewrites them by offset.

What it knows (each integer field is tagged with its kind, so a mutation picks a kind first and
then one of its fields, and values fit the field: sizes, offsets, counts, type ids, string offsets):
- the ELF header and the section headers (sh_name, type, flags, offset, size, link, info, entsize);
- symbols (.symtab) and relocations (.rel*: offset, symbol index, type);
- instructions of program sections (opcode, registers, offset, immediate);
- legacy map definitions (`maps`, `maps/*`: type, key/value size, max_entries, flags);
- .BTF: header, every type (name offset, info = kind/vlen/kflag, size or type, and the extra
  records: members, params, enum values, array, var, datasec, decl tag), the string table;
- .BTF.ext: header, func_info, line_info and CO-RE relocation records and their per-section
  headers (section name offset, count, record size).

Besides field writes: strings rewritten (control characters, markup, paths, no terminator), whole
records duplicated or deleted with the counts and offsets that frame them fixed up (a BTF type,
a line_info record, a symbol, a relocation), a section's body replaced by the same section of
another seed (splicing .BTF under another object's .BTF.ext), sections truncated, and section
headers copied over one another. Deterministic for a given random.Random.
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass, field

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 12, 16, 24, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]  # fmt: skip
STRINGS = [b"", b"x" * 300, b"../../etc/passwd", b"/proc/self/environ", b"a\n::warning title=t::x",
           b"\x1b]8;;http://x\x07\x1b[31m", b"<b>|`x`|</b>&amp;", b"%s%n%x", b"\xff\xfe\xc3(", b"\x00\x00",
           b"sec\x7f\x01", b".maps", b"license", b"kprobe/", b"bpf_loop", b"\xe2\x80\xae"]  # fmt: skip

# BTF kinds and the size of the record that follows struct btf_type (per kind; * vlen where so).
BTF_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0), 15: (0, 12),
             17: (4, 0), 19: (0, 12)}  # fmt: skip
BTF_MAGIC = 0xEB9F


@dataclass
class Field:
    offset: int
    size: int
    kind: str


@dataclass
class Record:
    """A fixed-size record in a counted array: duplicating or deleting it also updates `fixups`."""

    offset: int
    size: int
    kind: str
    fixups: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, size, change per record)


@dataclass
class Structure:
    """Where a seed's structures are."""

    fields: dict[str, list[Field]] = field(default_factory=dict)  # kind -> fields
    records: list[Record] = field(default_factory=list)
    sections: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # name -> (index, offset, size)
    strings: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) of NUL-terminated strings
    shoff: int = 0
    shentsize: int = 64
    shnum: int = 0
    btf_types: int = 0  # number of BTF types (for type ids)
    btf_strlen: int = 0

    def add(self, offset: int, size: int, kind: str) -> None:
        self.fields.setdefault(kind, []).append(Field(offset, size, kind))


def parse(data: bytes) -> Structure | None:
    """The structure of an ELF object (None: pyelftools cannot read it)."""
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        s = Structure(shoff=elf["e_shoff"], shentsize=elf["e_shentsize"] or 64, shnum=elf.num_sections())
        for off, size in ((0x04, 1), (0x05, 1), (0x10, 2), (0x12, 2), (0x28, 8), (0x3A, 2), (0x3C, 2), (0x3E, 2)):
            s.add(off, size, "ehdr")
        for i in range(s.shnum):
            base = s.shoff + i * s.shentsize
            for rel, size, kind in ((0, 4, "sh_name"), (4, 4, "sh_type"), (8, 8, "sh_flags"), (24, 8, "sh_offset"),
                                    (32, 8, "sh_size"), (40, 4, "sh_link"), (44, 4, "sh_info"),
                                    (56, 8, "sh_entsize")):  # fmt: skip
                s.add(base + rel, size, kind)
            sec = elf.get_section(i)
            off, size, name = sec["sh_offset"], sec["sh_size"], sec.name
            s.sections.setdefault(name, (i, off, size))
            if sec["sh_type"] == "SHT_NOBITS" or off + size > len(data):
                continue
            _section(s, data, sec["sh_type"], name, off, size, sec["sh_flags"], base)
        return s
    except Exception:
        return None


def _section(s: Structure, data: bytes, sh_type: str, name: str, off: int, size: int, flags: int, hdr: int) -> None:
    fix = [(hdr + 32, 8, 1)]  # the section's sh_size, per byte: scaled by the record size below
    if sh_type == "SHT_SYMTAB":
        for j in range(size // 24):
            sym = off + j * 24
            for rel, n, kind in ((0, 4, "st_name"), (4, 1, "st_info"), (6, 2, "st_shndx"), (8, 8, "st_value"),
                                 (16, 8, "st_size")):  # fmt: skip
                s.add(sym + rel, n, kind)
            if j:
                s.records.append(Record(sym, 24, "symbol", [(hdr + 32, 8, 24)]))
    elif sh_type == "SHT_REL":
        for j in range(size // 16):
            rel = off + j * 16
            s.add(rel, 8, "r_offset")
            s.add(rel + 8, 4, "r_type")
            s.add(rel + 12, 4, "r_sym")
            s.records.append(Record(rel, 16, "relocation", [(hdr + 32, 8, 16)]))
    elif sh_type == "SHT_STRTAB":
        _strings(s, data, off, size)
    elif name == ".BTF":
        _btf(s, data, off, size, fix)
    elif name == ".BTF.ext":
        _btf_ext(s, data, off, size, fix)
    elif name == "maps" or name.startswith("maps/"):
        for j in range(size // 4):
            s.add(off + 4 * j, 4, "map_def")
    elif flags & 0x4:  # SHF_EXECINSTR: BPF instructions
        for j in range(min(size // 8, 2000)):
            insn = off + 8 * j
            s.add(insn, 1, "insn_code")
            s.add(insn + 1, 1, "insn_regs")
            s.add(insn + 2, 2, "insn_off")
            s.add(insn + 4, 4, "insn_imm")


def _strings(s: Structure, data: bytes, off: int, size: int) -> None:
    i = off
    end = off + size
    while i < end:
        j = data.find(b"\0", i, end)
        if j < 0:
            break
        if j > i:
            s.strings.append((i, j - i))
        i = j + 1


def _btf(s: Structure, data: bytes, off: int, size: int, fix: list) -> None:
    if size < 24:
        return
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data, off)
    if magic != BTF_MAGIC:
        return
    for rel, n in ((4, 4), (8, 4), (12, 4), (16, 4), (20, 4)):
        s.add(off + rel, n, "btf_header")
    s.btf_strlen = str_len
    _strings(s, data, off + hdr_len + str_off, min(str_len, size - hdr_len - str_off))
    p, end = off + hdr_len + type_off, off + hdr_len + type_off + type_len
    # Inserting a type moves the string table: type_len and str_off grow with it, and sh_size.
    frame = [(off + 12, 4, 1), (off + 16, 4, 1), (fix[0][0], 8, 1)]
    while p + 12 <= end:
        _name, info, _size = struct.unpack_from("<III", data, p)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        fixed, per = BTF_EXTRA.get(kind, (0, 0))
        length = 12 + fixed + per * vlen
        s.add(p, 4, "btf_name_off")
        s.add(p + 4, 4, "btf_info")
        s.add(p + 8, 4, "btf_size_type")
        for q in range(p + 12, min(p + length, end), 4):
            s.add(q, 4, "btf_extra")  # member name/type/offset, param, array index/elem/nelems, var linkage ...
        s.records.append(Record(p, length, "btf_type", [(o, n, c * length) for o, n, c in frame]))
        s.btf_types += 1
        p += length


def _btf_ext(s: Structure, data: bytes, off: int, size: int, fix: list) -> None:
    if size < 24:
        return
    magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, off)
    if magic != BTF_MAGIC:
        return
    for rel in range(4, min(hdr_len, 40), 4):
        s.add(off + rel, 4, "btf_ext_header")
    # (offset field in the header, length field, record kind and its fields)
    parts = [(8, 12, "func_info", ("insn_off", "type_id")),
             (16, 20, "line_info", ("insn_off", "file_name_off", "line_off", "line_col"))]  # fmt: skip
    if hdr_len >= 32:
        parts.append((24, 28, "core_relo", ("insn_off", "type_id", "access_str_off", "kind")))
    for off_at, len_at, kind, names in parts:
        sub_off, sub_len = struct.unpack_from("<II", data, off + off_at)
        p, end = off + hdr_len + sub_off, off + hdr_len + sub_off + sub_len
        if sub_len < 4 or end > off + size:
            continue
        rec_size = struct.unpack_from("<I", data, p)[0]
        s.add(p, 4, f"{kind}_rec_size")
        p += 4
        if rec_size < 4 or rec_size > 64:
            continue
        # Later parts move when a record is inserted: their offsets in the header grow with it.
        later = [(off + o, 4, 1) for o, _l, _k, _n in parts if o > off_at]
        while p + 8 <= end:
            _sec_name, count = struct.unpack_from("<II", data, p)
            s.add(p, 4, f"{kind}_sec_name")
            s.add(p + 4, 4, f"{kind}_count")
            count_at = p + 4
            p += 8
            for _ in range(count):
                if p + rec_size > end:
                    return
                for k, fname in enumerate(names):
                    if 4 * k + 4 <= rec_size:
                        s.add(p + 4 * k, 4, f"{kind}_{fname}")
                fixups = [(count_at, 4, 1), (off + len_at, 4, rec_size), (fix[0][0], 8, rec_size)]
                fixups += [(o, n, rec_size) for o, n, _ in later]
                s.records.append(Record(p, rec_size, kind, fixups))
                p += rec_size


# -- writing ------------------------------------------------------------------------------------
def get_int(buf: bytearray, offset: int, size: int) -> int:
    return int.from_bytes(buf[offset : offset + size], "little") if offset >= 0 and offset + size <= len(buf) else 0


def put_int(buf: bytearray, offset: int, size: int, value: int) -> None:
    if offset >= 0 and offset + size <= len(buf):
        buf[offset : offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def _move(buf: bytearray, s: Structure, at: int, delta: int) -> None:
    """After inserting (delta > 0) or deleting bytes at `at`: shift the section offsets and the
    section header table that lie after it, so the rest of the file still parses."""
    shoff = s.shoff + (delta if s.shoff >= at else 0)
    if s.shoff >= at:
        put_int(buf, 0x28, 8, shoff)
    for i in range(s.shnum):
        h = shoff + i * s.shentsize
        sec_off = get_int(buf, h + 24, 8)
        if sec_off >= at and i:
            put_int(buf, h + 24, 8, sec_off + delta)


def _value(rng: random.Random, s: Structure, buf: bytearray, f: Field) -> int:
    current = get_int(buf, f.offset, f.size)
    n = len(buf)
    pick = rng.randrange(10)
    if pick < 3:
        return rng.choice(INTERESTING)
    if pick < 5:
        return current + rng.choice([-1, 1, -8, 8, 12, -12, 1 << 16, -(1 << 16)])
    if pick == 5:
        return rng.choice([n, n - 1, n + 1, s.shoff, s.shnum, s.shnum + 1])
    if pick == 6 and ("name" in f.kind or f.kind in ("line_info_line_off", "core_relo_access_str_off")):
        return rng.choice([0, s.btf_strlen, s.btf_strlen - 1, s.btf_strlen + 1, current + 1, current - 1])
    if pick == 7 and ("type" in f.kind or f.kind in ("btf_size_type", "btf_extra")):
        return rng.choice([0, s.btf_types, s.btf_types + 1, rng.randrange(max(s.btf_types, 1)), 0x7FFFFFFF])
    if pick == 8:  # the value of another field of the same kind (a plausible but wrong one)
        other = rng.choice(s.fields[f.kind])
        return get_int(buf, other.offset, other.size)
    return rng.randrange(1 << (8 * f.size))


def mutate(rng: random.Random, data: bytes, s: Structure, others: list[tuple[bytes, Structure | None]]) -> bytes:
    """One to three structure-aware mutations of data (a seed whose structure is s)."""
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3])):
        op = rng.randrange(8)
        if op <= 2 and s.fields:  # a field, its kind chosen first so rare kinds are reached
            kind = rng.choice(list(s.fields))
            f = rng.choice(s.fields[kind])
            put_int(buf, f.offset, f.size, _value(rng, s, buf, f))
        elif op == 3 and s.strings:  # a string: control characters, markup, paths, no terminator
            off, length = rng.choice(s.strings)
            new = rng.choice(STRINGS)
            if rng.random() < 0.6:  # same length: nothing else moves
                new = (new * (length // max(len(new), 1) + 1))[:length] if new else bytes(length)
                buf[off : off + length] = new
            else:  # overrun the terminator into the next string
                buf[off : off + len(new) + 1] = (new + b"x")[: len(buf) - off]
        elif op == 4 and s.records:  # duplicate or delete a record, fixing the counts that frame it
            r = rng.choice(s.records)
            delta = r.size if rng.random() < 0.6 else -r.size
            chunk = bytes(buf[r.offset : r.offset + r.size])
            if len(chunk) != r.size:
                continue
            for off, size, change in r.fixups:
                put_int(buf, off, size, get_int(buf, off, size) + (change if delta > 0 else -change))
            if delta > 0:
                buf[r.offset : r.offset] = chunk
            else:
                del buf[r.offset : r.offset + r.size]
            _move(buf, s, r.offset + 1 if delta > 0 else r.offset + r.size, delta)
            return bytes(buf)  # later offsets in s are stale now
        elif op == 5 and others:  # splice: this section's body from another seed
            other, os_ = rng.choice(others)
            if os_ is None:
                continue
            common = [n for n in s.sections if n in os_.sections and n]
            if not common:
                continue
            name = rng.choice(common)
            i, off, size = s.sections[name]
            _, o_off, o_size = os_.sections[name]
            body = other[o_off : o_off + o_size]
            if off + size > len(buf):
                continue
            buf[off : off + size] = body
            put_int(buf, s.shoff + (len(body) - size if s.shoff >= off + size else 0) + i * s.shentsize + 32, 8,
                    len(body))  # fmt: skip
            _move(buf, s, off + size if len(body) >= size else off + len(body), len(body) - size)
            return bytes(buf)
        elif op == 6 and s.sections:  # truncate a section (its header says less, or the file ends)
            i, off, size = rng.choice(list(s.sections.values()))
            if rng.random() < 0.5:
                put_int(buf, s.shoff + i * s.shentsize + 32, 8, rng.randrange(size + 1) if size else 1)
            else:
                del buf[off + rng.randrange(size + 1) :]
                return bytes(buf)
        elif op == 7 and s.shnum > 2:  # a section header over another (two sections, one body)
            a, b = rng.randrange(1, s.shnum), rng.randrange(1, s.shnum)
            ha, hb = s.shoff + a * s.shentsize, s.shoff + b * s.shentsize
            if rng.random() < 0.5:
                buf[hb : hb + s.shentsize] = buf[ha : ha + s.shentsize]
            else:  # only where it points: the name and type stay
                buf[hb + 24 : hb + 40] = buf[ha + 24 : ha + 40]
    return bytes(buf)
