"""One dashboard viewer for the benchmark: logs in, holds /admin/ws open, counts the pushes.

Runs until SIGTERM or SIGINT, then prints one JSON line: the pushes it received
and the admin plugin's own figures (snapshots built, CPU per snapshot) from
/admin/api/state.

    python bench/admin_viewer.py --port 8080 --token TOKEN
"""

import argparse
import asyncio
import json
import re
import signal
import sys

import aiohttp

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


async def log_in(session: aiohttp.ClientSession, base: str, token: str) -> None:
    async with session.get(f"{base}/admin/login") as form:
        found = CSRF_FIELD.search(await form.text())
    if found is None:
        raise SystemExit("admin_viewer: no login form (is the admin plugin enabled?)")
    data = {"token": token, "csrf_token": found[1]}
    async with session.post(f"{base}/admin/login", data=data, allow_redirects=False) as response:
        if response.status != 303:
            raise SystemExit(f"admin_viewer: login answered {response.status}")


async def main(port: int, token: str) -> int:
    base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pushes = 0
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        await log_in(session, base, token)
        async with session.ws_connect(f"{base}/admin/ws") as ws:
            print("admin_viewer: connected", file=sys.stderr, flush=True)

            async def read() -> None:
                nonlocal pushes
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        pushes += 1

            reading = asyncio.create_task(read())
            await stop.wait()
            reading.cancel()
        async with session.get(f"{base}/admin/api/state") as response:
            state = await response.json()
    admin = state["instances"][0]["plugins"].get("admin", {})
    print(json.dumps({"pushes": pushes, "admin": admin}), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.port, args.token)))
