"""The local router decides like the ALB listener: host and token conditions, wildcards,
case; and the sandbox lays a session image out the way Docker would."""

from __future__ import annotations

from pathlib import Path

from infra.sandbox.dockerfile import assemble
from infra.sandbox.router import parse_head, rule_matches
from infra.settings import CONTAINERS_DIR

HOST = "ses_01.berth.localhost"
RULES = {
    "cookie": {
        "Conditions": [
            {"Field": "host-header", "HostHeaderConfig": {"Values": [HOST]}},
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "Cookie", "Values": ["*berth-session=T0k*"]},
            },
        ]
    },
    "header": {
        "Conditions": [
            {"Field": "host-header", "HostHeaderConfig": {"Values": [HOST]}},
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "X-Berth-Session-Token", "Values": ["T0k"]},
            },
        ]
    },
}


def request(*headers: str) -> tuple[str, dict[str, list[str]]]:
    parsed = parse_head("\r\n".join(["GET / HTTP/1.1", *headers]).encode())
    assert parsed is not None
    return parsed


def test_host_and_token_must_both_match() -> None:
    host, headers = request(f"Host: {HOST}:8082", "Cookie: a=1; berth-session=T0k; b=2")
    assert host == HOST
    assert rule_matches(RULES["cookie"], host, headers)
    assert not rule_matches(RULES["header"], host, headers)
    _, by_header = request(f"Host: {HOST}", "x-berth-session-token: T0k")
    assert rule_matches(RULES["header"], HOST, by_header)  # header names: any case


def test_a_wrong_token_host_or_missing_header_does_not_match() -> None:
    for headers in (
        (f"Host: {HOST}", "X-Berth-Session-Token: other"),
        ("Host: ses_02.berth.localhost", "X-Berth-Session-Token: T0k"),
        (f"Host: {HOST}",),
        ("X-Berth-Session-Token: T0k",),
    ):
        host, parsed = request(*headers)
        assert not any(rule_matches(rule, host, parsed) for rule in RULES.values()), headers


def test_wildcards_are_the_albs_and_brackets_are_literal() -> None:
    rule = {
        "Conditions": [
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "Cookie", "Values": ["*s=[ab]?*"]},
            }
        ]
    }
    assert rule_matches(rule, "", {"cookie": ["s=[ab]x"]})
    assert not rule_matches(rule, "", {"cookie": ["s=ax"]})


def test_a_malformed_head_is_refused() -> None:
    assert parse_head(b"GARBAGE") is None
    assert parse_head(b"GET / HTTP/1.1\r\nno colon here") is None


def test_a_relative_copy_lands_under_the_workdir(tmp_path: Path) -> None:
    echo = CONTAINERS_DIR / "echo"
    workdir = assemble(echo, echo / "Dockerfile", None, tmp_path / "echo")
    assert workdir == tmp_path / "echo" / "app"
    assert (workdir / "server.py").read_text() == (echo / "server.py").read_text()
