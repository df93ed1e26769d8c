"""Bucket-to-bucket sync benchmark: envclone against aws s3 sync, rclone and s5cmd on a local
SeaweedFS (127.0.0.1 only, every port chosen here, stopped on exit). Run it through
scripts/bench-s3, which installs the tools and builds envclone first.

Scenarios, each followed by an object-for-object check of every destination:
  full   copy into an empty bucket
  noop   the same sync again
  delta  after 1% of the objects were rewritten (same size, new bytes; one multipart object
         too) and 1% deleted, with delete
Prints wall time (the no-op: median of 3 runs) and peak RSS per tool and scenario, each anchor's time / envclone's, and the
server's ceiling (s5cmd cp, 256 workers). `--diff-memory` instead measures envclone's peak RSS
for the diff of two generated 1,000,000-object listings.

`--rtt 20ms` puts a latency pipe (scripts/rtt_proxy.py, a TCP proxy on 127.0.0.1 delaying each
direction by RTT/2) between every tool and the server; the data set, the mutation and the
verification talk to the server directly. Before measuring, the bench times HEAD round trips
direct, through a 0 ms proxy and through the RTT proxy (it stops if the added delay is off by
more than RTT_TOLERANCE_MS), and compares the 0 ms proxy with the direct path for a bulk GET and
for 1,000 parallel requests, so a proxy that caps the tools shows. `tc netem` is not used: this
machine's kernel has no netem qdisc ("Specified qdisc kind is unknown").
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import statistics
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.environ.get("ENVCLONE_VENV", os.path.join(ROOT, ".venv"))
KEY, SECRET = "benchkey", "benchsecret"
SMALL, BIG = 4 * 1024, 20 * 1024 * 1024
TOOLS = ["envclone", "aws s3 sync", "rclone", "s5cmd"]
# Seconds of quiet before each measured run, so the server has finished the previous one.
SETTLE = 3
# How far the measured added round trip may be from --rtt before the bench refuses to run.
RTT_TOLERANCE_MS = 3.0


def say(*a):
    print("bench-s3:", *a, file=sys.stderr, flush=True)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Seaweed:
    """`weed mini` on 127.0.0.1 with every listening port set here."""

    FLAGS = [
        "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "s3.debug.port",
        "s3.metricsPort", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
        "filer.port", "filer.port.grpc", "webdav.port", "admin.port", "admin.port.grpc",
        "debug.port", "metricsPort",
    ]

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "seaweed")
        os.makedirs(os.path.join(self.dir, "data"))
        ports = dict(zip(self.FLAGS, free_ports(len(self.FLAGS))))
        self.url = f"http://127.0.0.1:{ports['s3.port']}"
        config = os.path.join(self.dir, "identities.json")
        with open(config, "w") as f:
            json.dump({"identities": [{"name": "bench", "credentials": [
                {"accessKey": KEY, "secretKey": SECRET}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, f)
        args = [os.path.join(VENV, "bin", "weed"), "mini", "-dir=" + os.path.join(self.dir, "data"),
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3.config=" + config,
                "-admin.ui=false", "-webdav=false", "-master.telemetry=false"]
        args += [f"-{flag}={port}" for flag, port in ports.items()]
        self.log = open(os.path.join(self.dir, "weed.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, s3, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"SeaweedFS exited ({self.proc.returncode}); log: {self.log.name}")
            try:
                s3.create_bucket(Bucket="bench-ready")
                s3.delete_bucket(Bucket="bench-ready")
                return
            except Exception:
                time.sleep(0.5)
        raise SystemExit(f"SeaweedFS did not answer within {timeout}s; log: {self.log.name}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class RttProxy:
    """scripts/rtt_proxy.py on a free 127.0.0.1 port, forwarding to `upstream` (a URL)."""

    def __init__(self, upstream, rtt_ms, workers, log_dir, registry):
        """Appends itself to `registry` as soon as the process exists, so the caller's cleanup
        stops it even when starting it is interrupted."""
        self.rtt_ms = rtt_ms
        port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(log_dir, f"proxy-{rtt_ms:g}ms.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "rtt_proxy.py"), "--listen", str(port),
             "--upstream", upstream.split("//", 1)[1], "--rtt-ms", str(rtt_ms),
             "--workers", str(workers)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True)
        registry.append(self)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"the {rtt_ms:g} ms proxy did not start (said {line!r}); log: {self.log.name}")

    def stop(self):
        # The whole process group: the workers it forked too, even if the first one is gone.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
            time.sleep(0.2)
        self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def parse_rtt(text):
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--rtt {text!r}: expected a duration such as 20ms or 0.06s")
    return float(m.group(1)) * (1000.0 if m.group(2) == "s" else 1.0)


def head_round_trip_ms(url, n=40):
    """Mean and median of n sequential HEAD / round trips on one kept-alive connection (after
    one to open it), in milliseconds."""
    host, port = url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    times = []
    try:
        for i in range(n + 1):
            start = time.perf_counter()
            conn.request("HEAD", "/")
            conn.getresponse().read()
            if i:
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        conn.close()
    return statistics.mean(times), statistics.median(times)


def check_proxies(s3_at, env, s5cmd, workdir, direct, passthrough, delayed):
    """Verifies the added delay and that a 0 ms proxy does not slow the tools' kind of traffic
    down; returns the lines to print with the results."""
    lines = []
    rt = {name: head_round_trip_ms(url) for name, url in
          (("direct", direct), ("0 ms proxy", passthrough.url), (f"{delayed.rtt_ms:g} ms proxy", delayed.url))}
    added = rt[f"{delayed.rtt_ms:g} ms proxy"][0] - rt["direct"][0]
    lines.append("HEAD round trip, mean / median of 40: "
                 + ", ".join(f"{k} {v[0]:.2f} / {v[1]:.2f} ms" for k, v in rt.items())
                 + f"; added (mean) {added:.2f} ms for --rtt {delayed.rtt_ms:g}ms")
    say(lines[-1])
    if abs(added - delayed.rtt_ms) > RTT_TOLERANCE_MS:
        raise SystemExit(f"the proxy adds {added:.2f} ms per round trip, not {delayed.rtt_ms:g} ms "
                         f"(tolerance {RTT_TOLERANCE_MS} ms): the machine is too loaded to emulate "
                         f"this RTT, or the proxy is broken; see {delayed.log.name}")
    # Bulk bytes: one 20 MiB GET, best of 3, direct and through the 0 ms proxy.
    bulk = {}
    for name, url in (("direct", direct), ("0 ms proxy", passthrough.url)):
        client, best = s3_at(url), float("inf")
        for _ in range(3):
            start = time.perf_counter()
            body = client.get_object(Bucket="src", Key="big/00.bin")["Body"].read()
            best = min(best, time.perf_counter() - start)
        bulk[name] = len(body) / best / 2**20
    # Many requests at once: 1,000 GETs of small objects (small/00000-00999), 64 workers, direct
    # and through the proxy, into a local directory. Reads only: writes on the server before the
    # measured runs (copies, then deletes) left SeaweedFS busy for the first tool measured, and
    # every bucket is a collection with its own volumes, of which `weed mini` has few (deleting
    # a bucket does not give them back in time: the ceiling's copy then failed with "No writable
    # volumes and no free volumes").
    par = {}
    for name, url in (("direct", direct), ("0 ms proxy", passthrough.url)):
        local = tempfile.mkdtemp(prefix="proxycheck.", dir=workdir)
        start = time.perf_counter()
        subprocess.run([s5cmd, "--endpoint-url", url, "--numworkers", "64", "cp", "s3://src/small/00*",
                        local + "/"], env=env, check=True, stdout=subprocess.DEVNULL)
        par[name] = time.perf_counter() - start
        shutil.rmtree(local)
    lines.append("0 ms proxy against direct: 20 MiB GET (best of 3) "
                 + " vs ".join(f"{bulk[k]:.0f} MiB/s {k}" for k in ("direct", "0 ms proxy"))
                 + "; s5cmd cp of 1,000 small objects to local files (GETs), 64 workers "
                 + " vs ".join(f"{par[k]:.2f} s {k}" for k in ("direct", "0 ms proxy")))
    say(lines[-1])
    return lines


# A child's ru_maxrss starts at its parent's RSS at fork (Linux keeps the high-water mark
# across exec), so a process forked from this Python (~100 MiB with boto3) would report at least
# that. The measured command is forked from this tiny C program instead; it reports the child's
# ru_maxrss (KiB) on the file descriptor given as its first argument. `cc` is there wherever cargo can link.
RSS_WRAPPER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = atoi(argv[1]);
    pid_t pid = fork();
    if (pid == 0) { close(fd); execvp(argv[2], argv + 2); perror(argv[2]); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 126; }
    dprintf(fd, "%ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
"""
RSS_WRAPPER = None


