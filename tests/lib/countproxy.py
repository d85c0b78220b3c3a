#!/usr/bin/env python3
"""countproxy.py - a counting (and optionally slow) TCP proxy for NFS tests.

Usage:
  countproxy.py [--delay-ms N] [--also LISTEN=TARGET ...]
                [--cut-after OP:N | --refuse OP:N] [--arm-after OP:N]
                LISTEN TARGET STATSFILE
    LISTEN, TARGET  ADDR:PORT
    --delay-ms N    hold every chunk N ms in each direction (a slow link;
                    chunks stay pipelined, so it adds latency, not a cap)
    --also L=T      forward L to T as well, same counters (for NFSv3: the
                    MOUNT port; libnfs then needs ?mountport=)
  Faults (one at a time, each fires once; the counts are over all
  connections, client->server, of operations as parsed below: NFSv4
  COMPOUND operations and NFSv3 procedures by name, e.g. GETATTR, WRITE):
    --cut-after OP:N  once the call holding the Nth operation OP has been
                    passed to the server, close both sides of that
                    connection (the call may reach the server, its reply
                    never reaches the client); new connections are then
                    accepted and forwarded as before, so a reconnect works
    --refuse OP:N   pass the call holding the Nth operation OP with its
                    RPC procedure number replaced by one no server has:
                    the server answers PROC_UNAVAIL, so that one call
                    fails at the client with an RPC error while the
                    connection stays up
    --arm-after OP:N  count the fault's operations only once N operations
                    OP have passed (default: from the start); e.g.
                    --arm-after READDIR:1 --cut-after GETATTR:40
  With a fault given, calls are passed on whole records (a call is held
  until its last byte has arrived); without one, chunk by chunk as read.

Forwards bytes both ways and keeps STATSFILE (JSON, replaced atomically
after every chunk and on SIGUSR1) up to date:
  connections       accepted so far
  bytes_to_server, bytes_to_client
  rpc_calls         ONC RPC calls seen client->server, any program
  nfs_calls         {"3:READ": n, "4:COMPOUND": n, "3:GETATTR": n, ...}
  nfs4_ops          operations inside NFSv4 COMPOUNDs {"PUTFH": n, "READ": n}
  reads             NFSv3 READ calls + NFSv4 READ ops
  writes            NFSv3 WRITE calls + NFSv4 WRITE ops
  mount_calls       MOUNT protocol calls (program 100005)
  reads_in_flight   calls with a READ passed on whose reply has not come
                    back yet, over all connections; max_reads_in_flight
                    the most there ever were (do READs overlap?)
  calls_in_flight   any calls passed on whose reply has not come back yet;
                    max_calls_in_flight the most there ever were
  fault_armed       1 once the fault (if any) counts operations
  faults            faults fired so far (cuts or refused calls); tests
                    wait for it to know the fault happened

Parsing is of the client->server stream, and of the replies only their
record marking and xid (for reads_in_flight): RPC record marking, the
call header (xid, program, version, procedure) and for NFSv4 the COMPOUND's
operations.  Operations are walked while their arguments have a known
length (PUTFH, PUTROOTFH, GETATTR, GETFH, LOOKUP, LOOKUPP, ACCESS, READ,
WRITE, READDIR, READLINK, REMOVE, CLOSE, COMMIT, SAVEFH, RESTOREFH, RENEW);
after any other (OPEN, SETATTR, CREATE, RENAME, ...) it is counted and the
rest of that compound is skipped -- best effort: a READ after an OPEN in
one compound would be missed (libnfs never sends one).

Example (NFSv4; the test then checks reads == 0 after a warm read):
  countproxy.py 127.0.0.31:2049 127.0.0.30:2049 stats.json &
  hoardfs ls 'nfs://127.0.0.31/export?version=4' --cat /file
"""
import argparse
import asyncio
import json
import os
import signal
import struct
import sys

NFS_PROG, MOUNT_PROG = 100003, 100005

NFS3_PROCS = ["NULL", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "READLINK",
              "READ", "WRITE", "CREATE", "MKDIR", "SYMLINK", "MKNOD", "REMOVE",
              "RMDIR", "RENAME", "LINK", "READDIR", "READDIRPLUS", "FSSTAT",
              "FSINFO", "PATHCONF", "COMMIT"]
