#!/usr/bin/env python3
"""The benchmark behind bench/run.sh (which builds the binaries, then runs this).

For every cell (TCP 64 B / 4 KiB at 1x1, 64x1, 64x16; UDP 64 B / 4 KiB at
window 1 and 32) it starts each server pinned to one core, runs the same
generator (`netservd bench --json`) pinned to another, and reads the server's
CPU time from /proc/PID/stat around each run. Repetitions give medians with
min..max; ratios compare netservd with the baselines of the same run. Then it
measures memory and scale (RSS per idle connection, start to ready, SIGHUP to
a new listener accepting) and writes BENCHMARKS.md (or, with --quick, a short
report that fails when netservd falls below 0.7x the C baseline in both
throughput and server CPU per message, after re-running the cell once).

Loopback only; every run is bounded by its duration and a timeout.
"""
import argparse, json, os, platform, resource, signal, socket, statistics, struct, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
NETSERVD = os.path.join(REL, "netservd")
TOKIO = os.path.join(REL, "examples", "tokio_echo")
CBIN = os.path.join(ROOT, "target", "bench")
CGEN = os.path.join(CBIN, "c_gen")
TICK = os.sysconf("SC_CLK_TCK")

TCP_CELLS = [(s, c, p) for s in (64, 4096) for (c, p) in ((1, 1), (64, 1), (64, 16))]
UDP_CELLS = [(s, w) for s in (64, 4096) for w in (1, 32)]


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def netservd_config(path, proto, port, extra=""):
    kind = "tcp_echo" if proto == "tcp" else "udp_echo"
    with open(path, "w") as f:
        f.write(f'[daemon]\nwatch_config = false\n\n[[{kind}]]\nname = "bench"\nlisten = "127.0.0.1:{port}"\n{extra}')


