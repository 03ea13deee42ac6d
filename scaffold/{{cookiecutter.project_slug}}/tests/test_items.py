from fastapi.testclient import TestClient


def test_create_then_list_items(client: TestClient) -> None:
    created = client.post("/api/items", json={"name": "first"})
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["name"] == "first"

    listed = client.get("/api/items", params={"limit": 1000})
    assert listed.status_code == 200
    assert item in listed.json()


def test_item_name_is_required(client: TestClient) -> None:
    assert client.post("/api/items", json={"name": ""}).status_code == 422
    assert client.post("/api/items", json={}).status_code == 422
