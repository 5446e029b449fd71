"""The PyPI `mtrpacket` package at W probes in flight, for tests/bench/compare.sh.

python3 tests/bench/python_mtrpacket.py [COUNT] [WINDOW] [TARGET]

Prints `probes_per_s=... completed=...` like probe-bench. Loopback targets only.
"""

import asyncio
import ipaddress
import sys
import time

import mtrpacket


async def main(count: int, window: int, target: str) -> None:
    if not ipaddress.ip_address(target).is_loopback:
        sys.exit(f"refusing {target}: loopback only")
    async with mtrpacket.MtrPacket() as mtr:
        await mtr.probe(target)  # warm-up
        slots = asyncio.Semaphore(window)
        done = 0

        async def one() -> None:
            nonlocal done
            async with slots:
                await mtr.probe(target, timeout=5)
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.monotonic() - started
    print(f"probes_per_s={done / elapsed:.0f} elapsed_s={elapsed:.3f} count={count} completed={done} window={window}")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(int(args[0]) if args else 20000, int(args[1]) if len(args) > 1 else 256, args[2] if len(args) > 2 else "127.0.0.1"))