class Server:
    """One server process pinned to the server core, started and stopped by us."""

    def __init__(self, name, proto, cpu, tmp):
        self.name, self.proto = name, proto
        self.port = free_port(socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        if name in ("netservd", "netservd-nogso"):
            # netservd-nogso: the same udp_echo with `gso = false`, one datagram per
            # send like the C baselines, so the table shows what GSO is worth.
            cfg = os.path.join(tmp, f"{proto}-{name}.toml")
            extra = "max_connections = 4096\nmax_connections_per_source = 0\n" if proto == "tcp" else ("gso = false\n" if name == "netservd-nogso" else "")
            netservd_config(cfg, proto, self.port, extra)
            cmd = [NETSERVD, "run", "--config", cfg]
        elif name == "c-epoll":
            cmd = [os.path.join(CBIN, "c_echo_tcp"), str(self.port)]
        elif name in ("c-plain", "c-mmsg"):
            cmd = [os.path.join(CBIN, "c_echo_udp"), name[2:], str(self.port)]
        elif name == "tokio":
            cmd = [TOKIO, proto, f"127.0.0.1:{self.port}"]
        elif name == "sockperf":
            cmd = ["sockperf", "server", "-i", "127.0.0.1", "-p", str(self.port)]
        env = dict(os.environ, RUST_LOG="warn")
        self.p = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.wait_ready()

    def wait_ready(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start (code {self.p.returncode})")
            if self.proto == "tcp":
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return
                except OSError:
                    pass
            else:
                with open("/proc/net/udp") as f:
                    if any(f":{self.port:04X} " in line.split()[1] + " " for line in f.readlines()[1:]):
                        time.sleep(0.2)  # sockperf prints its banner and warms up after binding
                        return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not listening on port {self.port} within 10 s")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


GEN_NAME = {"c": "`bench/c_gen.c`, epoll", "netservd": "`netservd bench`"}
GEN_CMD = {"c": "c_gen tcp|udp PORT SIZE CONNS DEPTH DURATION_MS WARMUP_MS",
           "netservd": "netservd bench URL -s SIZE -c CONNS --pipeline DEPTH (TCP) or --window DEPTH --sockperf (UDP) -d DURATION --warmup WARMUP --json -q"}


def ms(d):
    """'300ms' / '3s' -> milliseconds."""
    return int(float(d[:-2])) if d.endswith("ms") else int(float(d[:-1]) * 1000)


def generator_cmd(opts, proto, port, spec):
    """The generator's command line for one cell: the C epoll generator (default:
    on 2 cores it outruns every server here) or `netservd bench`."""
    size, conns, depth, short = spec["size"], spec["conns"], spec["depth"], spec.get("short", False)
    if opts.generator == "c" or short:
        mode = "short" if short else proto
        duration, warmup = ms(opts.duration), ms(opts.warmup)
        if short:
            # Every short connection leaves a conntrack entry for 120 s (TIME_WAIT); ~27 k/s
            # over 3 servers x 3 repetitions x 4 s filled the host's table (262,144 here) and
            # the kernel then dropped packets of every later cell ("send: Operation not
            # permitted"). Half a second per run measures the rate as well.
            duration, warmup = min(duration, 500), min(warmup, 200)
        tail = [str(size), str(conns)] + ([] if short else [str(depth)]) + [str(duration), str(warmup)]
        return [CGEN, mode, str(port)] + tail
    args = ["-s", str(size), "-c", str(conns)] + (["--pipeline", str(depth)] if proto == "tcp" else ["--window", str(depth), "--sockperf"])
    return [NETSERVD, "bench", f"{proto}://127.0.0.1:{port}", "-d", opts.duration, "--warmup", opts.warmup, "--json", "-q", "--allow-loss"] + args


def generate(opts, proto, port, spec):
    cmd = ["taskset", "-c", str(opts.gen_cpu)] + generator_cmd(opts, proto, port, spec)
    ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not out.stdout.strip():
        raise RuntimeError(f"generator failed: {' '.join(cmd)}\n{out.stderr}")
    r = json.loads(out.stdout)
    r["exit"] = out.returncode
    r["wall_s"] = wall
    # The generator's CPU over its own run (RUSAGE_CHILDREN: every child reaped so far).
    r["gen_cpu_share"] = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    return r


def run_cell(srv, spec, opts):
    before = cpu_seconds(srv.p.pid)
    r = generate(opts, srv.proto, srv.port, spec)
    used = cpu_seconds(srv.p.pid) - before
    r["cpu_ns_per_msg"] = used * 1e9 / r["total_replies"] if r["total_replies"] else float("nan")
    r["server_cpu_share"] = used / r["wall_s"]
    if r["mismatches"] or r["errors"] or r["exit"]:
        print(f"  !! {srv.name} {spec}: mismatches={r['mismatches']} errors={r['errors']}", file=sys.stderr)
    return r


def cells(opts):
    """Yields (proto, cell label, generator spec, server names)."""
    for s, c, p in TCP_CELLS:
        yield "tcp", f"TCP {s} B {c}x{p}", {"size": s, "conns": c, "depth": p}, ["netservd", "c-epoll", "tokio"]
    # Connect, one frame, its echo, close: 8 at a time (the C generator only).
    yield "tcp", "TCP short 64 B x8", {"size": 64, "conns": 8, "depth": 1, "short": True}, ["netservd", "c-epoll", "tokio"]
    for s, w in UDP_CELLS:
        # Every UDP message carries a sockperf header so `sockperf server` answers the same generator.
        yield "udp", f"UDP {s} B window {w}", {"size": s, "conns": 1, "depth": w}, ["netservd", "netservd-nogso", "c-plain", "c-mmsg", "tokio", "sockperf"]


def measure(opts, tmp):
    """Runs every cell; servers of a protocol all run at once (idle ones sleep in
    the kernel), and each repetition visits every server in turn, so a burst of
    load from other users lands on all servers alike instead of on one."""
    results = {}  # (cell, server) -> [report...]
    for proto in ("tcp", "udp"):
        names = ["netservd", "c-epoll", "tokio"] if proto == "tcp" else ["netservd", "netservd-nogso", "c-plain", "c-mmsg", "tokio", "sockperf"]
        servers = []
        try:
            for name in names:
                servers.append(Server(name, proto, opts.server_cpu, tmp))
            for p, label, spec, _ in cells(opts):
                if p != proto:
                    continue
                for rep in range(opts.reps):
                    for srv in servers:
                        r = run_cell(srv, spec, opts)
                        results.setdefault((label, srv.name), []).append(r)
                        print(f"{label:22} {srv.name:9} rep {rep + 1}: {r['msgs_per_s']:>11.0f} msgs/s  p50 {r['latency_us']['p50']:.1f} us  p99 {r['latency_us']['p99']:.1f} us  cpu {r['cpu_ns_per_msg']:.0f} ns/msg  server {r['server_cpu_share']:.2f} gen {r['gen_cpu_share']:.2f} core", file=sys.stderr)
        finally:
            for srv in servers:
                srv.stop()
    return results


def med(rs, key):
    vals = [key(r) for r in rs]
    return statistics.median(vals), min(vals), max(vals)


def baseline(results, label, proto):
    """The C baseline of a cell: c-epoll for TCP, the faster C variant for UDP."""
    names = ["c-epoll"] if proto == "tcp" else ["c-plain", "c-mmsg"]
    return max(names, key=lambda n: med(results[(label, n)], lambda r: r["msgs_per_s"])[0])


def table(results, opts):
    lines = ["| cell | server | msgs/s (median, min..max) | MB/s | p50 us | p99 us | p99.9 us | max us | server CPU ns/msg | server core | generator core | vs C | p99 vs C | CPU efficiency vs C | vs sockperf |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for proto, label, _, servers in cells(opts):
        base = baseline(results, label, proto)
        b_tp = med(results[(label, base)], lambda r: r["msgs_per_s"])[0]
        b_p99 = med(results[(label, base)], lambda r: r["latency_us"]["p99"])[0]
        b_p50 = med(results[(label, base)], lambda r: r["latency_us"]["p50"])[0]
        b_cpu = med(results[(label, base)], lambda r: r["cpu_ns_per_msg"])[0]
        b_bound = generator_bound(results[(label, base)])
        sp = med(results[(label, "sockperf")], lambda r: r["msgs_per_s"])[0] if proto == "udp" else None
        for name in servers:
            rs = results[(label, name)]
            tp, lo, hi = med(rs, lambda r: r["msgs_per_s"])
            mb = med(rs, lambda r: r["mb_per_s"])[0]
            lat = {k: med(rs, lambda r, k=k: r["latency_us"][k])[0] for k in ("p50", "p99", "p999", "max")}
            cpu = med(rs, lambda r: r["cpu_ns_per_msg"])[0]
            srv_share = med(rs, lambda r: r["server_cpu_share"])[0]
            gen_share = med(rs, lambda r: r["gen_cpu_share"])[0]
            bound = generator_bound(rs) or b_bound
            vs = tp / b_tp if b_tp else float("nan")
            p99r = lat["p99"] / b_p99 if b_p99 else float("nan")
            vsp = f"{tp / sp:.2f}x" if sp else ""
            eff = b_cpu / cpu if cpu else float("nan")  # above 1: less server CPU per message than C
            tag = f"{name} (C baseline)" if name == base else name
            vs_text = f"({vs:.2f}x) generator-bound" if bound else f"{vs:.2f}x"
            lines.append(f"| {label} | {tag} | {tp:,.0f} ({lo:,.0f}..{hi:,.0f}) | {mb:.1f} | {lat['p50']:.1f} | {lat['p99']:.1f} | {lat['p999']:.1f} | {lat['max']:.1f} | {cpu:.0f} | {srv_share:.2f} | {gen_share:.2f} | {vs_text} | {p99r:.2f}x | {eff:.2f}x | {vsp} |")
            if name == "netservd":
                ratios.append((label, vs, p99r, lat["p50"] / b_p50 if b_p50 else float("nan"), tp / sp if sp else None, eff, bound))
    return lines, ratios


def generator_bound(rs):
    """A run where the generator's core was full and the server's was not: its
    throughput says how fast the generator is, not the server, so no throughput
    ratio may be claimed from it (server CPU per message still counts)."""
    return med(rs, lambda r: r["gen_cpu_share"])[0] >= 0.9 and med(rs, lambda r: r["server_cpu_share"])[0] < 0.9


def recheck(opts, label, results):
    """Runs one cell again for netservd and its C baseline; returns the best-of-two throughput ratio."""
    proto, _, spec, _ = next(c for c in cells(opts) if c[1] == label)
    base = baseline(results, label, proto)
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("netservd", base):
            srv = Server(name, proto, opts.server_cpu, tmp)
            try:
                r = run_cell(srv, spec, opts)
            finally:
                srv.stop()
            prev = results[(label, name)]
            best[name] = (max(r["msgs_per_s"], *(p["msgs_per_s"] for p in prev)), min(r["cpu_ns_per_msg"], *(p["cpu_ns_per_msg"] for p in prev)))
    tp = best["netservd"][0] / best[base][0] if best[base][0] else float("nan")
    eff = best[base][1] / best["netservd"][1] if best["netservd"][1] else float("nan")
    ratio = max(tp, eff)
    print(f"  {label}: best of two {ratio:.2f}x", file=sys.stderr)
    return ratio


def idle_memory(opts, tmp, n):
    """Memory per idle TCP connection: RSS, and jemalloc's heap (`allocated` from
    /debug/allocator, which RSS noise does not move), with the size of one
    connection's future as the daemon reports it."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the daemon
    port, admin = free_port(), free_port()
    cfg = os.path.join(tmp, "idle.toml")
    netservd_config(cfg, "tcp", port, f"max_connections = {n + 100}\nmax_connections_per_source = 0\nidle_timeout = \"600s\"\n"
                    f"[admin]\nlisten = \"127.0.0.1:{admin}\"\n")

    def allocator():
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/debug/allocator", timeout=5) as r:
            return json.load(r)

    # Default log level (info), as users run it: the per-connection span is part of the cost.
    d = subprocess.Popen(["taskset", "-c", str(opts.server_cpu), NETSERVD, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conns = []
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                allocator()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(0.3)
        before, heap_before = rss_kib(d.pid), allocator()["allocated"]
        frame = struct.pack(">I", 4) + b"idle"
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(frame)  # one round trip proves the connection is served, then it idles
            got = b""
            while len(got) < len(frame):
                chunk = s.recv(64)
                if not chunk:
                    raise RuntimeError("daemon closed an idle-test connection")
                got += chunk
            conns.append(s)
        time.sleep(0.5)
        after, a = rss_kib(d.pid), allocator()
        return {"n": n, "before": before, "after": after, "rss_per": (after - before) * 1024 / n,
                "heap_per": (a["allocated"] - heap_before) / n, "future": a.get("tcp_connection_future", 0)}
    finally:
        for s in conns:
            s.close()
        d.terminate()
        d.wait(10)


def scale(opts, tmp):
    """RSS per idle connection, start to ready with 100 services, SIGHUP to a new listener accepting."""
    out = {}
    want = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    n = min(opts.idle_conns, want - 200)  # client and daemon are separate processes, each under the limit
    out["idle"] = idle_memory(opts, tmp, n)
    # Start to ready with 100 services (50 TCP + 50 UDP on port 0).
    cfg = os.path.join(tmp, "hundred.toml")
    with open(cfg, "w") as f:
        f.write("[daemon]\nwatch_config = false\n")
        for i in range(50):
            f.write(f'[[tcp_echo]]\nname = "t{i}"\nlisten = "127.0.0.1:0"\n[[udp_echo]]\nname = "u{i}"\nlisten = "127.0.0.1:0"\n')
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        d = subprocess.Popen([NETSERVD, "--log-format", "json", "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="info"))
        for line in d.stderr:
            if '"ready"' in line:
                times.append((time.perf_counter() - t0) * 1000)
                break
        d.terminate()
        d.communicate(timeout=10)
    out["ready_ms"] = times
    # SIGHUP to a new listener accepting.
    base = '[daemon]\nwatch_config = false\n[[tcp_echo]]\nname = "a"\nlisten = "127.0.0.1:0"\n'
    cfg = os.path.join(tmp, "reload.toml")
    with open(cfg, "w") as f:
        f.write(base)
    d = subprocess.Popen([NETSERVD, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    hup = []
    try:
        time.sleep(0.5)
        extra = ""
        for i in range(5):
            p = free_port()
            extra += f'[[tcp_echo]]\nname = "n{i}"\nlisten = "127.0.0.1:{p}"\n'
            with open(cfg, "w") as f:
                f.write(base + extra)
            t0 = time.perf_counter()
            d.send_signal(signal.SIGHUP)
            while time.perf_counter() - t0 < 5:
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                    hup.append((time.perf_counter() - t0) * 1000)
                    break
                except OSError:
                    time.sleep(0.0005)
            else:
                raise RuntimeError(f"new listener on {p} not accepting 5 s after SIGHUP")
    finally:
        d.terminate()
        d.wait(10)
    out["sighup_ms"] = hup
    return out


def workers_cell(opts, tmp):
    """"UDP 64 B workers 1 vs 2" (issue 15): netservd with `[daemon] workers = 1`
    pinned to CPU 0, then `workers = 2` pinned to CPUs 0-1, each driven by one C
    generator (8 sockets, so 8 source ports, window 32) on CPU 1: on a 2-core
    machine the second server shares its core with the generator."""
    import scale as workers_scale  # bench/scale.py, beside this file
    out = {}
    for n, cpus in ((1, "0"), (2, "0,1")):
        d = workers_scale.Daemon(n, cpus, tmp)
        try:
            runs = [workers_scale.run_point(d, "udp", 64, 8, 32, [opts.gen_cpu], ms(opts.duration), ms(opts.warmup)) for _ in range(opts.reps)]
        finally:
            d.stop()
        out[n] = {k: statistics.median(r[k] for r in runs) for k in ("msgs_per_s", "cpu_ns_per_msg", "server_cores")}
        out[n]["gen_cores"] = statistics.median(r["gen_cores"][0] for r in runs)
        print(f"UDP 64 B workers {n}: {out[n]['msgs_per_s']:.0f} msgs/s, {out[n]['cpu_ns_per_msg']:.0f} ns/msg", file=sys.stderr)
    return out


def verdict(label, vs, p99r, p50r, vsp):
    """Whether a cell meets the issue's target, if it has one."""
    if label.startswith("TCP") and label.endswith("64x16"):
        ok = vs >= 0.95 and p99r <= 1.5
    elif label.endswith("window 32"):
        ok = vs >= 0.95 and (vsp or 0) >= 1.0
    elif label.endswith("1x1"):
        ok = p50r <= 1.1
    else:
        return ""
    return "met" if ok else "NOT met"


def machine():
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    keep = ("Architecture", "Model name", "CPU(s):", "Thread(s) per core", "Core(s) per socket", "CPU max MHz", "L2 cache", "L3 cache", "Hypervisor vendor")
    cpu = "\n".join(l for l in lscpu.splitlines() if l.strip().startswith(keep))
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return cpu, " ".join(platform.uname()), load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 s per cell, one repetition, no scale tests; fail below --min-ratio")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--min-ratio", type=float, default=0.7)
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--generator", choices=("c", "netservd"), default="c",
                    help="load generator for the TCP/UDP cells: bench/c_gen.c (default; outruns the servers on 2 cores) or `netservd bench`")
    opts = ap.parse_args()
    opts.duration, opts.warmup, opts.reps = ("1s", "300ms", 1) if opts.quick else ("3s", "1s", 3)
    ncpu = len(os.sched_getaffinity(0))
    opts.server_cpu, opts.gen_cpu = (0, 1) if ncpu >= 2 else (0, 0)
    cpu, uname, load_before = machine()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(opts, tmp)
        lines, ratios = table(results, opts)
        sc = None if opts.quick else scale(opts, tmp)
        wk = None if opts.quick else workers_cell(opts, tmp)
        idle = idle_memory(opts, tmp, min(2000, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200)) if opts.quick else None
    load_after = machine()[2]
    cmd = "bench/run.sh" + (" --quick" if opts.quick else "")
    doc = [f"# Benchmarks", "", f"Produced by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; do not edit by hand, re-run the script.", "",
           f"Server pinned to CPU {opts.server_cpu}, generator ({GEN_NAME[opts.generator]}, one thread) to CPU {opts.gen_cpu}, loopback. "
           f"Each cell: {opts.warmup} warm-up, {opts.duration} measured, {opts.reps} repetition(s); values are medians (throughput also min..max). "
           "Latency is the generator's round trip. Server CPU is utime+stime from /proc/PID/stat over the whole run, divided by every reply. "
           "\"server core\" and \"generator core\" are each process's CPU time over the run's wall time (1.00 = its core was full). "
           "A run whose generator core was full (>= 0.90) while the server's was not (< 0.90) is **generator-bound**: its throughput "
           "measures the generator, so its throughput ratio is shown in parentheses and claims nothing; server CPU per message still compares. "
           "UDP messages carry a sockperf header so that `sockperf server` answers the same generator. \"vs C\" compares with the C baseline of the same cell "
           "(c-epoll for TCP, the faster of c-plain and c-mmsg for UDP); \"CPU efficiency vs C\" is the baseline's server CPU per message divided by this server's (above 1: cheaper than C).", "",
           f"Generator per cell: `taskset -c {opts.gen_cpu} {GEN_CMD[opts.generator]}`; the short-connection cell always uses `c_gen short PORT 64 8 500 200` "
           "(8 parallel loops of connect, one frame, its echo, close; source addresses rotate over 127.0.0.2-254). "
           f"Servers, each `taskset -c {opts.server_cpu}`: `netservd run` (one tcp_echo or udp_echo, RUST_LOG=warn; netservd-nogso: the udp_echo with `gso = false`), "
           "`bench/c_echo_tcp PORT`, `bench/c_echo_udp plain|mmsg PORT`, `examples/tokio_echo tcp|udp ADDR`, `sockperf server -i 127.0.0.1 -p PORT`.", "",
           f"Load average (1, 5, 15 min) before: {load_before}; after: {load_after}. The machine is shared: other builds running at the same time lower every number.", ""]
    doc += lines
    doc += ["", "## netservd against the targets", "",
            "Targets (issue 6): TCP 64x16 >= 0.95x C throughput with p99 <= 1.5x C; UDP window 32 >= 0.95x the best C and >= 1.0x sockperf; "
            "ping-pong (1x1) p50 <= 1.1x C. On 2 cores the single generator core usually saturates before the server core, so throughput "
            "ratios near 1.0 mostly say \"not the bottleneck\"; server CPU per message is the sharper comparison.", "",
            "| cell | vs C throughput | p99 vs C | p50 vs C | CPU efficiency vs C | vs sockperf | target |", "|---|---|---|---|---|---|---|"]
    for label, vs, p99r, p50r, vsp, eff, bound in ratios:
        tp = f"({vs:.2f}x) generator-bound" if bound else f"{vs:.2f}x"
        target = "no claim (generator-bound)" if bound else verdict(label, vs, p99r, p50r, vsp)
        doc.append(f"| {label} | {tp} | {p99r:.2f}x | {p50r:.2f}x | {eff:.2f}x | {'' if vsp is None else f'{vsp:.2f}x'} | {target} |")
    doc += ["", "## Server CPU per message against C (issue 15)", "",
            "Target: netservd's server CPU per message <= 1.05x the C baseline's in TCP 64 B and 4 KiB 64x16 and UDP 64 B and 4 KiB window 32 "
            "(medians of the repetitions above, same run). netservd's UDP replies use GSO (`gso = true`, the default: a batch's equal-sized replies "
            "to one source leave as one send); the C baselines and netservd-nogso (`gso = false`) send one datagram per message.", "",
            "| cell | server | server CPU ns/msg | C baseline ns/msg | ratio | target |", "|---|---|---|---|---|---|"]
    for proto, label, _, servers in cells(opts):
        if not (label.endswith("64x16") or label.endswith("window 32")):
            continue
        base = baseline(results, label, proto)
        b_cpu = med(results[(label, base)], lambda r: r["cpu_ns_per_msg"])[0]
        for name in ("netservd", "netservd-nogso"):
            if name not in servers:
                continue
            ns = med(results[(label, name)], lambda r: r["cpu_ns_per_msg"])[0]
            ratio = ns / b_cpu if b_cpu else float("nan")
            target = ("met" if ratio <= 1.05 else "NOT met") if name == "netservd" else "(for comparison)"
            doc.append(f"| {label} | {name} | {ns:.0f} | {b_cpu:.0f} ({base}) | {ratio:.2f}x | {target} |")
    if sc:
        m = sc["idle"]
        ready, hup = statistics.median(sc["ready_ms"]), statistics.median(sc["sighup_ms"])
        doc += ["", "## Memory and scale", "",
                f"- RSS per idle TCP connection: **{m['rss_per']:.0f} B** ({m['n']} idle connections, each after one echoed frame; daemon RSS {m['before']} KiB before, {m['after']} KiB after; default log level). Target <= 1024 B: {'met' if m['rss_per'] <= 1024 else 'NOT met'}. "
                f"Heap (jemalloc `allocated`) per idle connection: {m['heap_per']:.0f} B, of which one connection's future is {m['future']} B (in tokio's 128-byte-aligned task cell) and its socket registration 256 B.",
                f"- Start to `ready` with 100 services (50 tcp_echo + 50 udp_echo): median **{ready:.1f} ms** (runs: {', '.join(f'{t:.1f}' for t in sc['ready_ms'])}). Target < 100 ms: {'met' if ready < 100 else 'NOT met'}.",
                f"- SIGHUP to a new listener accepting: median **{hup:.1f} ms** (runs: {', '.join(f'{t:.1f}' for t in sc['sighup_ms'])}). Target < 100 ms: {'met' if hup < 100 else 'NOT met'}."]
    if wk:
        doc += ["", "## UDP 64 B workers 1 vs 2", "",
                f"netservd `[daemon] workers = 1` on CPU {opts.server_cpu}, then `workers = 2` on CPUs 0-1 (one SO_REUSEPORT udp_echo socket per worker); "
                f"one generator `c_gen udp PORT 64 8 32` (8 source ports, window 32) on CPU {opts.gen_cpu}, so with 2 workers the server shares the generator's core. "
                "Server cores: the server's CPU time over the run's wall time. Scaling on more cores: `bench/scale.sh`.", "",
                "| workers | msgs/s | server CPU per msg | server cores used | generator core |", "|---|---|---|---|---|"]
        for n, r in wk.items():
            doc.append(f"| {n} | {r['msgs_per_s']:,.0f} | {r['cpu_ns_per_msg']:.0f} ns | {r['server_cores']:.2f} | {r['gen_cores']:.2f} |")
    doc += ["", "## Machine", "", "```", uname, cpu, "```", ""]
    text = "\n".join(doc)
    out = opts.out if not opts.quick else os.path.join(ROOT, "target", "bench", "quick.md")
    with open(out, "w") as f:
        f.write(text)
    print(text)
    if opts.quick:
        # Memory per idle connection is a target too (<= 1 KiB): the heap figure is exact
        # where RSS is not, so the smoke run gates on it.
        print(f"idle TCP connections: {idle['n']}, heap {idle['heap_per']:.0f} B each (future {idle['future']} B), RSS {idle['rss_per']:.0f} B each", file=sys.stderr)
        if idle["heap_per"] > 1024:
            print(f"FAIL: {idle['heap_per']:.0f} B of heap per idle TCP connection, over the 1,024 B target (the connection future is {idle['future']} B: see tcp_conn::Conn::serve)", file=sys.stderr)
            sys.exit(1)
        # A regression shows in both throughput and server CPU per message; a preempted
        # generator (other builds on a shared machine) only in throughput. So a cell fails
        # when the better of the two ratios is below the floor.
        bad = [(l, max(vs, eff)) for l, vs, _, _, _, eff, _ in ratios if max(vs, eff) < opts.min_ratio]
        if bad:
            # One noisy second on a shared machine is not a regression: re-run those cells once, best of two.
            print(f"re-checking {', '.join(l for l, _ in bad)}", file=sys.stderr)
            bad = [(l, vs) for l, vs in ((l, recheck(opts, l, results)) for l, _ in bad) if vs < opts.min_ratio]
        if bad:
            print(f"FAIL: netservd below {opts.min_ratio}x the C baseline: " + ", ".join(f"{l} {vs:.2f}x" for l, vs in bad), file=sys.stderr)
            sys.exit(1)
        print(f"ok: netservd at least {opts.min_ratio}x the C baseline in every cell", file=sys.stderr)


if __name__ == "__main__":
    main()
