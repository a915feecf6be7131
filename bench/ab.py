#!/usr/bin/env python3
"""A/B measurements for a performance change (issue 15's method), run by hand.

    python3 bench/ab.py cpu base=/tmp/netservd-old new=target/release/netservd C=C
        Interleaved runs: every cell, then every server, REPS times (default 3);
        prints median msgs/s and server CPU per message for each. "C" is the C
        echo of the cell (bench/c_echo_tcp, bench/c_echo_udp mmsg).
        Env: REPS, DUR (ms per run, default 2000), CELLS ("tcp udp").
    python3 bench/ab.py syscalls target/release/netservd tcp 4096
        System calls per reply of one server under the cell's load, counted by
        `perf stat -e syscalls:sys_enter_*` on the server for 1.5 s.

Servers run pinned to CPU 0, the C generator (bench/c_gen.c) to CPU 1, on
loopback; netservd with `[daemon] workers = 1`, RUST_LOG=warn. Build the C
programs first (bench/run.sh does, into target/bench). Every run is bounded:
DUR milliseconds of load from one generator.
"""
import json, os, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CBIN = os.path.join(ROOT, "target", "bench")
GEN = os.path.join(CBIN, "c_gen")
CELLS = [("tcp", 64, 64, 16), ("tcp", 4096, 64, 16), ("udp", 64, 1, 32), ("udp", 4096, 1, 32)]
SYSCALLS = ["recvfrom", "sendto", "read", "write", "recvmmsg", "sendmmsg", "epoll_wait", "epoll_pwait", "futex"]


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server, proto, tmp):
    """Starts one server on a free port; returns (process, port)."""
    port = free_port(socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    if server == "C":
        cmd = [os.path.join(CBIN, "c_echo_tcp"), str(port)] if proto == "tcp" else [os.path.join(CBIN, "c_echo_udp"), "mmsg", str(port)]
    else:
        cfg = os.path.join(tmp, f"{proto}-{port}.toml")
        kind, extra = ("tcp_echo", "max_connections = 4096\nmax_connections_per_source = 0\n") if proto == "tcp" else ("udp_echo", "")
        with open(cfg, "w") as f:
            f.write(f'[daemon]\nwatch_config = false\nworkers = 1\n\n[[{kind}]]\nname = "ab"\nlisten = "127.0.0.1:{port}"\n{extra}')
        cmd = [server, "run", "--config", cfg]
    p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, RUST_LOG="warn"))
    time.sleep(0.6)
    return p, port


def generate(proto, port, size, conns, depth, dur_ms):
    """Runs the C generator; returns its JSON result."""
    out = subprocess.run(["taskset", "-c", "1", GEN, proto, str(port), str(size), str(conns), str(depth), str(dur_ms), "300"],
                         capture_output=True, text=True, timeout=dur_ms / 1000 + 30)
    return json.loads(out.stdout)


def cpu(servers):
    reps, dur = int(os.environ.get("REPS", 3)), int(os.environ.get("DUR", 2000))
    cells = [c for c in CELLS if c[0] in os.environ.get("CELLS", "tcp udp").split()]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(reps):
            for proto, size, conns, depth in cells:
                for name, server in servers.items():
                    p, port = start(server, proto, tmp)
                    try:
                        c0 = cpu_s(p.pid)
                        r = generate(proto, port, size, conns, depth, dur)
                        used = cpu_s(p.pid) - c0
                    finally:
                        p.terminate()
                        p.wait(10)
                    key = (f"{proto} {size}B {conns}x{depth}", name)
                    res.setdefault(key, []).append((r["msgs_per_s"], used * 1e9 / max(r["total_replies"], 1)))
    for proto, size, conns, depth in cells:
        cell = f"{proto} {size}B {conns}x{depth}"
        row = [f"{name}: {statistics.median(v[0] for v in res[(cell, name)]) / 1e3:7.0f} k/s "
               f"{statistics.median(v[1] for v in res[(cell, name)]):5.0f} ns/msg" for name in servers]
        print(f"{cell:16s} " + " | ".join(row), flush=True)


def syscalls(server, proto, size):
    conns, depth = (64, 16) if proto == "tcp" else (1, 32)
    with tempfile.TemporaryDirectory() as tmp:
        p, port = start(server, proto, tmp)
        try:
            gen = subprocess.Popen(["taskset", "-c", "1", GEN, proto, str(port), str(size), str(conns), str(depth), "2500", "300"],
                                   stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)
            stat = os.path.join(tmp, "perf.csv")
            events = ",".join(f"syscalls:sys_enter_{s}" for s in SYSCALLS)
            subprocess.run(["perf", "stat", "-x,", "-o", stat, "-e", events, "-p", str(p.pid), "--", "sleep", "1.5"], check=True)
            r = json.loads(gen.communicate(timeout=30)[0])
        finally:
            p.terminate()
            p.wait(10)
        per = r["msgs_per_s"] * 1.5
        total = 0
        for line in open(stat):
            f = line.strip().split(",")
            if len(f) > 2 and f[0].isdigit() and int(f[0]):
                total += int(f[0])
                print(f"  {f[2].split('sys_enter_')[-1]:12s} {int(f[0]) / per:.3f} per message")
        print(f"  total        {total / per:.3f} per message at {r['msgs_per_s'] / 1e3:.0f} k msgs/s")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "cpu":
        cpu(dict(a.split("=", 1) for a in sys.argv[2:]))
    elif len(sys.argv) == 5 and sys.argv[1] == "syscalls":
        syscalls(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
