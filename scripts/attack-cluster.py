#!/usr/bin/env python3
"""Attack the ports Floe workers listen on, as a stranger on the same host would.

Written from the protocol's description alone (it imports nothing of Floe's): every frame
is a little-endian u32 length and that many bytes; a worker that accepts a connection sends
a 32-byte challenge first, and expects `hello || nonce(32) || HMAC-SHA256(secret, ...)(32)`
back, where `hello` is bincode: u32 variant (0 data, 1 control), then u64 fields
(data: attempt, edge, from, to; control: attempt, worker). Control messages to worker 0
are bincode too (`SourceEnded { task }` is variant 1 then a u64).

Targets are found from process ids (their listening TCP sockets, from /proc/<pid>/fd and
/proc/net/tcp{,6}) or given as HOST:PORT. Each target gets every attack mode at once:

  no-secret       the hello alone, as a client that knows no secret sends it
  wrong-secret    hello, nonce and a random MAC
  forged-control  a control hello as worker 1 with a random MAC, then SourceEnded{task 1000}
  forged-data     a data hello with a random MAC, then a data frame of records
  huge            a length prefix of 4 GiB - 1, then zeros
  slow            a plausible answer, one byte a second
  idle            --idle connections that answer nothing

Output: JSON lines on stdout. `{"event": "queued", ...}` once a target's connections are
all opened (the special modes first, then the idle ones), `{"event": "result", ...}` per
target and mode, `{"event": "listening", ...}` per pid with the ports it listens on when
first looked at, and `{"event": "done"}` at the end. Per connection the outcome is one of:

  refused    the operating system refused it (nothing listens on the port)
  dropped    connected, but closed without a challenge (queued when the listener closed)
  rejected   challenged, then closed by the worker (`seconds` after the challenge)
  answered   the worker sent something after our answer: it accepted us
  open       still open --verdict-after seconds after the challenge
  no-answer  connected, but no challenge within --wait seconds

Usage:
  attack-cluster.py --pid 1234 --pid 1235 [--watch 60] [--idle 200]
  attack-cluster.py --target 127.0.0.1:40001 [--modes wrong-secret,huge]
"""

import argparse
import json
import os
import random
import socket
import struct
import sys
import threading
import time

MODES = ["no-secret", "wrong-secret", "forged-control", "forged-data", "huge", "slow", "idle"]

OUT_LOCK = threading.Lock()


def emit(**fields):
    with OUT_LOCK:
        sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
        sys.stdout.flush()


# --- discovering ports ------------------------------------------------------------------


def socket_inodes(pid):
    """Inodes of the sockets process `pid` holds open (empty if it is gone)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


def listening_ports(pid):
    """(host, port) of the TCP sockets process `pid` listens on."""
    inodes = socket_inodes(pid)
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "0A" or cols[9] not in inodes:
                continue
            addr_hex, port_hex = cols[1].split(":")
            port = int(port_hex, 16)
            if family == 4:
                host = socket.inet_ntoa(struct.pack("<I", int(addr_hex, 16)))
            else:
                words = b"".join(struct.pack("<I", int(addr_hex[i : i + 8], 16)) for i in range(0, 32, 8))
                host = socket.inet_ntop(socket.AF_INET6, words)
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if family == 4 else "::1"
            found.append((host, port))
    return found


# --- the wire ---------------------------------------------------------------------------


def frame(body):
    return struct.pack("<I", len(body)) + body


def data_hello(attempt, edge=0, frm=0, to=1):
    return struct.pack("<IQQQQ", 0, attempt, edge, frm, to)


def control_hello(attempt, worker=1):
    return struct.pack("<IQQ", 1, attempt, worker)


def answer(hello):
    """`hello || nonce || MAC` with a MAC made without the secret."""
    return frame(hello + os.urandom(32) + os.urandom(32))


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --- one connection ---------------------------------------------------------------------


class Attack:
    def __init__(self, host, port, mode, args):
        self.host, self.port, self.mode, self.args = host, port, mode, args
        self.outcome = None
        self.seconds = None
        self.sock = None
        self.settled = threading.Event()  # set once the connect returned

    def open(self):
        """Connects; False (with the outcome set) if the connection fails."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(self.args.wait)
        try:
            s.connect((self.host, self.port))
        except ConnectionRefusedError:
            self.outcome = "refused"
            s.close()
            return False
        except OSError:
            self.outcome = "dropped"
            s.close()
            return False
        self.sock = s
        return True

    def run(self):
        s = self.sock
        try:
            challenge_len = recv_exact(s, 4)
            if challenge_len is None:
                self.outcome = "dropped"
                return
            challenge = recv_exact(s, struct.unpack("<I", challenge_len)[0] if challenge_len else 0)
            if challenge is None:
                self.outcome = "dropped"
                return
        except socket.timeout:
            self.outcome = "no-answer"
            return
        except OSError:
            self.outcome = "dropped"
            return
        challenged = time.monotonic()
        # Send on a thread of its own (the slow mode takes its time), and watch for the
        # worker's verdict here: a close ends the attack, anything it sends means it let us in.
        threading.Thread(target=self.send_attack, args=(s,), daemon=True).start()
        try:
            while True:
                left = self.args.verdict_after - (time.monotonic() - challenged)
                if left <= 0:
                    self.outcome = "open"
                    return
                s.settimeout(left)
                got = s.recv(4096)
                if not got:
                    break
                self.outcome = "answered"
                return
        except socket.timeout:
            self.outcome = "open"
            return
        except OSError:
            pass  # reset by the worker: a refusal
        self.outcome = "rejected"
        self.seconds = round(time.monotonic() - challenged, 3)

    def send_attack(self, s):
        try:
            self.send(s)
        except OSError:
            pass  # the worker hung up: the reader says when

    def send(self, s):
        a = self.args.attempt
        if self.mode == "no-secret":
            s.sendall(frame(data_hello(a)))
        elif self.mode == "wrong-secret":
            s.sendall(answer(data_hello(a)))
        elif self.mode == "forged-control":
            # Impersonate worker 1, then report that source task 1000 ended and ask for more.
            s.sendall(answer(control_hello(a, 1)) + frame(struct.pack("<IQ", 1, 1000)))
        elif self.mode == "forged-data":
            # A data frame: tag 0 and a bincode vector of (timestamp, u64) records.
            records = struct.pack("<Q", 3) + b"".join(struct.pack("<BqQ", 1, 0, 7) for _ in range(3))
            s.sendall(answer(data_hello(a)) + frame(b"\x00" + records))
        elif self.mode == "huge":
            s.sendall(struct.pack("<I", 0xFFFFFFFF))
            zeros = bytes(1 << 16)
            for _ in range(64):  # up to 4 MiB, until the worker hangs up
                s.sendall(zeros)
        elif self.mode == "slow":
            for b in answer(data_hello(a)):
                s.sendall(bytes([b]))
                time.sleep(1.0)
        # idle: nothing at all