NFS4_OPS = {3: "ACCESS", 4: "CLOSE", 5: "COMMIT", 6: "CREATE", 7: "DELEGPURGE",
            8: "DELEGRETURN", 9: "GETATTR", 10: "GETFH", 11: "LINK", 12: "LOCK",
            13: "LOCKT", 14: "LOCKU", 15: "LOOKUP", 16: "LOOKUPP", 17: "NVERIFY",
            18: "OPEN", 19: "OPENATTR", 20: "OPEN_CONFIRM", 21: "OPEN_DOWNGRADE",
            22: "PUTFH", 23: "PUTPUBFH", 24: "PUTROOTFH", 25: "READ",
            26: "READDIR", 27: "READLINK", 28: "REMOVE", 29: "RENAME",
            30: "RENEW", 31: "RESTOREFH", 32: "SAVEFH", 33: "SECINFO",
            34: "SETATTR", 35: "SETCLIENTID", 36: "SETCLIENTID_CONFIRM",
            37: "VERIFY", 38: "WRITE", 39: "RELEASE_LOCKOWNER"}


class Stats:
    def __init__(self, path):
        self.path = path
        self.d = {"connections": 0, "bytes_to_server": 0, "bytes_to_client": 0,
                  "rpc_calls": 0, "nfs_calls": {}, "nfs4_ops": {}, "reads": 0,
                  "writes": 0, "mount_calls": 0, "reads_in_flight": 0,
                  "max_reads_in_flight": 0, "calls_in_flight": 0,
                  "max_calls_in_flight": 0, "fault_armed": 0, "faults": 0}
        self.dirty = True

    def enter(self, inflight, key, xid):
        """A call @xid passed on: one more of @key ("reads", "calls") in
        flight, and its most."""
        if xid in inflight:
            return
        inflight.add(xid)
        n = self.d[key + "_in_flight"] + 1
        self.d[key + "_in_flight"] = n
        if n > self.d["max_" + key + "_in_flight"]:
            self.d["max_" + key + "_in_flight"] = n

    def leave(self, inflight, key, xid):
        """The reply to @xid came back."""
        if xid in inflight:
            inflight.discard(xid)
            self.bump(key + "_in_flight", n=-1)

    def bump(self, key, sub=None, n=1):
        if sub is None:
            self.d[key] += n
        else:
            self.d[key][sub] = self.d[key].get(sub, 0) + n
        self.dirty = True

    def write(self, force=False):
        if not (self.dirty or force):
            return
        tmp = "%s.tmp.%d" % (self.path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(self.d, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)
        self.dirty = False


class Fault:
    """--cut-after / --refuse, armed by --arm-after (see the top comment)."""

    def __init__(self, kind, op, n, arm_op, arm_n, st):
        self.kind, self.op, self.n = kind, op, n
        self.arm_op, self.arm_n = arm_op, arm_n
        self.st = st
        self.seen = 0       # operations op counted since armed
        self.arm_seen = 0
        self.fired = False
        if not arm_op:
            st.d["fault_armed"] = 1

    def check(self, ops):
        """The call with operations @ops is about to be passed: the fault's
        kind if it fires on this call, else None."""
        if self.fired:
            return None
        fire = False
        for name in ops:
            if not self.st.d["fault_armed"]:
                if name == self.arm_op:
                    self.arm_seen += 1
                    if self.arm_seen >= self.arm_n:
                        self.st.bump("fault_armed")
                continue
            if name == self.op:
                self.seen += 1
                if self.seen >= self.n:
                    fire = True
        if not fire:
            return None
        self.fired = True
        self.st.bump("faults")
        return self.kind


def refuse_call(rec):
    """@rec (one whole call) with its procedure number made unknown."""
    b = bytearray(rec)
    if len(b) >= 24:
        struct.pack_into(">I", b, 20, 0x7FFF)
    return bytes(b)


def _opaque_len(b, o):
    n = struct.unpack_from(">I", b, o)[0]
    return 4 + ((n + 3) & ~3)


def _bitmap_len(b, o):
    n = struct.unpack_from(">I", b, o)[0]
    return 4 + 4 * n


def _skip_op(op, b, o):
    """Offset after op's arguments, or None when not known."""
    if op in (10, 16, 24, 27, 31, 32):          # no arguments
        return o
    if op in (22, 15, 28):                      # PUTFH fh, LOOKUP/REMOVE name
        return o + _opaque_len(b, o)
    if op == 9:                                 # GETATTR bitmap
        return o + _bitmap_len(b, o)
    if op == 3:                                 # ACCESS
        return o + 4
    if op == 25:                                # READ stateid offset count
        return o + 16 + 8 + 4
    if op == 38:                                # WRITE stateid off stable data
        return o + 16 + 8 + 4 + _opaque_len(b, o + 28)
    if op == 26:                                # READDIR
        return o + 8 + 8 + 4 + 4 + _bitmap_len(b, o + 24)
    if op == 4:                                 # CLOSE seqid stateid
        return o + 4 + 16
    if op == 5:                                 # COMMIT offset count
        return o + 12
    if op == 30:                                # RENEW clientid
        return o + 8
    return None


def parse_call(rec, st, ops=None):
    """Count one RPC record from the client; its xid if it holds a READ.
    The names of its operations (NFSv4) or procedure (NFSv3) are appended
    to @ops if given."""
    reads0 = st.d["reads"]
    _count_call(rec, st, ops if ops is not None else [])
    if st.d["reads"] != reads0 and len(rec) >= 4:
        return struct.unpack_from(">I", rec, 0)[0]
    return None


def _count_call(rec, st, ops):
    try:
        xid, mtype = struct.unpack_from(">II", rec, 0)
        if mtype != 0:
            return
        _rpcvers, prog, vers, proc = struct.unpack_from(">IIII", rec, 8)
        st.bump("rpc_calls")
        if prog == MOUNT_PROG:
            st.bump("mount_calls")
            return
        if prog != NFS_PROG:
            return
        o = 24
        o += 4 + _opaque_len(rec, o + 4)        # credential
        o += 4 + _opaque_len(rec, o + 4)        # verifier
        if vers == 3:
            name = NFS3_PROCS[proc] if proc < len(NFS3_PROCS) else str(proc)
            st.bump("nfs_calls", "3:" + name)
            ops.append(name)
            if proc == 6:
                st.bump("reads")
            elif proc == 7:
                st.bump("writes")
            return
        if vers != 4:
            st.bump("nfs_calls", "%d:%d" % (vers, proc))
            return
        st.bump("nfs_calls", "4:" + ("COMPOUND" if proc == 1 else "NULL" if proc == 0 else str(proc)))
        if proc != 1:
            return
        o += _opaque_len(rec, o)                # tag
        o += 4                                  # minorversion
        nops = struct.unpack_from(">I", rec, o)[0]
        o += 4
        for _ in range(nops):
            op = struct.unpack_from(">I", rec, o)[0]
            o += 4
            st.bump("nfs4_ops", NFS4_OPS.get(op, str(op)))
            ops.append(NFS4_OPS.get(op, str(op)))
            if op == 25:
                st.bump("reads")
            elif op == 38:
                st.bump("writes")
            o = _skip_op(op, rec, o)
            if o is None:
                break
    except (struct.error, IndexError):
        pass  # a record we do not understand: bytes are still counted


class CallParser:
    """Reassembles RPC records (RFC 5531 record marking) from a stream.
    With a @fault, feed() returns what to pass on: a list of (bytes,
    action), each a whole record (action None, "cut" or "refuse")."""

    def __init__(self, st, reads, calls, fault=None):
        self.st = st
        self.reads = reads  # xids of READ calls in flight on this connection
        self.calls = calls  # xids of all calls in flight on this connection
        self.fault = fault
        self.buf = bytearray()
        self.frags = bytearray()
        self.raw = bytearray()  # with a fault: the record's bytes so far

    def feed(self, data):
        out = []
        self.buf += data
        while len(self.buf) >= 4:
            hdr = struct.unpack_from(">I", self.buf, 0)[0]
            n = hdr & 0x7FFFFFFF
            if len(self.buf) < 4 + n:
                break
            # Keep only what the parser needs of big fragments (WRITE data).
            self.frags += self.buf[4:4 + min(n, 65536)]
            if self.fault:
                self.raw += self.buf[:4 + n]
            del self.buf[:4 + n]
            if hdr & 0x80000000:
                if len(self.frags) >= 4:  # every call: calls_in_flight
                    self.st.enter(self.calls, "calls",
                                  struct.unpack_from(">I", self.frags, 0)[0])
                ops = []
                xid = parse_call(bytes(self.frags), self.st, ops)
                self.frags = bytearray()
                if xid is not None:
                    self.st.enter(self.reads, "reads", xid)
                if self.fault:
                    raw, self.raw = bytes(self.raw), bytearray()
                    act = self.fault.check(ops)
                    if act == "refuse" and len(raw) >= 28:
                        # the first fragment's header is 4 bytes: the
                        # call header follows it
                        raw = raw[:4] + refuse_call(raw[4:28]) + raw[28:]
                    out.append((raw, act))
        return out


class ReplyParser:
    """Follows the record marking of the server's replies without keeping
    them (READ replies are big): the xid that opens each record ends a READ
    in flight."""

    def __init__(self, st, reads, calls):
        self.st = st
        self.reads = reads
        self.calls = calls
        self.hdr = bytearray()   # a fragment header being read
        self.left = 0            # bytes of the current fragment still to come
        self.last = True         # the current fragment ends its record
        self.xid = None          # bytes of the record's xid, while incomplete

    def feed(self, data):
        i = 0
        while i < len(data):
            if self.left == 0:
                take = min(4 - len(self.hdr), len(data) - i)
                self.hdr += data[i:i + take]
                i += take
                if len(self.hdr) < 4:
                    return
                h = struct.unpack(">I", bytes(self.hdr))[0]
                self.hdr = bytearray()
                if self.last:
                    self.xid = bytearray()  # a new record starts
                self.left, self.last = h & 0x7FFFFFFF, bool(h & 0x80000000)
                continue
            take = min(self.left, len(data) - i)
            if self.xid is not None:
                self.xid += data[i:i + min(take, 4 - len(self.xid))]
                if len(self.xid) == 4:
                    xid = struct.unpack(">I", bytes(self.xid))[0]
                    self.xid = None
                    self.st.leave(self.reads, "reads", xid)
                    self.st.leave(self.calls, "calls", xid)
            self.left -= take
            i += take


async def pump(reader, writer, st, key, delay, parser, cut=None):
    """Pass @reader's bytes to @writer.  With a parser holding a fault
    (client->server), pass whole records, and on a cut close the
    connection: set @cut (an asyncio.Event), which the other direction's
    pump also waits on."""
    q = asyncio.Queue()
    loop = asyncio.get_running_loop()
    records = parser is not None and getattr(parser, "fault", None) is not None

    async def sender():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    task = asyncio.create_task(sender())
    cutting = False
    try:
        while not cutting:
            rd = asyncio.ensure_future(reader.read(65536))
            if cut is not None:
                cw = asyncio.ensure_future(cut.wait())
                await asyncio.wait({rd, cw}, return_when=asyncio.FIRST_COMPLETED)
                cw.cancel()
                if cut.is_set():
                    rd.cancel()
                    break
            data = await rd
            if not data:
                break
            st.bump(key, n=len(data))
            if records:
                for rec, act in parser.feed(data):
                    await q.put((loop.time() + delay, rec))
                    if act == "cut":
                        cutting = True
                        break
            else:
                if parser:
                    parser.feed(data)
                await q.put((loop.time() + delay, data))
            st.write()
    except (ConnectionError, OSError):
        pass
    await q.put((0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass
    if cutting:
        cut.set()


async def handle(creader, cwriter, target, st, delay, fault):
    st.bump("connections")
    st.write()
    try:
        sreader, swriter = await asyncio.open_connection(*target)
    except OSError:
        cwriter.close()
        return
    reads, calls = set(), set()
    cut = asyncio.Event() if fault else None
    await asyncio.gather(
        pump(creader, swriter, st, "bytes_to_server", delay,
             CallParser(st, reads, calls, fault), cut),
        pump(sreader, cwriter, st, "bytes_to_client", delay,
             ReplyParser(st, reads, calls), cut))
    st.d["reads_in_flight"] -= len(reads)  # the connection closed on them
    st.d["calls_in_flight"] -= len(calls)
    for w in (swriter, cwriter):
        w.close()
    st.write()


def addr(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected ADDR:PORT, got %r" % s)
    return host, int(port)


def opcount(s):
    op, _, n = s.rpartition(":")
    if not op or not n.isdigit() or int(n) < 1:
        raise argparse.ArgumentTypeError("expected OP:N (N >= 1), got %r" % s)
    return op.upper(), int(n)


async def main():
    ap = argparse.ArgumentParser(description="counting TCP proxy for NFS tests")
    ap.add_argument("listen", type=addr)
    ap.add_argument("target", type=addr)
    ap.add_argument("statsfile")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--also", action="append", default=[], metavar="LISTEN=TARGET")
    ap.add_argument("--cut-after", type=opcount, metavar="OP:N")
    ap.add_argument("--refuse", type=opcount, metavar="OP:N")
    ap.add_argument("--arm-after", type=opcount, metavar="OP:N")
    a = ap.parse_args()
    if a.cut_after and a.refuse:
        ap.error("--cut-after and --refuse: one fault at a time")
    pairs = [(a.listen, a.target)]
    for spec in a.also:
        l, _, t = spec.partition("=")
        pairs.append((addr(l), addr(t)))
    st = Stats(a.statsfile)
    fault = None
    spec = a.cut_after or a.refuse
    if spec:
        arm = a.arm_after or (None, 0)
        fault = Fault("cut" if a.cut_after else "refuse", spec[0], spec[1],
                      arm[0], arm[1], st)
    st.write(force=True)
    delay = a.delay_ms / 1000.0
    servers = []
    for (lh, lp), target in pairs:
        servers.append(await asyncio.start_server(
            lambda r, w, t=target: handle(r, w, t, st, delay, fault), lh, lp,
            reuse_address=True))
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: st.write(force=True))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    for s in servers:
        s.close()
    st.write(force=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OSError as e:
        print("countproxy: %s" % e, file=sys.stderr)
        sys.exit(1)
