import os

from fastapi.testclient import TestClient


def test_hello(client: TestClient) -> None:
    response = client.get("/api/hello", params={"name": "Alice"})
    assert response.status_code == 200
    assert response.json() == {"message": "Hello Alice!"}


def test_hello_default_name(client: TestClient) -> None:
    assert client.get("/api/hello").json() == {"message": "Hello world!"}


def test_hello_refuses_an_empty_name(client: TestClient) -> None:
    response = client.get("/api/hello", params={"name": ""})
    assert response.status_code == 422


def test_responses_carry_security_headers_and_request_id(client: TestClient) -> None:
    response = client.get("/api/hello")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response.headers
    # Served over HTTPS by default (C2C__HTTP=false): browsers are told to stay on HTTPS.
    assert "Strict-Transport-Security" in response.headers
    assert response.headers["X-Request-ID"]


def test_unknown_route_is_404(client: TestClient) -> None:
    assert client.get("/api/nothing-here").status_code == 404


def test_processes_answer_through_the_broadcast(client: TestClient) -> None:
    response = client.get("/api/processes")
    assert response.status_code == 200, response.text
    answers = response.json()
    # Without Redis the broadcast stays in this process: one answer, from the test process itself.
    assert [answer["payload"]["pid"] for answer in answers] == [os.getpid()]


def test_openapi_schema_lists_the_routes(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert {"/api/hello", "/api/processes"} <= set(response.json()["paths"])


def test_errors_are_problem_documents_with_the_trace_id(client: TestClient) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = client.get("/api/hello", params={"name": ""}, headers={"traceparent": traceparent})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert response.json()["request_id"] == response.headers["X-Request-ID"]
    missing = client.get("/api/nothing-here")
    assert (missing.status_code, missing.json()["title"]) == (404, "Not Found")
