import pytest

from {{ cookiecutter.project_slug }}.config import SettingsError, load_settings


def test_settings_come_from_prefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("{{ cookiecutter.project_slug | upper }}__CORS__ALLOW_ORIGINS", "https://a.example, https://b.example")
    assert load_settings().cors.allow_origins == ["https://a.example", "https://b.example"]


def test_cors_wildcard_with_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("{{ cookiecutter.project_slug | upper }}__CORS__ALLOW_ORIGINS", "*")
    monkeypatch.setenv("{{ cookiecutter.project_slug | upper }}__CORS__ALLOW_CREDENTIALS", "true")
    with pytest.raises(SettingsError, match="{{ cookiecutter.project_slug | upper }}__CORS"):
        load_settings()


def test_invalid_log_format_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("{{ cookiecutter.project_slug | upper }}__LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="{{ cookiecutter.project_slug | upper }}__LOG_FORMAT"):
        load_settings()
