"""The one emulated account and region the sandbox (and the tests that feed its handlers)
use. Nothing here reaches AWS."""

ACCOUNT = "123456789012"
REGION = "us-east-1"
