"""REST topics on a real agent: create, paged list, describe, configs, add partitions, delete,
and the error body for each refusal (a refused request changes nothing)."""

from __future__ import annotations

from tests.engine.rest.conftest import Rest, assert_error


def test_create_describe_alter_delete(rest: Rest) -> None:
    created = rest.post(
        "/v1/topics",
        {"topic_name": "orders", "partitions_count": 2, "configs": [{"name": "json.ignore-errors", "value": "true"}]},
    )
    assert created.status == 201, created.body
    assert created.json()["partitions_count"] == 2
    assert {"name": "json.ignore-errors", "value": "true"} in created.json()["configs"]

    described = rest.get("/v1/topics/orders").json()
    assert [p["partition_id"] for p in described["partitions"]] == [0, 1]
    assert all(p["end_offset"] == 0 for p in described["partitions"])

    altered = rest.post(
        "/v1/topics/orders/configs:alter",
        {
            "data": [
                {"name": "message.timestamp.type", "value": "LogAppendTime"},
                {"name": "json.ignore-errors", "operation": "DELETE"},
            ]
        },
    )
    assert altered.status == 200, altered.body
    names = {c["name"]: c["value"] for c in altered.json()["data"]}
    assert names.get("message.timestamp.type") == "LogAppendTime" and "json.ignore-errors" not in names
    assert rest.get("/v1/topics/orders/configs").json() == altered.json()

    grown = rest.call("PATCH", "/v1/topics/orders", {"partitions_count": 3})
    assert grown.status == 200, grown.body
    assert len(grown.json()["partitions"]) == 3
    assert_error(rest.call("PATCH", "/v1/topics/orders", {"partitions_count": 2}), 400, "partition_count")

    assert rest.call("DELETE", "/v1/topics/orders").status == 204
    assert_error(rest.get("/v1/topics/orders"), 404, "topic_not_found")
    assert_error(rest.call("DELETE", "/v1/topics/orders"), 404, "topic_not_found")


def test_refusals_change_nothing(rest: Rest) -> None:
    assert rest.post("/v1/topics", {"topic_name": "once"}).status == 201
    assert_error(rest.post("/v1/topics", {"topic_name": "once"}), 409, "topic_exists")
    bad_setting = rest.post("/v1/topics", {"topic_name": "bad", "configs": [{"name": "no.such", "value": "1"}]})
    assert_error(bad_setting, 400)
    assert_error(rest.get("/v1/topics/bad"), 404)
    # Body validation: 422 in the same body shape, naming the field.
    body = assert_error(rest.post("/v1/topics", {"topic_name": "x", "partitions_count": 0}), 422, "invalid_request")
    assert "partitions_count" in body["message"]
    assert_error(rest.post("/v1/topics", {"topic_name": "x", "extra": 1}), 422)
    assert_error(rest.post("/v1/topics", raw=b"{not json"), 422)
    # A whole alter is refused when one change is bad: the good one is not applied.
    refused = rest.post(
        "/v1/topics/once/configs:alter",
        {"data": [{"name": "json.ignore-errors", "value": "true"}, {"name": "no.such", "value": "1"}]},
    )
    assert_error(refused, 400)
    assert rest.get("/v1/topics/once/configs").json()["data"] == []
    assert_error(rest.get("/v1/no-such-route"), 404, "not_found")
    assert_error(rest.call("PUT", "/v1/topics"), 405)


def test_list_pages(rest: Rest) -> None:
    names = [f"page-{i:02d}" for i in range(7)]
    for name in names:
        assert rest.post("/v1/topics", {"topic_name": name}).status == 201
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        path = "/v1/topics?page_size=3" + (f"&page_token={token}" if token else "")
        page = rest.get(path).json()
        seen += [t["topic_name"] for t in page["data"]]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
        # A topic deleted between two pages does not shift the next page.
        if pages == 1:
            assert rest.call("DELETE", f"/v1/topics/{seen[-1]}").status == 204
    ours = [n for n in seen if n.startswith("page-")]
    assert ours == names
    assert_error(rest.get("/v1/topics?page_token=%%%"), 400)
    assert_error(rest.get("/v1/topics?page_size=0"), 422)
    assert_error(rest.get("/v1/topics?page_size=100000"), 422)
