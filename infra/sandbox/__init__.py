"""The local sandbox: berth's real handlers on localhost against an in-process AWS emulator."""