def rss_wrapper(workdir):
    global RSS_WRAPPER
    if RSS_WRAPPER is None:
        src, exe = os.path.join(workdir, "rss.c"), os.path.join(workdir, "rss")
        with open(src, "w") as f:
            f.write(RSS_WRAPPER_C)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", exe, src], check=True)
        RSS_WRAPPER = exe
    return RSS_WRAPPER


def run_measured(cmd, env, log_path):
    """Runs cmd; returns (seconds, peak RSS MiB, exit code)."""
    wrapper = rss_wrapper(os.path.dirname(log_path))
    read, write = os.pipe()
    with open(log_path, "w") as log:
        start = time.monotonic()
        # Its own process group, so an interrupted bench stops the tool too (not only the wrapper).
        proc = subprocess.Popen([wrapper, str(write)] + cmd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                pass_fds=(write,), start_new_session=True)
        os.close(write)
        try:
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            os.close(read)
            raise
        seconds = time.monotonic() - start
    with os.fdopen(read) as r:
        kib = r.read().strip()
    return seconds, int(kib) / 1024.0 if kib else float("nan"), code


def listing(s3, bucket, prefix=""):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix):]] = (o["Size"], o["ETag"].strip('"'))
    return out


def content_md5(s3, bucket, key):
    h = hashlib.md5()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def verify(s3, src, dst):
    """Object for object: same keys, sizes, and ETags — or, where part layouts differ (so the
    ETags cannot be compared), the same content MD5. Returns a list of problems."""
    a, b = listing(s3, src), listing(s3, dst)
    problems = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            problems.append(f"{k}: missing")
        elif k not in a:
            problems.append(f"{k}: extra")
        elif a[k][0] != b[k][0]:
            problems.append(f"{k}: size {a[k][0]} vs {b[k][0]}")
        elif a[k][1] != b[k][1]:
            if "-" not in a[k][1] and "-" not in b[k][1]:
                problems.append(f"{k}: ETag {a[k][1]} vs {b[k][1]}")
            elif content_md5(s3, src, k) != content_md5(s3, dst, k):
                problems.append(f"{k}: content differs")
    return problems


