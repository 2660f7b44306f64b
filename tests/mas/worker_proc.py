"""A worker process for the kill/pause tests (R1, R5): a replica that answers requests slowly.

It prints one line per event so the test can follow it: ``ready``, ``holding N`` (requests
in its handler right now) and ``reply I ok|refused`` (whether its reply was committed).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from massgen.mas import Agent, AgentMessage, BusSettings


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class SlowWorker(Agent):
    def __init__(self, *args: object, delay: float, name: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.delay = delay
        self.name = name
        self.holding = 0

    async def on_message(self, message: AgentMessage) -> None:
        self.holding += 1
        say(f"holding {self.holding}")
        await asyncio.sleep(self.delay)
        ok = await message.reply({"i": message.payload["i"], "worker": self.name})
        self.holding -= 1
        say(f"reply {message.payload['i']} {'ok' if ok else 'refused'}")


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--agent", default="work")
    p.add_argument("--name", default="A")
    p.add_argument("--delay", type=float, default=30.0)
    p.add_argument("--lease", type=float, default=1.0)
    args = p.parse_args()
    settings = BusSettings(
        heartbeat_interval=0.1,
        heartbeat_ttl=args.lease,
        lease=args.lease,
        reclaim_interval=0.1,
        block=0.5,
        drain_timeout=0.5,
    )
    worker = SlowWorker(
        args.agent,
        redis_url=args.url,
        prefix=args.prefix,
        replica=True,
        concurrency=200,
        settings=settings,
        delay=args.delay,
        name=args.name,
    )
    await worker.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    say("ready")
    await stop.wait()
    await worker.stop()
    say("stopped")


if __name__ == "__main__":
    asyncio.run(main())
