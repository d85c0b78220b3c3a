#!/usr/bin/env python3
"""fsx.py - an fsx-style random exerciser (python3 stdlib only).

Usage: fsx.py FILE [--ops N] [--seed S] [--maxlen BYTES] [--server COPY]

Applies random writes, truncates, reads, mmap reads and close/reopen cycles
to FILE and checks every read byte for byte against an in-memory model.
With --server, the source's copy of the same file is compared after every
reopen and at the end.  Exits 0 on success, 1 with the failing operation
and the first differing offset.
"""
import argparse, mmap, os, random, sys

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--ops", type=int, default=int(os.environ.get("HOARD_FSX_OPS", "3000")))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--maxlen", type=int, default=3 * 1024 * 1024)
    ap.add_argument("--server", default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    print(f"fsx: seed {seed}, {a.ops} ops, maxlen {a.maxlen}")
    rnd = random.Random(seed)
    model = bytearray()
    fd = os.open(a.file, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    log = []

    def fail(msg):
        print("FAIL:", msg)
        print("last ops:", *log[-15:], sep="\n  ")
        sys.exit(1)

    def check(got, off, what):
        exp = bytes(model[off:off + len(got)])
        if got != exp:
            for i in range(min(len(got), len(exp))):
                if got[i] != exp[i]:
                    fail(f"{what}: byte {off + i}: expected {exp[i]:#x}, got {got[i]:#x}")
            fail(f"{what}: length: expected {len(exp)}, got {len(got)}")

    def rand_range():
        off = rnd.randrange(a.maxlen)
        n = rnd.choice([1, 17, 512, 4096, 4096 * 3 + 5, 65536, 200000, 1 << 20])
        return off, min(n, a.maxlen - off)

    def compare_all(what):
        data = os.pread(fd, len(model) + 10, 0)
        check(data, 0, what)
        if len(data) != len(model):
            fail(f"{what}: size {len(data)}, model {len(model)}")
        if a.server:
            with open(a.server, "rb") as f:
                s = f.read()
            if s != bytes(model):
                fail(f"{what}: server copy differs (size {len(s)} vs {len(model)})")

    for i in range(a.ops):
        op = rnd.choices(["write", "read", "mread", "trunc", "reopen", "size"],
                         [30, 30, 12, 8, 8, 2])[0]
        if op == "write":
            off, n = rand_range()
            data = rnd.randbytes(n)
            log.append(f"{i} write {off} {n}")
            if os.pwrite(fd, data, off) != n:
                fail("short write")
            if off > len(model):
                model.extend(b"\0" * (off - len(model)))
            model[off:off + n] = data
        elif op == "read":
            off, n = rand_range()
            log.append(f"{i} read {off} {n}")
            check(os.pread(fd, n, off), off, f"op {i} read {off}+{n}")
        elif op == "mread":
            if not model:
                continue
            off = rnd.randrange(len(model))
            n = min(rnd.choice([1, 100, 4096, 70000, 1 << 20]), len(model) - off)
            log.append(f"{i} mread {off} {n}")
            with mmap.mmap(fd, len(model), prot=mmap.PROT_READ) as m:
                check(m[off:off + n], off, f"op {i} mmap read {off}+{n}")
        elif op == "trunc":
            n = rnd.randrange(a.maxlen)
            log.append(f"{i} truncate {n}")
            os.ftruncate(fd, n)
            if n < len(model):
                del model[n:]
            else:
                model.extend(b"\0" * (n - len(model)))
        elif op == "reopen":
            log.append(f"{i} close+reopen")
            os.close(fd)
            fd = os.open(a.file, os.O_RDWR)
            compare_all(f"op {i} after reopen")
        else:
            st = os.fstat(fd)
            if st.st_size != len(model):
                fail(f"op {i}: fstat size {st.st_size}, model {len(model)}")
    os.close(fd)
    fd = os.open(a.file, os.O_RDONLY)
    compare_all("final")
    os.close(fd)
    print("fsx: ok")

main()
