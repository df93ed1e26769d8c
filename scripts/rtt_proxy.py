"""A latency pipe for scripts/bench-s3 --rtt: a TCP proxy on 127.0.0.1 that delays each
direction of every connection by RTT/2 without limiting bandwidth.

A new connection costs one RTT before its first byte leaves (the TCP handshake). Each chunk
read from one side is stamped with its arrival time and written to the other side
at arrival + RTT/2, in order: chunks in flight overlap (a latency pipe, like a long link), so a
stream of chunks pays the delay once, not once per chunk. Nothing is buffered on purpose beyond
what is in flight; TCP_NODELAY is on for both sockets (asyncio's default), so no Nagle delay is
added. Stdlib only.

    python3 rtt_proxy.py --listen PORT --upstream HOST:PORT --rtt-ms 20 [--workers 2]

With --workers N > 1, N processes accept on the same port (SO_REUSEPORT), so the proxy is not
held to one core. Prints "ready" on stdout once every worker listens; SIGTERM stops it.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys

CHUNK = 256 * 1024


class Lateness:
    """How late a timer wakes the loop up, learnt as it runs. epoll's timeout is whole
    milliseconds (Python rounds it up), so a sleep ends up to ~1 ms after it was due: without
    this each direction would add ~0.5 ms to the RTT asked for. Waits are shortened by an
    estimate (seeded by timing a few sleeps) that each send corrects by 10% of how late (or
    early) it still was, so the sends are on time on average, each within about 1 ms."""

    def __init__(self):
        self.estimate = 0.0

    def observe(self, late):
        self.estimate = max(0.0, self.estimate + 0.1 * late)

    async def calibrate(self, n=20):
        """Seeds the estimate with the median lateness of n short sleeps."""
        loop = asyncio.get_running_loop()
        late = []
        for _ in range(n):
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            late.append(loop.time() - due)
        self.estimate = sorted(late)[n // 2]


LATE = Lateness()


async def pipe(reader, writer, delay, not_before=0.0):
    """Copies reader to writer, each chunk leaving `delay` seconds after it arrived (or after
    `not_before`, loop time, if that is later)."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def receive():
        try:
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((max(loop.time(), not_before) + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((max(loop.time(), not_before) + delay, None))

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(max(0.0, wait - LATE.estimate))
                LATE.observe(loop.time() - due)
            if data is None:  # the reading side was reset: reset this one too
                writer.transport.abort()
                return
            if not data:  # end of stream: pass the half-close on
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    rx = asyncio.ensure_future(receive())
    try:
        await send()
    except (ConnectionError, OSError):
        writer.transport.abort()
    finally:
        rx.cancel()


async def handle(client_r, client_w, upstream, delay):
    # The client's connect() returned at once on 127.0.0.1; over a real link the TCP handshake
    # takes one round trip before the first byte can leave, so what the client sends first
    # departs one RTT after the accept. A tool that opens a new connection per request pays
    # for it, as it would on a WAN.
    handshake_done = asyncio.get_running_loop().time() + 2 * delay
    host, port = upstream
    try:
        server_r, server_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.transport.abort()
        return
    try:
        await asyncio.gather(pipe(client_r, server_w, delay, handshake_done),
                             pipe(server_r, client_w, delay))
    finally:
        client_w.close()
        server_w.close()


async def serve(sock, upstream, delay):
    await LATE.calibrate()
    # The connections' tasks, held here: asyncio keeps only weak references to tasks, and
    # start_server's own reference to a connection's task goes when the client's side closes,
    # so a connection still sending the other way could be collected mid-flight.
    tasks = set()

    def connected(reader, writer):
        task = asyncio.ensure_future(handle(reader, writer, upstream, delay))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(connected, sock=sock, limit=CHUNK)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def listening_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    s.setblocking(False)
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    p.add_argument("--rtt-ms", type=float, required=True, help="added round-trip time")
    p.add_argument("--workers", type=int, default=1, help="processes accepting on the port")
    args = p.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    upstream, delay = (host, int(port)), args.rtt_ms / 2000.0
    # Every worker binds before any reports ready, so a client never finds the port closed.
    socks = [listening_socket(args.listen) for _ in range(args.workers)]
    children = []
    for sock in socks[1:]:
        pid = os.fork()
        if pid == 0:
            for other in socks:
                if other is not sock:
                    other.close()
            asyncio.run(serve(sock, upstream, delay))
            os._exit(0)
        children.append(pid)
        sock.close()
    print("ready", flush=True)
    try:
        asyncio.run(serve(socks[0], upstream, delay))
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
