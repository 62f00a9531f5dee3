# SPDX-License-Identifier: Apache-2.0
"""auth: login against the users service, the JWT it issues, /verify, and bad input."""

import jwt
import pytest

from conftest import SECRET, auth, client_spans, server_spans, token_for

PASSWORD = "correct horse"


@pytest.fixture
def login(cluster):
    cluster.start("users")
    cluster.start("auth")
    resp = cluster.client("users").post("/users", json={
        "email": "alice@example.com", "name": "Alice", "password": PASSWORD})
    assert resp.status_code == 201
    return cluster.client("auth"), resp.get_json()["id"]


def test_login_answers_a_jwt_for_the_user(login):
    client, uid = login
    resp = client.post("/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["token_type"] == "Bearer" and body["user_id"] == uid
    assert body["expires_in"] == 3600
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], issuer="songs-ms")
    assert claims["sub"] == str(uid) and claims["email"] == "alice@example.com"
    assert claims["exp"] - claims["iat"] == 3600
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["token"], "some-other-secret-0123", algorithms=["HS256"])


def test_the_token_opens_the_users_account(cluster, login):
    client, uid = login
    token = client.post("/login", json={"email": "alice@example.com",
                                        "password": PASSWORD}).get_json()["token"]
    resp = cluster.client("users").get("/users/%d" % uid,
                                       headers={"Authorization": "Bearer " + token})
    assert resp.status_code == 200 and resp.get_json()["name"] == "Alice"


@pytest.mark.parametrize("body", [
    {"email": "alice@example.com", "password": "wrong horse"},
    {"email": "bob@example.com", "password": PASSWORD},
])
def test_wrong_credentials_are_401(login, body):
    client, _ = login
    resp = client.post("/login", json=body)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == {"code": "unauthorized",
                                        "message": "wrong email or password"}
    assert "token" not in resp.get_json()


@pytest.mark.parametrize("body,field", [
    ({"password": PASSWORD}, "email"),
    ({"email": "alice@example.com"}, "password"),
    ({"email": "alice@example.com", "password": 5}, "password"),
    ({"email": ["alice@example.com"], "password": PASSWORD}, "email"),
])
def test_bad_login_input_is_400(login, body, field):
    client, _ = login
    resp = client.post("/login", json=body)
    assert resp.status_code == 400 and resp.get_json()["error"]["field"] == field
    assert client.post("/login", data=b"{", content_type="application/json").status_code == 400


def test_users_down_is_503_not_a_crash(cluster, login):
    client, _ = login
    cluster.stop("users")
    resp = client.post("/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert resp.status_code == 503
    assert resp.get_json()["error"]["code"] == "upstream_unavailable"
    server = server_spans(cluster.spans("auth"))[-1]
    assert server["tags"]["http.status_code"] == "503" and "error" in server["tags"]
    assert "error" in client_spans(cluster.spans("auth"))[-1]["tags"]


def test_verify(login):
    client, uid = login
    assert client.get("/verify", headers=auth(uid)).get_json() == {"user_id": uid,
                                                                   "valid": True}
    assert client.get("/verify").status_code == 401
    assert client.get("/verify", headers=auth(uid, ttl_s=-5)).status_code == 401
    none_alg = jwt.encode({"sub": str(uid), "iss": "songs-ms", "iat": 1, "exp": 2**40},
                          None, algorithm="none")
    assert client.get("/verify", headers={"Authorization": "Bearer " + none_alg}
                      ).status_code == 401
    assert client.get("/verify", headers={"Authorization": "Bearer " + token_for(
        uid, iss="someone-else")}).status_code == 401
    assert client.get("/verify", headers={"Authorization": "Bearer " + token_for(
        "admin")}).status_code == 401


def test_login_is_one_trace_across_auth_and_users(cluster, login):
    client, _ = login
    before = len(cluster.spans("users"))
    client.post("/login", json={"email": "alice@example.com", "password": PASSWORD})
    (auth_server,) = server_spans(cluster.spans("auth"))
    (auth_client,) = client_spans(cluster.spans("auth"))
    users_server = server_spans(cluster.spans("users")[before:])[0]
    assert auth_client["traceId"] == auth_server["traceId"] == users_server["traceId"]
    assert auth_client["parentId"] == auth_server["id"]
    assert users_server["parentId"] == auth_client["id"]
    assert users_server["localEndpoint"]["serviceName"] == "alice/users"
    assert auth_client["remoteEndpoint"]["serviceName"] == "alice/users"
    assert auth_client["remoteEndpoint"]["port"] == 31001
    assert auth_client["tags"]["http.status_code"] == "200"
    assert users_server.get("shared") is None and users_server["duration"] > 0