# --- a target ---------------------------------------------------------------------------


def attack_target(host, port, pid, args):
    modes = [m for m in args.modes if m != "idle"]
    attacks = [Attack(host, port, m, args) for m in modes]
    idle = [Attack(host, port, "idle", args) for _ in range(args.idle if "idle" in args.modes else 0)]
    # The special modes connect first (so they sit ahead in the worker's queue), then the
    # idle ones; each connection then runs on a thread of its own.
    threads = []
    for a in attacks:
        if a.open():
            threads.append(threading.Thread(target=a.run, daemon=True))
            threads[-1].start()

    def open_and_run(a):
        opened = a.open()
        a.settled.set()
        if opened:
            a.run()

    for a in idle:
        threads.append(threading.Thread(target=open_and_run, args=(a,), daemon=True))
        threads[-1].start()
    # Queued: every connection is open, or still waiting for room in the worker's accept
    # queue after --settle seconds.
    settle_until = time.monotonic() + args.settle
    for a in idle:
        a.settled.wait(max(0.0, settle_until - time.monotonic()))
    emit(
        event="queued",
        host=host,
        port=port,
        pid=pid,
        connections=len(attacks) + len(idle),
        connected=sum(1 for a in attacks + idle if a.sock is not None),
    )
    for t in threads:
        t.join()
    for mode in args.modes:
        mine = [a for a in attacks + idle if a.mode == mode]
        outcomes = {}
        for a in mine:
            outcomes[a.outcome] = outcomes.get(a.outcome, 0) + 1
        seconds = [a.seconds for a in mine if a.seconds is not None]
        emit(
            event="result",
            host=host,
            port=port,
            pid=pid,
            mode=mode,
            connections=len(mine),
            outcomes=outcomes,
            max_seconds=max(seconds) if seconds else None,
        )


def watch_pid(pid, args, workers):
    """Attacks each port `pid` listens on, as soon as it appears (up to --watch seconds)."""
    deadline = time.monotonic() + args.watch
    seen = set()
    first = True
    while True:
        ports = listening_ports(pid)
        if first:
            emit(event="listening", pid=pid, ports=[p for _, p in ports])
            first = False
        for host, port in ports:
            if (host, port) not in seen:
                seen.add((host, port))
                t = threading.Thread(target=attack_target, args=(host, port, pid, args), daemon=True)
                t.start()
                workers.append(t)
        if seen or time.monotonic() >= deadline or not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.001)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pid", type=int, action="append", default=[], help="a worker process to attack")
    p.add_argument("--target", action="append", default=[], help="HOST:PORT to attack")
    p.add_argument("--watch", type=float, default=0, help="seconds to wait for a pid to listen")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated modes (default: all)")
    p.add_argument("--idle", type=int, default=200, help="idle connections per target")
    p.add_argument("--attempt", type=int, default=1, help="attempt number put into forged hellos")
    p.add_argument("--wait", type=float, default=120, help="seconds to wait for a connection and its challenge")
    p.add_argument("--settle", type=float, default=0.5, help="seconds to let idle connections get into the accept queue before saying they are queued")
    p.add_argument("--verdict-after", type=float, default=20, help="seconds after the challenge a connection may stay open before it counts as let in")
    args = p.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        p.error(f"unknown modes {unknown}: choose from {MODES}")
    random.seed()
    workers = []
    for target in args.target:
        host, _, port = target.rpartition(":")
        t = threading.Thread(target=attack_target, args=(host.strip("[]"), int(port), None, args), daemon=True)
        t.start()
        workers.append(t)
    watchers = [threading.Thread(target=watch_pid, args=(pid, args, workers), daemon=True) for pid in args.pid]
    for w in watchers:
        w.start()
    for w in watchers:
        w.join()
    for t in list(workers):
        t.join()
    emit(event="done")


if __name__ == "__main__":
    main()
