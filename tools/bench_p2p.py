#!/usr/bin/env python3
"""Peer-layer benchmarks over real QUIC on loopback (standard library only).

  tools/bench_p2p.py sync   [--blocks 10000]   sync from 1 and from 3 peers vs import-chain
  tools/bench_p2p.py gossip [--blocks 40] [--nodes 5] [--topology line|mesh]
                                               block found -> validated by every node

  gossip's topology: `line` (default) has each node dial the one before
  it (nodes - 1 hops end to end); `mesh` has node i dial node i - 1 and
  one earlier node chosen by a fixed pseudo-random draw, so a 20-node
  network is a few hops across, as a network of home nodes would be.

  --logs DIR keeps every node's log (stderr) in DIR/NAME.log, each line
  prefixed with the seconds since the benchmark started.

Builds nothing: run `cargo build --release` first. Work files go to a
temporary directory that is removed afterwards. Every node binds
127.0.0.1 only and is stopped before the script exits.
"""
import argparse
import json
import os
import queue
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "pouwd")
START = time.monotonic()
LOGS = None


def log_path(name):
    return os.path.join(LOGS, f"{name}.log") if LOGS else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"pouwd {' '.join(args)} failed: {out.stderr}")
    return out


# Every mined block and sync line at debug, as the tests read them.
LOG_FILTER = "info,pouwd=debug,p2p=debug"
STAMPED = re.compile(r"^\d{4}-\S+Z\s+(TRACE|DEBUG|INFO|WARN|ERROR) (?:pouwd: )?")


def message(line):
    """A log line without its timestamp, level and the node's own target."""
    return STAMPED.sub("", line, count=1)


