"""A TCP relay that delays each direction by a fixed time: LAN latency without tc netem.

This kernel has no netem qdisc, so the lab gives a node a round-trip time in
userspace: inside the node's network namespace, connections to port 22 are
redirected (iptables REDIRECT) to this relay, which forwards them to
127.0.0.1:22 and holds every chunk for RTT/2 in each direction, keeping order.
piprov still connects to NODE_IP:22 and sees RTT added to each round trip.

Run by the lab: ``ip netns exec NS python -m piprov_lab.relay --port P --target-port 22 --delay-ms D``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    task = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                break
        await task
    except (ConnectionError, asyncio.CancelledError):
        task.cancel()
    finally:
        writer.close()


async def _serve(port: int, target_host: str, target_port: int, delay: float) -> None:
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(target_host, target_port)
        except OSError:
            cw.close()
            return
        # The delay must be the only one: no Nagle batching on top of it.
        for w in (cw, uw):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pump(cr, uw, delay), _pump(ur, cw, delay), return_exceptions=True)

    server = await asyncio.start_server(handle, "0.0.0.0", port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay :{port} -> {target_host}:{target_port}, {delay * 1000:.1f} ms each way", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target-host", default="127.0.0.1")
    p.add_argument("--target-port", type=int, default=22)
    p.add_argument("--delay-ms", type=float, required=True, help="delay per direction (RTT/2)")
    a = p.parse_args()
    asyncio.run(_serve(a.port, a.target_host, a.target_port, a.delay_ms / 1000.0))


if __name__ == "__main__":
    main()
