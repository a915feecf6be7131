#!/usr/bin/env python3
"""Scaling with `[daemon] workers` (issue 15), run by bench/scale.sh; bench/bench.py
imports `run_point` for its "UDP 64 B workers 1 vs 2" cell.

For each worker count (1, 2, 4, 8; capped at the CPUs this process may use
unless --force) it starts `netservd run` with `[daemon] workers = N` and one
udp_echo and one tcp_echo, pinned to CPUs 0..N-1, and drives each with N
copies of the C generator (bench/c_gen.c, one epoll thread each): UDP 64 B
with 8 connected sockets and window 32 per generator (many source ports, so
the kernel spreads them over the socket set), TCP 64 B with 64 connections
and 16 frames in flight per generator. Generators get their own CPUs
(N..2N-1) when the machine has them, else share the server's CPUs (said in
the table). Server CPU is utime+stime from /proc/PID/stat around the run,
divided by every reply; core shares are CPU time over wall time.

Prints one Markdown table ready to paste into BENCHMARKS.md. Loopback only;
every run is bounded by its duration and a timeout.
"""
import argparse, json, os, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETSERVD = os.environ.get("NETSERVD", os.path.join(ROOT, "target", "release", "netservd"))
CGEN = os.environ.get("CGEN", os.path.join(ROOT, "target", "bench", "c_gen"))
TICK = os.sysconf("SC_CLK_TCK")
COUNTS = (1, 2, 4, 8)
# (proto, size, flows per generator, depth per flow)
CELLS = (("udp", 64, 8, 32), ("tcp", 64, 64, 16))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpus(first, n):
    return ",".join(str(c) for c in range(first, first + n))