def build_dataset(s3, env, workdir, s5cmd, url, small, big):
    say(f"building the data set: {small} x 4 KiB + {big} x 20 MiB (multipart, 5 MiB parts)")
    local = os.path.join(workdir, "data")
    for sub in ("small", "big"):
        os.makedirs(os.path.join(local, sub))
    for i in range(small):
        with open(os.path.join(local, "small", f"{i:05d}.bin"), "wb") as f:
            f.write(os.urandom(SMALL))
    for i in range(big):
        with open(os.path.join(local, "big", f"{i:02d}.bin"), "wb") as f:
            f.write(os.urandom(BIG))
    s3.create_bucket(Bucket="src")
    base = [s5cmd, "--endpoint-url", url]
    for sub, extra in (("small", ["--numworkers", "64"]), ("big", [])):
        cmd = base + extra + ["cp"] + (["--part-size", "5"] if sub == "big" else [])
        cmd += [os.path.join(local, sub) + "/*", f"s3://src/{sub}/"]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(local)
    objects = listing(s3, "src")
    assert len(objects) == small + big, f"{len(objects)} objects uploaded"
    multipart = [k for k, (_, etag) in objects.items() if etag.endswith("-4")]
    assert len(multipart) == big, f"big objects should be 4-part uploads: {objects}"


