"""Keel's command line: serve (default) | worker | migrate | reshard | check-config | cluster.

Parses arguments, loads the config and runs; everything else lives in `app/`.
Exit status: 0 done, 1 failed while running, 2 refused (bad config or plugin set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import tomli_w

from app.application import Role, create_app
from app.cluster.preflight import ClusterOptions
from app.cluster.supervisor import cluster_command
from app.config import Config
from app.core.logging_config import LoggingSettings, configure_logging
from app.errors import ConfigError, KeelError, PluginError, StartupError
from app.plugins import read_config
from app.sharding.commands import migrate_command, reshard_command
from app.shutdown import serve

EXIT_REFUSED = 2
log = logging.getLogger("keel")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", metavar="FILE", help="config file (default: KEEL_CONFIG or ./config.toml)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_cmd = commands.add_parser("serve", help="serve the API until SIGTERM/SIGINT (default)")
    serve_cmd.add_argument("--host", help="override server.host")
    serve_cmd.add_argument("--port", type=int, help="override server.port")
    serve_cmd.add_argument(
        "--listen-fd", type=int, metavar="FD", help="serve on this inherited listening socket"
    )
    commands.add_parser("worker", help="consume jobs only; health and metrics on worker.port")
    commands.add_parser("migrate", help="apply pending migrations to every shard")
    reshard = commands.add_parser("reshard", help="move rows to the shards that own them now")
    reshard.add_argument("--dry-run", action="store_true", help="count what would move")
    check = commands.add_parser("check-config", help="print the resolved config and exit")
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    cluster = commands.add_parser("cluster", help="N instances behind nginx on this machine")
    cluster.add_argument("--instances", type=int, default=3, metavar="N", help="default 3")
    cluster.add_argument(
        "--port", type=int, metavar="P", help="nginx's port (server.port); instances on P+1..P+N"
    )
    cluster.add_argument("--nginx", default="nginx", metavar="PATH", help="the nginx binary")
    for sub in commands.choices.values():
        sub.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="config file")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """CLI flags become the same overrides as environment variables."""
    env: dict[str, str] = {}
    if getattr(args, "host", None):
        env["KEEL_SERVER__HOST"] = args.host
    if getattr(args, "port", None) is not None:
        env["KEEL_SERVER__PORT"] = str(args.port)
    return env


def _run(main: Coroutine[Any, Any, int], config: Config) -> int:
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if config.server.uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; using asyncio's event loop")
        else:
            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def _check_config(config: Config, as_json: bool) -> int:
    # Build the application as `serve` would (that opens nothing): what it refuses —
    # an unknown plugin, a missing requirement — is refused here too.
    create_app(config)
    data = config.as_dict(redact=True)
    print(f"# resolved from {config.source} and KEEL_* environment variables (secrets redacted)")
    print(json.dumps(data, indent=2) if as_json else tomli_w.dumps(data), end="")
    return 0


COMMANDS = ("serve", "worker", "migrate", "reshard", "check-config", "cluster")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not {"-h", "--help", *COMMANDS} & set(argv):
        argv.insert(0, "serve")  # `run.py --port 9000` means `run.py serve --port 9000`
    args = _parser().parse_args(argv)
    command = args.command
    env = {**os.environ, **_overrides(args)}
    try:
        config = read_config(args.config, env)
    except StartupError as exc:
        configure_logging(LoggingSettings())
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    if command == "check-config":
        try:
            return _check_config(config, args.json)
        except StartupError as exc:
            for problem in exc.problems:
                print(f"config error: {problem}", file=sys.stderr)
            return EXIT_REFUSED
    configure_logging(config.logging)
    if command == "migrate":
        return _run(migrate_command(config), config)
    if command == "reshard":
        return _run(reshard_command(config, dry_run=args.dry_run), config)
    try:
        if command == "cluster":
            options = ClusterOptions(instances=args.instances, nginx=args.nginx)
            return _run(cluster_command(config, options), config)
        role: Role = "worker" if command == "worker" else "serve"
        listen_fd = getattr(args, "listen_fd", None)
        main_task = serve(
            config, role=role, reload=lambda: read_config(args.config, env), listen_fd=listen_fd
        )
        return _run(main_task, config)
    except (ConfigError, PluginError) as exc:
        for problem in exc.problems:
            log.error("startup refused: %s", problem)
        return EXIT_REFUSED
    except StartupError as exc:
        for problem in exc.problems:
            log.error("startup failed: %s", problem)
        return 1
    except KeelError as exc:
        log.error("startup failed: %s", exc)
        return 1
    except Exception:
        log.exception("startup failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
