from typing import Any

from fastapi.testclient import TestClient


def _check_names(body: dict[str, Any]) -> set[str]:
    return {entity["name"] for entity in body["entities"]}


def test_liveness_depends_on_nothing_external(client: TestClient) -> None:
    response = client.get("/c2c/health_checks", params={"tags": "liveness"})
    assert response.status_code == 200, response.text
    assert _check_names(response.json()) == {"Liveness", "LivenessState"}


def test_readiness_lists_every_check(client: TestClient) -> None:
    response = client.get("/c2c/health_checks", params={"tags": "readiness"})
    assert response.status_code == 200, response.text
    expected = {"Liveness", "ReadinessState"{% if cookiecutter.database %}, "SQLAlchemy", "Alembic"{% endif %}}
    assert _check_names(response.json()) == expected


def test_readiness_reports_the_availability_state(client: TestClient) -> None:
    response = client.get("/c2c/health_checks", params={"name": "ReadinessState"})
    assert response.status_code == 200, response.text
    assert response.json()["entities"][0]["payload"]["state"] == "accepting"