class Node:
    """A `pouwd start` whose log lines (stderr) are timestamped as they arrive."""

    def __init__(self, *args, log=None):
        self.log = open(log, "w") if log else None
        self.proc = subprocess.Popen(
            [BIN, "start", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUST_LOG": LOG_FILTER},
        )
        self.lines = queue.Queue()
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            at = time.monotonic()
            line = message(line)
            if "p2p: listening on " in line:
                self.listening.set()
            if self.log:
                self.log.write(f"{at - START:10.4f} {line}")
                self.log.flush()
            self.lines.put((at, line.rstrip("\n")))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def make_chain(tmp, blocks):
    src = os.path.join(tmp, "src")
    run("start", "--data-dir", src, "--chain", "regtest", "--mine", "--stop-at-height", str(blocks))
    path = os.path.join(tmp, "chain.pouw")
    run("export-chain", "--data-dir", src, "--out", path)
    return path


def bench_sync(tmp, blocks):
    chain = make_chain(tmp, blocks)
    size_mb = os.path.getsize(chain) / 1e6
    t = time.monotonic()
    run("import-chain", "--data-dir", os.path.join(tmp, "imported"), "--chain", "regtest", "--in", chain)
    import_s = time.monotonic() - t
    results = {"import": import_s}
    sources = []
    try:
        for i in range(3):
            d = os.path.join(tmp, f"source{i}")
            run("import-chain", "--data-dir", d, "--chain", "regtest", "--in", chain)
            port = free_port()
            node = Node("--data-dir", d, "--listen", f"127.0.0.1:{port}", log=log_path(f"source{i}"))
            sources.append((node, port))
        time.sleep(1.0)
        for n in (1, 3):
            peers = []
            for _, port in sources[:n]:
                peers += ["--peer", f"127.0.0.1:{port}"]
            d = os.path.join(tmp, f"sync{n}")
            t = time.monotonic()
            node = Node(
                "--data-dir", d, "--chain", "regtest", "--stop-at-height", str(blocks), *peers,
                log=log_path(f"sync{n}"),
            )
            done = None
            while done is None:
                try:
                    at, line = node.lines.get(timeout=600)
                except queue.Empty:
                    sys.exit(f"sync from {n} stalled")
                m = re.search(r"tip height (\d+)", line)
                if m and int(m.group(1)) >= blocks:
                    done = at
            node.proc.wait(timeout=60)
            if node.proc.returncode != 0:
                sys.exit(f"sync from {n} failed with exit code {node.proc.returncode}")
            # From process start to the last block stored; shutdown excluded.
            results[f"sync from {n}"] = done - t
    finally:
        for node, _ in sources:
            node.stop()
    print(f"chain: {blocks} regtest blocks, {size_mb:.2f} MB")
    print(f"{'':>14} {'seconds':>8} {'blocks/s':>9} {'MB/s':>6} {'vs import':>9}")
    for name, secs in results.items():
        print(f"{name:>14} {secs:8.2f} {blocks / secs:9.0f} {size_mb / secs:6.2f} {results['import'] / secs:8.0%}")


def gossip_edges(count, topology):
    """The dials of a gossip network: (dialer, dialed), the dialed started first."""
    edges = [(i, i - 1) for i in range(1, count)]
    if topology == "mesh":
        draw = random.Random(7)
        edges += [(i, draw.randrange(0, i - 1)) for i in range(2, count)]
    return edges


def bench_gossip(tmp, blocks, count, topology):
    # A chain with blocks about every 300 ms, so each is measured on its own.
    params = json.load(open(os.path.join(ROOT, "config", "regtest.json")))
    params["network"] = "gossip-bench"
    params["initial_target"] = "%064x" % ((1 << 256) // 300_000 - 1)
    params["task"]["checkpoint_interval"] = 1000
    chain = os.path.join(tmp, "gossip.json")
    json.dump(params, open(chain, "w"))
    shutil.copy(os.path.join(ROOT, "data", "diabetes.csv"), tmp)
    ports = [free_port() for _ in range(count)]
    edges = gossip_edges(count, topology)
    nodes = []
    try:
        # Each node dials nodes started before it, so those must be
        # listening first: a QUIC Initial sent to a port not yet bound is
        # lost and only resent after quinn's first probe timeout (about 1 s).
        for i, port in enumerate(ports):
            args = ["--data-dir", os.path.join(tmp, f"g{i}"), "--chain", chain, "--listen", f"127.0.0.1:{port}"]
            for dialer, dialed in edges:
                if dialer == i:
                    args += ["--peer", f"127.0.0.1:{ports[dialed]}"]
                    if not nodes[dialed].listening.wait(30):
                        sys.exit(f"node {dialed} is not listening")
            if i == 0:
                # No --stop-at-height: a node that stops right after mining
                # the last block may never announce it.
                args += ["--mine"]
            nodes.append(Node(*args, log=log_path(f"g{i}")))
        found, seen, linked = {}, {}, {}
        mined = re.compile(r"^mined height=(\d+) ")
        synced = re.compile(r"tip height (\d+)")
        deadline = time.monotonic() + 600
        followers = count - 1
        while len([h for h in found if h <= blocks]) < blocks or any(
            len([k for k in seen if k[1] == h]) < followers for h in range(1, blocks + 1)
        ):
            if time.monotonic() > deadline:
                break
            progressed = False
            for i, node in enumerate(nodes):
                while True:
                    try:
                        t, line = node.lines.get_nowait()
                    except queue.Empty:
                        break
                    progressed = True
                    # A dial, logged by either end (a node's dials leave
                    # from its listening port).
                    for dialer, dialed in edges:
                        if (i == dialer and f"connected at 127.0.0.1:{ports[dialed]} " in line) or (
                            i == dialed and f"connected from 127.0.0.1:{ports[dialer]} " in line
                        ):
                            linked.setdefault((dialer, dialed), t)
                    if i == 0 and (m := mined.match(line)):
                        found[int(m.group(1))] = t
                    elif i > 0 and (m := synced.search(line)):
                        for h in range(1, int(m.group(1)) + 1):
                            seen.setdefault((i, h), t)
            if not progressed:
                time.sleep(0.005)
    finally:
        for node in nodes:
            node.stop()
    # Blocks found before the whole network was connected measure the
    # dials, not gossip: they are left out.
    line_up = max(linked.values()) if len(linked) == len(edges) else float("inf")
    latencies = []
    stranded = []
    for h in range(1, blocks + 1):
        times = [seen.get((i, h)) for i in range(1, count)]
        if h in found and not all(times):
            stranded.append(h)
        if h in found and found[h] > line_up and all(times):
            latencies.append(((max(times) - found[h]) * 1000, h))
    early = len([h for h in found if h <= blocks and found[h] <= line_up])
    worst = max(latencies, default=(0, 0))
    latencies = sorted(ms for ms, _ in latencies)
    if not latencies:
        sys.exit(f"no block reached all {count} nodes")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"gossip over {count} nodes ({topology}, {len(edges)} links), {len(latencies)} blocks: "
          f"median {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1]:.1f} ms (block {worst[1]}); "
          f"{early} found before the network was connected, left out; "
          f"stranded (found, not on every node at the end): {len(stranded)} {stranded[:10]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["sync", "gossip"])
    parser.add_argument("--blocks", type=int)
    parser.add_argument("--nodes", type=int, default=5, help="gossip: how many nodes")
    parser.add_argument("--topology", choices=["line", "mesh"], default="line", help="gossip: who dials whom")
    parser.add_argument("--logs", help="keep each node's log in this directory")
    args = parser.parse_args()
    if args.logs:
        global LOGS
        LOGS = args.logs
        os.makedirs(LOGS, exist_ok=True)
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "sync":
            bench_sync(tmp, args.blocks or 10000)
        else:
            bench_gossip(tmp, args.blocks or 40, args.nodes, args.topology)


if __name__ == "__main__":
    main()