class Daemon:
    """netservd with `workers` threads, pinned to `cpu_list`, one UDP and one TCP echo."""

    def __init__(self, workers, cpu_list, tmp):
        self.udp, self.tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        cfg = os.path.join(tmp, f"scale-{workers}.toml")
        with open(cfg, "w") as f:
            f.write(f'[daemon]\nworkers = {workers}\nwatch_config = false\n\n'
                    f'[[udp_echo]]\nname = "u"\nlisten = "127.0.0.1:{self.udp}"\n\n'
                    f'[[tcp_echo]]\nname = "t"\nlisten = "127.0.0.1:{self.tcp}"\nmax_connections = 4096\nmax_connections_per_source = 0\n')
        env = dict(os.environ, RUST_LOG="warn")
        self.p = subprocess.Popen(["taskset", "-c", cpu_list, NETSERVD, "run", "--config", cfg],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:  # ready = the TCP port accepts (both are bound before either serves)
            if self.p.poll() is not None:
                raise RuntimeError(f"netservd exited at start (code {self.p.returncode})")
            try:
                socket.create_connection(("127.0.0.1", self.tcp), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("netservd not listening within 10 s")

    def port(self, proto):
        return self.udp if proto == "udp" else self.tcp

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def run_point(daemon, proto, size, flows, depth, gen_cpus, duration_ms, warmup_ms):
    """Runs one generator per entry of `gen_cpus` (each pinned there) at once;
    returns totals: msgs/s, server CPU ns per message and core shares."""
    cmd = [CGEN, proto, str(daemon.port(proto)), str(size), str(flows), str(depth), str(duration_ms), str(warmup_ms)]
    before, t0 = cpu_seconds(daemon.p.pid), time.perf_counter()
    gens = [subprocess.Popen(["taskset", "-c", str(c)] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for c in gen_cpus]
    outs = [g.communicate(timeout=(duration_ms + warmup_ms) / 1000 + 60) for g in gens]
    wall = time.perf_counter() - t0
    used = cpu_seconds(daemon.p.pid) - before
    reports = []
    for g, (out, err) in zip(gens, outs):
        if not out.strip():
            raise RuntimeError(f"generator failed: {' '.join(cmd)}\n{err}")
        reports.append(json.loads(out))
    replies = sum(r["total_replies"] for r in reports)
    bad = sum(r["mismatches"] + r["error_count"] for r in reports)
    if bad:
        print(f"  !! {proto} {len(gen_cpus)} generator(s): {bad} mismatches/errors", file=sys.stderr)
    return {
        "msgs_per_s": sum(r["msgs_per_s"] for r in reports),
        "cpu_ns_per_msg": used * 1e9 / replies if replies else float("nan"),
        "server_cores": used / wall,
        "gen_cores": [r["gen_cpu_share"] for r in reports],
        "lost": sum(r.get("lost", 0) for r in reports),
    }


def measure(opts, tmp):
    ncpu = len(os.sched_getaffinity(0))
    counts = [n for n in COUNTS if opts.force or n <= ncpu]
    rows = []
    for n in counts:
        own = 2 * n <= ncpu  # generators on CPUs of their own?
        gen_cpus = list(range(n, 2 * n)) if own else [i % ncpu for i in range(n)]
        d = Daemon(n, cpus(0, min(n, ncpu)), tmp)
        try:
            for proto, size, flows, depth in CELLS:
                runs = [run_point(d, proto, size, flows, depth, gen_cpus, opts.duration_ms, opts.warmup_ms) for _ in range(opts.reps)]
                m = lambda k: statistics.median(r[k] for r in runs)
                r = {"proto": proto, "workers": n, "own": own, "msgs_per_s": m("msgs_per_s"), "cpu_ns_per_msg": m("cpu_ns_per_msg"),
                     "server_cores": m("server_cores"), "gen_cores": statistics.median(max(r["gen_cores"]) for r in runs),
                     "gens": len(gen_cpus), "lost": sum(r["lost"] for r in runs)}
                rows.append(r)
                print(f"{proto} workers {n}: {r['msgs_per_s']:.0f} msgs/s, {r['cpu_ns_per_msg']:.0f} ns/msg, server {r['server_cores']:.2f} cores, "
                      f"busiest generator {r['gen_cores']:.2f} core", file=sys.stderr)
        finally:
            d.stop()
    return rows, ncpu


def table(rows, ncpu, opts):
    out = [f"Scaling with `[daemon] workers` (`bench/scale.sh`, {ncpu} CPUs available; {opts.warmup_ms} ms warm-up + {opts.duration_ms} ms, "
           f"{opts.reps} repetition(s), medians). Server pinned to CPUs 0..N-1; N generators (`c_gen udp PORT 64 8 32` / `c_gen tcp PORT 64 64 16`), "
           "each on a CPU of its own when there are 2N CPUs, else on the server's (\"shared\"). A row whose busiest generator core is >= 0.90 "
           "while the server has spare cores is generator-bound: its msgs/s measures the generators.", "",
           "| proto | workers | msgs/s | server CPU per msg | server cores used | busiest generator core | generators |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        bound = r["gen_cores"] >= 0.90 and r["server_cores"] < 0.90 * r["workers"]
        where = f"{r['gens']} {'on own CPUs' if r['own'] else 'sharing the server CPUs'}"
        lost = f", {r['lost']} lost" if r["lost"] else ""
        out.append(f"| {r['proto'].upper()} 64 B | {r['workers']} | {r['msgs_per_s']:,.0f}{' (generator-bound)' if bound else ''} | "
                   f"{r['cpu_ns_per_msg']:.0f} ns | {r['server_cores']:.2f} | {r['gen_cores']:.2f} | {where}{lost} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="run every worker count even above the CPU count")
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 ms warm-up + 1 s, one repetition")
    ap.add_argument("--reps", type=int, default=3)
    opts = ap.parse_args()
    opts.duration_ms, opts.warmup_ms = (1000, 300) if opts.quick else (3000, 1000)
    if opts.quick:
        opts.reps = 1
    with tempfile.TemporaryDirectory() as tmp:
        rows, ncpu = measure(opts, tmp)
    print(table(rows, ncpu, opts))


if __name__ == "__main__":
    main()
