"""The benchmark baseline: bare aiohttp on uvloop, one route, no middlewares.

Keel's throughput is reported as a ratio to this app measured in the same
run, on the same core, so the figure says what Keel's own layers cost rather
than how fast the machine happens to be.

    python bench/bare_app.py --port 8080
"""

import argparse

import uvloop
from aiohttp import web


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    web.run_app(
        create_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
