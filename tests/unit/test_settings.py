"""Settings: defaults that deploy as-is, overrides by dotted key, one clear line per problem."""

from __future__ import annotations

from typing import Any

import pytest

from infra.settings import Settings, SettingsError, project_context


def settings_with(**overrides: Any) -> Settings:
    context = project_context() | {f"berth:{key}": value for key, value in overrides.items()}
    return Settings.from_context(context)


def test_cdk_json_defaults_are_valid_and_create_a_vpc() -> None:
    settings = Settings.from_context(project_context())
    assert settings.vpc.mode == "create"
    assert settings.storage.removal_policy == "retain"
    assert "default" in settings.sessions.profiles  # the docs' examples start it


def test_empty_context_falls_back_to_embedded_defaults() -> None:
    assert Settings.from_context({}) == Settings()


def test_dotted_override_parses_json_values() -> None:
    settings = settings_with(**{"sessions.profiles.default.memory": "1024"})
    assert settings.sessions.profiles["default"].memory == 1024
    settings = settings_with(**{"vpc.ingress_cidrs": '["10.0.0.0/8"]'})
    assert settings.vpc.ingress_cidrs == ["10.0.0.0/8"]


def test_override_can_add_a_profile() -> None:
    settings = settings_with(
        **{"sessions.profiles.big": '{"image": "echo", "cpu": 1024, "memory": 2048}'}
    )
    assert settings.sessions.profiles["big"].cpu == 1024


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "sessions.profiles.default.memory",
            "-1",
            "berth: invalid setting 'sessions.profiles.default.memory': "
            "Input should be greater than 0 (got -1)",
        ),
        (
            "sessions.profiles.default.colour",
            "red",
            "'sessions.profiles.default.colour': unknown setting",
        ),
        ("vpc.mode", "peered", "'vpc.mode': Input should be 'create' or 'lookup' (got 'peered')"),
        (
            "logs.retention_days",
            "31",
            "'logs.retention_days': CloudWatch Logs retention must be one of",
        ),
        ("sessions.profiles.default.image", "nope", "containers/nope/Dockerfile does not exist"),
        ("sessions.profiles.default.memory", "3000", "memory 3000 is not valid with cpu 256"),
        ("vpc.ingress_cidrs", '["0.0.0.0/0"]', "opens the containers to the whole internet"),
        ("vpc.task_subnets", "private", "set interface_endpoints true"),
        ("storage.removal_policy", "snapshot", "'storage.removal_policy'"),
        ("sessions.profiles.Bad_Name", '{"image": "echo"}', "'sessions.profiles.Bad_Name.[key]'"),
        (
            "sessions.profiles.default.warm_windows",
            '["weekdays 9-5"]',
            "'sessions.profiles.default.warm_windows': 'weekdays 9-5': expected '<days>",
        ),
        ("sessions.profiles.default.warm_pool", "-1", "'sessions.profiles.default.warm_pool'"),
    ],
)
def test_bad_settings_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_with(**{key: value})
    text = str(raised.value)
    assert message in text
    assert all(line.startswith("berth: invalid setting '") for line in text.splitlines())


def test_override_into_a_value_is_rejected() -> None:
    with pytest.raises(SettingsError, match="'prefix' is a value, not a group"):
        settings_with(**{"prefix.sub": "x"})


def test_lookup_mode_needs_a_vpc_and_an_environment() -> None:
    with pytest.raises(SettingsError, match="mode 'lookup' needs vpc_id or tags"):
        settings_with(**{"vpc.mode": "lookup"})
    settings = settings_with(
        **{
            "vpc.mode": "lookup",
            "vpc.vpc_id": "vpc-0a1b2c3d4e5f67890",
            "env.account": "111122223333",
            "env.region": "eu-west-1",
        }
    )
    assert settings.env.account == "111122223333"
