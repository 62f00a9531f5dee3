# SPDX-License-Identifier: Apache-2.0
"""users: sign-up, hashing, reading, changing, deleting, exists, verify, bad input."""

import sqlite3

import pytest

from conftest import auth, server_spans
from users.app import check_password, hash_password

ALICE = {"email": "alice@example.com", "name": "Alice", "password": "correct horse"}


@pytest.fixture
def users(cluster):
    cluster.start("users")
    return cluster.client("users")


def sign_up(client, **fields):
    body = dict(ALICE, **fields)
    resp = client.post("/users", json=body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_sign_up_answers_the_user_without_its_password(users):
    resp = users.post("/users", json=ALICE)
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["email"] == ALICE["email"] and body["name"] == "Alice"
    assert isinstance(body["id"], int) and resp.headers["Location"] == "/users/%d" % body["id"]
    assert "password" not in resp.get_data(as_text=True)
    assert "password_hash" not in body


def test_password_is_stored_only_as_a_salted_scrypt_hash(cluster, users, tmp_path):
    sign_up(users)
    sign_up(users, email="bob@example.com")  # the same password
    rows = sqlite3.connect(tmp_path / "users" / "users.db").execute(
        "SELECT password_hash FROM users ORDER BY id").fetchall()
    hashes = [r[0] for r in rows]
    for h in hashes:
        assert h.startswith("scrypt$") and ALICE["password"] not in h
        assert check_password(ALICE["password"], h)
        assert not check_password("wrong horse", h)
    assert hashes[0] != hashes[1], "each hash has its own salt"


def test_hash_checks_refuse_garbage():
    assert not check_password("x", "")
    assert not check_password("x", "md5$abc")
    assert not check_password("x", "scrypt$a$b$c$zz$zz")
    assert check_password("pw", hash_password("pw"))


def test_duplicate_email_is_a_conflict_whatever_its_case(users):
    sign_up(users)
    resp = users.post("/users", json=dict(ALICE, email="ALICE@example.com"))
    assert resp.status_code == 409
    assert resp.get_json()["error"]["field"] == "email"


@pytest.mark.parametrize("body,field", [
    ({"name": "A", "password": "12345678"}, "email"),
    ({"email": "not-an-email", "name": "A", "password": "12345678"}, "email"),
    ({"email": 42, "name": "A", "password": "12345678"}, "email"),
    ({"email": "a@b.co", "password": "12345678"}, "name"),
    ({"email": "a@b.co", "name": "", "password": "12345678"}, "name"),
    ({"email": "a@b.co", "name": "A" * 101, "password": "12345678"}, "name"),
    ({"email": "a@b.co", "name": "A"}, "password"),
    ({"email": "a@b.co", "name": "A", "password": "short"}, "password"),
    ({"email": "a@b.co", "name": "A", "password": 12345678}, "password"),
    ({"email": "a@b.co", "name": ["A"], "password": "12345678"}, "name"),
])
def test_sign_up_refuses_bad_fields_with_400_naming_the_field(users, body, field):
    resp = users.post("/users", json=body)
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["field"] == field and field in error["message"]


@pytest.mark.parametrize("data,content_type", [
    (b"not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'{"email": "a@b.co"}', "text/plain"),
    (b"", "application/json"),
    (b"\xff\xfe", "application/json"),
])
def test_a_body_that_is_not_a_json_object_is_400(users, data, content_type):
    resp = users.post("/users", data=data, content_type=content_type)
    assert resp.status_code == 400
    assert "JSON object" in resp.get_json()["error"]["message"]


def test_a_huge_body_is_413(users):
    resp = users.post("/users", json=dict(ALICE, name="x" * 100000))
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "too_large"


def test_reading_a_user_needs_its_own_token(users):
    alice = sign_up(users)
    uid = alice["id"]
    assert users.get("/users/%d" % uid).status_code == 401
    resp = users.get("/users/%d" % uid, headers={"Authorization": "Bearer nonsense"})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert users.get("/users/%d" % uid, headers={"Authorization": "Basic abc"}).status_code == 401
    assert users.get("/users/%d" % uid, headers=auth(uid + 1)).status_code == 403
    assert users.get("/users/%d" % uid, headers=auth(uid, secret="another-secret-0123456")
                     ).status_code == 401
    assert users.get("/users/%d" % uid, headers=auth(uid, ttl_s=-10)).status_code == 401
    resp = users.get("/users/%d" % uid, headers=auth(uid))
    assert resp.status_code == 200 and resp.get_json() == alice


def test_unknown_and_malformed_ids_are_404_not_crashes(users):
    assert users.get("/users/12345", headers=auth(12345)).status_code == 404
    for path in ("/users/abc", "/users/0", "/users/-1", "/users/99999999999999999999999"):
        resp = users.get(path, headers=auth(1))
        assert resp.status_code == 404, path
        assert resp.get_json()["error"]["code"] == "not_found"


def test_update_changes_name_email_and_password(users):
    uid = sign_up(users)["id"]
    resp = users.put("/users/%d" % uid, headers=auth(uid),
                     json={"name": "Alice B", "password": "new password"})
    assert resp.status_code == 200 and resp.get_json()["name"] == "Alice B"
    verify = users.post("/users/verify", json={"email": ALICE["email"],
                                               "password": "new password"})
    assert verify.status_code == 200 and verify.get_json()["id"] == uid
    old = users.post("/users/verify", json={"email": ALICE["email"],
                                            "password": ALICE["password"]})
    assert old.status_code == 401


def test_update_refuses_bad_input_and_other_users(users):
    uid = sign_up(users)["id"]
    other = sign_up(users, email="bob@example.com")["id"]
    path = "/users/%d" % uid
    assert users.put(path, headers=auth(uid), json={}).status_code == 400
    assert users.put(path, headers=auth(uid), json={"role": "admin"}).status_code == 400
    assert users.put(path, headers=auth(uid), json={"password": "1"}).status_code == 400
    assert users.put(path, headers=auth(other), json={"name": "X"}).status_code == 403
    resp = users.put(path, headers=auth(uid), json={"email": "bob@example.com"})
    assert resp.status_code == 409


def test_delete_removes_the_user(users):
    uid = sign_up(users)["id"]
    assert users.delete("/users/%d" % uid, headers=auth(uid + 1)).status_code == 403
    assert users.get("/users/exists/%d" % uid).get_json()["exists"] is True
    assert users.delete("/users/%d" % uid, headers=auth(uid)).status_code == 204
    assert users.get("/users/exists/%d" % uid).get_json() == {"id": uid, "exists": False}
    assert users.delete("/users/%d" % uid, headers=auth(uid)).status_code == 404


def test_exists_by_email(users):
    sign_up(users)
    assert users.get("/users/exists?email=alice@example.com").get_json()["exists"] is True
    assert users.get("/users/exists?email=ALICE@example.com").get_json()["exists"] is True
    assert users.get("/users/exists?email=carol@example.com").get_json()["exists"] is False
    assert users.get("/users/exists").status_code == 400
    assert users.get("/users/exists?email=nope").status_code == 400


def test_verify_says_401_for_a_wrong_password_or_an_unknown_email(users):
    uid = sign_up(users)["id"]
    ok = users.post("/users/verify", json={"email": "alice@example.com",
                                           "password": ALICE["password"]})
    assert ok.status_code == 200 and ok.get_json()["id"] == uid
    for body in ({"email": "alice@example.com", "password": "wrong horse"},
                 {"email": "nobody@example.com", "password": ALICE["password"]}):
        resp = users.post("/users/verify", json=body)
        assert resp.status_code == 401
        assert resp.get_json()["error"]["message"] == "wrong email or password"
    assert users.post("/users/verify", json={"email": "alice@example.com"}).status_code == 400


def test_every_request_is_a_server_span_of_the_emp_service_name(cluster, users):
    sign_up(users)
    users.get("/users/1")
    users.get("/nowhere")
    spans = server_spans(cluster.spans("users"))
    assert [s["tags"]["http.status_code"] for s in spans] == ["201", "401", "404"]
    for s in spans:
        assert s["localEndpoint"]["serviceName"] == "alice/users"
        assert s["duration"] > 0 and s["timestamp"] > 0
        assert len(s["traceId"]) == 32 and "parentId" not in s
        assert "error" not in s["tags"]
    assert spans[0]["name"] == "post /users"
    assert spans[1]["name"] == "get /users/<id:user_id>"


def test_health_answers_and_is_not_traced(cluster, users):
    resp = users.get("/health")
    assert resp.status_code == 200 and resp.get_json()["service"] == "alice/users"
    assert cluster.spans("users") == []


def test_wrong_method_is_405_json(users):
    resp = users.patch("/users")
    assert resp.status_code == 405 and resp.get_json()["error"]["code"] == "method_not_allowed"