def mutate(s3, small, big):
    """Rewrites 1% of the small objects (same size, new bytes) and one big multipart object,
    deletes another 1%."""
    n = max(1, small // 100)
    for i in range(n):
        s3.put_object(Bucket="src", Key=f"small/{i * 97 % small:05d}.bin", Body=os.urandom(SMALL))
    gone = [f"small/{(i * 97 + 13) % small:05d}.bin" for i in range(n)]
    gone = [k for k in gone if k not in {f"small/{i * 97 % small:05d}.bin" for i in range(n)}]
    for start in range(0, len(gone), 1000):
        s3.delete_objects(Bucket="src", Delete={"Objects": [{"Key": k} for k in gone[start:start + 1000]]})
    if big:
        from boto3.s3.transfer import TransferConfig
        import io
        cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        s3.upload_fileobj(io.BytesIO(os.urandom(BIG)), "src", "big/00.bin", Config=cfg)
    return n, len(gone)


def commands(tool, envclone, s5cmd, url, bucket, concurrency):
    if tool == "envclone":
        cmd = [envclone, "s3", "sync", "s3://src", f"s3://{bucket}", "--delete"]
        return cmd + (["--concurrency", str(concurrency)] if concurrency else [])
    if tool == "aws s3 sync":
        return [os.path.join(VENV, "bin", "aws"), "--endpoint-url", url, "s3", "sync",
                "s3://src", f"s3://{bucket}", "--delete", "--only-show-errors"]
    if tool == "rclone":
        return [os.path.join(VENV, "bin", "rclone"), "sync", "bench:src", f"bench:{bucket}",
                "--transfers", "32", "--checkers", "64", "--fast-list", "-q"]
    if tool == "s5cmd":
        return [s5cmd, "--endpoint-url", url, "sync", "--delete", "s3://src/*", f"s3://{bucket}/"]
    raise ValueError(tool)


def bucket_of(tool):
    return "dst-" + tool.split()[0]


def table(results, ceiling, tools):
    scen = [("full", "full copy"), ("noop", "no-op re-sync"), ("delta", "1% changed + 1% deleted")]
    lines = ["| tool | " + " | ".join(f"{t} s | RSS MiB" for _, t in scen) + " |",
             "|---|" + "---|---|" * len(scen)]
    for tool in tools:
        cells = []
        for s, _ in scen:
            r = results.get((tool, s))
            if r is None:
                cells += ["—", "—"]
            else:
                mark = "" if r["ok"] else " ✗"
                cells += [f"{r['seconds']:.2f}{mark}", f"{r['rss']:.0f}"]
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| anchor time / envclone time | " + " | ".join(t for _, t in scen) + " |")
    lines.append("|---|" + "---|" * len(scen))
    for tool in tools[1:]:
        cells = []
        for s, _ in scen:
            a, e = results.get((tool, s)), results.get(("envclone", s))
            cells.append(f"{a['seconds'] / e['seconds']:.2f}×" if a and e else "—")
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    if ceiling:
        lines.append("")
        lines.append(f"Server ceiling (s5cmd cp, 256 workers, same objects into an empty bucket): "
                     f"{ceiling:.2f} s")
    return "\n".join(lines)


def diff_memory(envclone, objects):
    say(f"diff of two generated listings of {objects} objects")
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log")
        seconds, rss, code = run_measured(
            [envclone, "--output", "json", "s3", "diff-bench", "--objects", str(objects)],
            dict(os.environ), log)
        out = open(log).read()
    if code != 0:
        raise SystemExit(f"diff-bench failed ({code}):\n{out}")
    report = json.loads(out.strip().splitlines()[-1])
    s = report["stats"]
    print(f"| listing size | wall s | peak RSS MiB | to copy | to delete | unchanged |")
    print(f"|---|---|---|---|---|---|")
    print(f"| {objects:,} vs {objects:,} | {seconds:.2f} | {rss:.1f} | {s['copied']:,} | "
          f"{s['deleted']:,} | {s['unchanged']:,} |")


def process_group_cpu(pgid):
    """User + system CPU seconds used so far by the live processes of a process group."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def noop_rounds(args, tools, s3, env, s5cmd, url, workdir, server, small, big, link, load_before):
    """--noop-rounds N: the no-op alone, interleaved, many times: its spread on this machine is
    wider than the differences worth measuring (a 3-run median moved by 10-20% between runs)."""
    if tools[0] != "envclone":
        raise SystemExit("--noop-rounds compares the anchors with envclone: include it in --tools")
    for tool in tools:
        cmd = commands(tool, args.envclone, s5cmd, url, bucket_of(tool), args.concurrency)
        seconds, _, code = run_measured(cmd, env, os.path.join(workdir, f"{bucket_of(tool)}-full.log"))
        if code != 0:
            raise SystemExit(f"{tool}: the full sync failed ({code})")
        say(f"full  {tool:12} {seconds:7.2f} s (fills its bucket)")
    walls = {tool: [] for tool in tools}
    server_cpu = {tool: [] for tool in tools}
    for round_ in range(args.noop_rounds):
        for tool in tools[round_ % len(tools):] + tools[:round_ % len(tools)]:
            cmd = commands(tool, args.envclone, s5cmd, url, bucket_of(tool), args.concurrency)
            time.sleep(SETTLE)
            before = process_group_cpu(server.proc.pid)
            seconds, _, code = run_measured(cmd, env, os.path.join(workdir, f"{bucket_of(tool)}-noop.log"))
            if code != 0:
                raise SystemExit(f"{tool}: the no-op failed ({code})")
            server_cpu[tool].append(process_group_cpu(server.proc.pid) - before)
            walls[tool].append(seconds)
        say(f"round {round_ + 1}/{args.noop_rounds}: "
            + ", ".join(f"{t} {walls[t][-1]:.2f} s" for t in tools))
    problems = {tool: verify(s3, "src", bucket_of(tool)) for tool in tools}
    load_after = os.getloadavg()
    print()
    print(f"Data set: {small:,} x 4 KiB + {big} x 20 MiB; {os.cpu_count()} CPUs; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.")
    print("Link: " + "\n".join(link))
    print()
    print(f"| tool | no-op median s ({args.noop_rounds} runs) | fastest s | slowest s | "
          f"server CPU per no-op s (median) | median / envclone's |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(walls[tools[0]])
    for tool in tools:
        w = walls[tool]
        print(f"| {tool} | {statistics.median(w):.3f} | {min(w):.3f} | {max(w):.3f} | "
              f"{statistics.median(server_cpu[tool]):.3f} | {statistics.median(w) / base:.2f}× |")
    bad = {t: p[:3] for t, p in problems.items() if p}
    print("\nEvery destination was verified equal to the source afterwards." if not bad else
          f"\nNOT EQUAL afterwards: {bad}")
    if bad:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envclone", required=True, help="the envclone binary (release build)")
    p.add_argument("--quick", action="store_true", help="1,000 x 4 KiB + 2 x 20 MiB: a smoke run")
    p.add_argument("--diff-memory", action="store_true",
                   help="only the memory benchmark of a 1,000,000-object diff")
    p.add_argument("--objects", type=int, default=1_000_000, help="listing size for --diff-memory")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of: " + ", ".join(TOOLS))
    p.add_argument("--concurrency", type=int, help="envclone --concurrency (default: its own)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--rtt", type=parse_rtt,
                   help="added round-trip time between every tool and the server, e.g. 20ms "
                        "(through scripts/rtt_proxy.py; 0ms still goes through the proxy)")
    p.add_argument("--proxy-workers", type=int, default=2, help="processes of each --rtt proxy")
    p.add_argument("--noop-rounds", type=int, metavar="N",
                   help="only the no-op: each tool's bucket filled by its own full sync, then N "
                        "rounds of one no-op per tool (order rotated); medians, spread and the "
                        "server's CPU per no-op")
    args = p.parse_args()

    if args.diff_memory:
        diff_memory(args.envclone, args.objects)
        return

    import boto3
    from botocore.config import Config

    tools = [t for t in TOOLS if t in args.tools.split(",")]
    small, big = (1000, 2) if args.quick else (10000, 20)
    workdir = tempfile.mkdtemp(prefix="envclone-bench-s3.")
    server = Seaweed(workdir)
    proxies = []

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and not k.startswith("RCLONE_")}
        # Where the tools send their requests: the server, or the --rtt proxy in front of it.
        if args.rtt is not None:
            RttProxy(server.url, 0.0, args.proxy_workers, workdir, proxies)
            if args.rtt > 0:
                RttProxy(server.url, args.rtt, args.proxy_workers, workdir, proxies)
        url = proxies[-1].url if proxies else server.url
        env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1",
                   AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=url,
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                   AWS_EC2_METADATA_DISABLED="true",
                   RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_BENCH_TYPE="s3",
                   RCLONE_CONFIG_BENCH_PROVIDER="SeaweedFS", RCLONE_CONFIG_BENCH_ENDPOINT=url,
                   RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=KEY, RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET,
                   RCLONE_CONFIG_BENCH_REGION="us-east-1")
        def s3_at(endpoint):
            return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                                aws_secret_access_key=SECRET, region_name="us-east-1",
                                config=Config(max_pool_connections=32, retries={"max_attempts": 5}))

        s3 = s3_at(server.url)
        server.wait_ready(s3)
        say(f"SeaweedFS 4.48 on {server.url} (work dir {workdir})")
        s5cmd = os.path.join(VENV, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}",
                             "site-packages", "s5cmd", "bin", "s5cmd")
        build_dataset(s3, env, workdir, s5cmd, server.url, small, big)
        link = ["direct to the server (no added latency)"]
        if proxies:
            say(f"--rtt {args.rtt:g}ms: every tool goes through scripts/rtt_proxy.py on {url} "
                f"({args.proxy_workers} processes), not tc netem (this machine's kernel had no netem qdisc)")
            link = [f"every tool through scripts/rtt_proxy.py (asyncio latency pipe, "
                    f"{args.proxy_workers} processes) adding {args.rtt:g} ms per round trip"]
            link += check_proxies(s3_at, env, s5cmd, workdir, server.url, proxies[0], proxies[-1])
        for tool in tools:
            s3.create_bucket(Bucket=bucket_of(tool))
        load_before = os.getloadavg()
        if args.noop_rounds:
            noop_rounds(args, tools, s3, env, s5cmd, url, workdir, server, small, big, link, load_before)
            return
        results, failures = {}, []
        for round_, scenario in enumerate(("full", "noop", "delta")):
            if scenario == "delta":
                changed, deleted = mutate(s3, small, big)
                say(f"source changed: {changed} small + {1 if big else 0} big object(s) rewritten, {deleted} deleted")
            # Each scenario starts with another tool, so none always runs right after the
            # heaviest one; the no-op (repeatable) is the median of 3 runs.
            for tool in tools[round_ % len(tools):] + tools[:round_ % len(tools)]:
                cmd = commands(tool, args.envclone, s5cmd, url, bucket_of(tool), args.concurrency)
                log = os.path.join(workdir, f"{bucket_of(tool)}-{scenario}.log")
                runs = []
                for _ in range(3 if scenario == "noop" else 1):
                    time.sleep(SETTLE)
                    runs.append(run_measured(cmd, env, log))
                    if runs[-1][2] != 0:
                        break
                runs.sort()
                seconds, rss, code = runs[len(runs) // 2]
                problems = verify(s3, "src", bucket_of(tool)) if code == 0 else [f"exit code {code}"]
                ok = not problems
                results[(tool, scenario)] = {"seconds": seconds, "rss": rss, "ok": ok}
                say(f"{scenario:5} {tool:12} {seconds:7.2f} s {rss:6.0f} MiB "
                    + ("verified" if ok else f"NOT EQUAL: {problems[:3]} ({len(problems)})"))
                if tool == "envclone":
                    # Its report: what it copied (a no-op must copy nothing).
                    report = [l for l in open(log).read().splitlines() if " listed, " in l]
                    say(f"      {report[-1] if report else '(no report line)'}")
                if not ok:
                    failures.append((tool, scenario, problems[:5], open(log).read()[-2000:]))
        s3.create_bucket(Bucket="ceiling")
        time.sleep(SETTLE)
        ceiling, _, code = run_measured([s5cmd, "--endpoint-url", url, "--numworkers", "256",
                                         "cp", "s3://src/*", "s3://ceiling/"], env,
                                        os.path.join(workdir, "ceiling.log"))
        load_after = os.getloadavg()
        print()
        print(f"Data set: {small:,} x 4 KiB + {big} x 20 MiB (4-part multipart uploads); "
              f"SeaweedFS 4.48 on 127.0.0.1; {os.cpu_count()} CPUs; load average "
              f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.")
        print("Link: " + "\n".join(link))
        print()
        print(table(results, ceiling if code == 0 else None, tools))
        if code != 0:
            # SeaweedFS allots volumes by free disk space: on a nearly full disk the last bucket
            # (collection) made finds none ("No writable volumes and no free volumes").
            tail = open(os.path.join(workdir, "ceiling.log")).read().strip().splitlines()[-1:]
            print(f"\nServer ceiling not measured: s5cmd cp exited {code} after {ceiling:.0f} s "
                  f"({tail[0][:200] if tail else 'no output'})")
        print("\n✗ = the destination was not equal to the source afterwards" if failures else
              "\nEvery destination was verified equal to the source after every sync.")
        for tool, scenario, problems, log in failures:
            print(f"\n{tool} / {scenario}: {problems}\n{log}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"data_set": {"small": small, "big": big}, "ceiling_s": ceiling,
                           "rtt_ms": args.rtt, "link": link,
                           "load": [load_before, load_after],
                           "results": [{"tool": t, "scenario": s, **r} for (t, s), r in results.items()]},
                          f, indent=2)
        if failures:
            sys.exit(1)
    finally:
        for proxy in proxies:
            proxy.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
