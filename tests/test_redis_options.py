"""_redis_options: the rules of the Redis settings, applied the same way at start-up (config) and when the
clients are built (redis_utils), from one place."""

from __future__ import annotations

import pytest

from c2casgiutils import _redis_options, config, redis_utils


def test_sentinel_list() -> None:
    assert _redis_options.parse_sentinels(" 10.0.0.1:26379, [::1]:26380 ,sentinel.example:5000") == [
        ("10.0.0.1", 26379),
        ("::1", 26380),
        ("sentinel.example", 5000),
    ]
    assert redis_utils.parse_sentinels is _redis_options.parse_sentinels


@pytest.mark.parametrize("value", ["host-without-port", "h:1,", "h:port", ":26379"])
def test_sentinel_list_errors_name_the_item(value: str) -> None:
    with pytest.raises(ValueError, match="expected 'host:port,host:port', got "):
        _redis_options.parse_sentinels(value)
    with pytest.raises(config.SettingsError, match="C2C__REDIS__SENTINELS .*expected 'host:port,host:port'"):
        config.load_settings(redis={"sentinels": value, "servicename": "s"})


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        ({"sentinels": "127.0.0.1:26379"}, "C2C__REDIS__SERVICENAME is missing: Sentinel needs the name"),
        (
            {"sentinels": "127.0.0.1:26379", "servicename": "s", "url": "redis://127.0.0.1/0"},
            "C2C__REDIS__URL and C2C__REDIS__SENTINELS are both set",
        ),
    ],
)
def test_topology_is_checked_at_start_up_and_when_the_clients_are_built(
    settings,  # type: ignore[no-untyped-def]
    redis: dict[str, str],
    message: str,
) -> None:
    with pytest.raises(config.SettingsError, match=message):
        config.load_settings(redis=redis)
    settings.redis.url = None
    for name, value in redis.items():
        setattr(settings.redis, name, value)  # changed in code, past the settings' validation
    with pytest.raises(config.SettingsError, match=message):
        redis_utils.build()
