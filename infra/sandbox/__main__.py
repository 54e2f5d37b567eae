"""``make local``: berth's API on localhost against an in-process AWS emulator. Ctrl-C stops it."""

from __future__ import annotations

import logging
import signal
import sys
import time

from infra.sandbox.app import SandboxOptions, start


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = SandboxOptions.from_env()
    print("berth sandbox: synthesizing and deploying into the local emulator...", flush=True)
    began = time.monotonic()
    sandbox = start(options)
    fence = (
        f"commands run as uids from {sandbox.command_user}, apart from the sandbox's credentials"
        if sandbox.command_user is not None
        else "commands run as YOUR user and can read the sandbox's environment (not root)"
    )
    print(
        f"""
berth sandbox ready in {time.monotonic() - began:.1f} s: {sandbox.url}
  websocket:       {sandbox.websocket.url}  (header X-Berth-User, or ?user=)
  emulator (moto): {sandbox.emulator.endpoint}
  workers:         {fence}

  SigV4 (any AWS client; profiles {", ".join(sandbox.credentials.profiles)}):
  export AWS_CONFIG_FILE={sandbox.config_file}
  export AWS_SHARED_CREDENTIALS_FILE={sandbox.credentials_file}

  curl -s -X POST {sandbox.url}/sessions -H 'X-Berth-User: alice' -d '{{"profile": "default"}}'
  curl -s {sandbox.url}/sessions -H 'X-Berth-User: alice'
  curl -s {sandbox.url}/openapi.json -H 'X-Berth-User: alice'
  curl -s -X POST {sandbox.url}/workspaces/demo/commands -H 'X-Berth-User: alice' \\
       -d '{{"command": "echo hello", "terminal": "t1"}}'

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


if __name__ == "__main__":
    sys.exit(main())
