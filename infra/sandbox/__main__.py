"""``make local``: berth's API on localhost against an in-process AWS emulator. Ctrl-C stops it."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sys
import time
from typing import Any

from infra.sandbox.app import SandboxOptions, start
from infra.sandbox.faults import FaultSpecError

HELP = """\
Runs berth's API on localhost against an in-process AWS emulator (moto): synthesizes the
app, deploys the template into the emulator and serves the real handlers. Ctrl-C stops it.

environment:
  BERTH_LOCAL_HOST                interface to listen on (127.0.0.1)
  BERTH_LOCAL_PORT                the REST API's port (8080; 0 picks a free one)
  BERTH_LOCAL_WEBSOCKET_PORT      the WebSocket endpoint's port (8081)
  BERTH_LOCAL_ROUTER_PORT         where sessions are reached, <id>.berth.localhost (8082)
  BERTH_LOCAL_EMULATOR_PORT       the emulator's port (0: a free one, printed)
  BERTH_LOCAL_CONCURRENCY         execution environments per function (4)
  BERTH_LOCAL_LOG_LEVEL           handlers' log level (WARNING)
  BERTH_LOCAL_SCHEDULE_SECONDS    run scheduled functions this often (their own rate)
  BERTH_LOCAL_TASK_START_SECONDS  seconds a task takes to reach RUNNING (0; on AWS ~60)
  BERTH_LOCAL_CONTEXT             settings overrides (JSON), e.g. {"berth:workers.lease_seconds": 6}
"""


def port_in_use(host: str, port: int) -> bool:
    if port == 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m infra.sandbox",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    # Ctrl-C must work even when the shell that started us ignored SIGINT (`make local &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        options = SandboxOptions.from_env()
    except FaultSpecError as error:
        print(f"berth sandbox: BERTH_LOCAL_FAULTS: {error}", file=sys.stderr)
        return 2
    for port, variable in (
        (options.port, "BERTH_LOCAL_PORT"),
        (options.websocket_port, "BERTH_LOCAL_WEBSOCKET_PORT"),
        (options.router_port, "BERTH_LOCAL_ROUTER_PORT"),
        (options.emulator_port, "BERTH_LOCAL_EMULATOR_PORT"),
    ):
        if port_in_use(options.host, port):
            print(
                f"berth sandbox: port {port} is in use; choose another with {variable}=<port>",
                file=sys.stderr,
            )
            return 1
    began = time.monotonic()
    try:
        sandbox = start(options, lambda step: print(f"berth sandbox: {step}...", flush=True))
    except KeyboardInterrupt:
        print("\nberth sandbox: stopped before it was ready", flush=True)
        return 0
    local = sandbox.announce()
    fence = (
        f"commands run as uids from {sandbox.command_user}, apart from the sandbox's credentials"
        if sandbox.command_user is not None
        else "commands run as YOUR user and can read the sandbox's environment (not root)"
    )
    print(
        f"""
berth sandbox ready in {time.monotonic() - began:.1f} s: {sandbox.url}
  websocket:       {sandbox.websocket.url}  (SigV4, or header X-Berth-User / ?user=)
  sessions router: {sandbox.router_url}  (Host <session id>.berth.localhost + its token)
  emulator (moto): {sandbox.emulator.endpoint}
  workers:         {fence}{faults_line(sandbox)}

  the berth CLI (SigV4 as alice; profiles {", ".join(sandbox.credentials.profiles)}):
  .venv/bin/berth config --local      # or export these:
  export BERTH_API_URL={local["api_url"]} BERTH_WEBSOCKET_URL={local["websocket_url"]}
  export BERTH_PROFILE=berth-local-alice AWS_REGION={local["region"]}
  export AWS_CONFIG_FILE={sandbox.config_file}
  export AWS_SHARED_CREDENTIALS_FILE={sandbox.credentials_file}

  the aws CLI (or boto3) against the emulator, with any credentials:
  AWS_ENDPOINT_URL={sandbox.emulator.endpoint} AWS_REGION={local["region"]} \\
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws cloudformation describe-stacks

  curl -s -X POST {sandbox.url}/sessions -H 'X-Berth-User: alice' -d '{{"profile": "default"}}'
  curl -s {sandbox.url}/openapi.json -H 'X-Berth-User: alice'

Ctrl-C stops it.""",
        flush=True,
    )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        sandbox.server.serve_forever()
    except KeyboardInterrupt:
        print("\nberth sandbox: stopping", flush=True)
    finally:
        sandbox.close()
    return 0


def faults_line(sandbox: Any) -> str:
    """The banner's word on injected faults (BERTH_LOCAL_FAULTS), if any are."""
    faults = sandbox.emulator.faults
    if faults is None:
        return ""
    plan = faults.plan
    rates = ", ".join(f"{name} {rate:g}" for name, rate in sorted(plan.rates.items())) or "none"
    return (
        f"\n  faults:          {rates}; latency {plan.latency_seconds * 1000:g} ms; capacity "
        f"failures {'on' if plan.capacity else 'off'}; seed {plan.seed}; log {faults.log}"
    )


def quiet_broken_pipes(unraisable: Any) -> None:
    """Ctrl-C in a terminal reaches the CDK's Node.js helper (jsii) too; its exit hook then
    finds it gone and would print a BrokenPipeError about it. Anything else is printed."""
    if isinstance(unraisable.exc_value, BrokenPipeError):
        return
    sys.__unraisablehook__(unraisable)


if __name__ == "__main__":
    sys.unraisablehook = quiet_broken_pipes
    sys.exit(main())
