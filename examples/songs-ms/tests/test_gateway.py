# SPDX-License-Identifier: Apache-2.0
"""gateway: the user journey through the one entry point, its routes, and one trace per
request across the services behind it."""

import pytest

from conftest import client_spans, server_spans

SERVICES = ("users", "auth", "songs", "playlists", "aggregator", "gateway")


@pytest.fixture
def gw(cluster):
    for name in SERVICES:
        cluster.start(name)
    return cluster.client("gateway")


def journey(gw):
    """Sign up, log in, add songs, make a playlist, fill it, read it back; returns its ids."""
    resp = gw.post("/users", json={"email": "ann@example.com", "name": "Ann",
                                   "password": "a long password"})
    assert resp.status_code == 201
    uid = resp.get_json()["id"]
    resp = gw.post("/login", json={"email": "ann@example.com", "password": "a long password"})
    assert resp.status_code == 200
    h = {"Authorization": "Bearer " + resp.get_json()["token"]}
    song_ids = []
    for title in ("Intro", "Outro"):
        resp = gw.post("/songs", headers=h, json={
            "title": title, "artist": "Ann", "album": "Demo", "release_year": 2024,
            "path": "/m/%s.mp3" % title, "user_id": uid})
        assert resp.status_code == 201
        song_ids.append(resp.get_json()["id"])
    resp = gw.post("/playlists", headers=h, json={"name": "Best of", "user_id": uid})
    assert resp.status_code == 201 and resp.headers["Location"].startswith("/playlists/")
    pl = resp.get_json()["id"]
    for song_id in song_ids:
        assert gw.post("/playlists/songs/%d" % pl, headers=h,
                       json={"song_id": song_id, "user_id": uid}).status_code == 201
    return uid, h, pl, song_ids


def test_the_user_journey_through_the_gateway(gw):
    uid, h, pl, song_ids = journey(gw)
    resp = gw.get("/playlists/songs/%d" % pl, headers=h)
    assert resp.status_code == 200
    assert [s["title"] for s in resp.get_json()["songs"]] == ["Intro", "Outro"]
    assert gw.get("/users/%d" % uid, headers=h).get_json()["name"] == "Ann"
    assert gw.get("/songs/search?q=intro", headers=h).get_json()["songs"][0]["id"] == song_ids[0]
    assert [p["name"] for p in gw.get("/playlists/user/%d" % uid, headers=h).get_json()[
        "playlists"]] == ["Best of"]
    assert gw.get("/users/exists/%d" % uid).get_json()["exists"] is True
    assert gw.delete("/playlists/songs/%d/%d" % (pl, song_ids[0]), headers=h).status_code == 204
    assert gw.get("/playlists/%d" % pl, headers=h).get_json()["songs"] == [song_ids[1]]


def test_each_route_reaches_its_service(cluster, gw):
    uid, h, pl, _ = journey(gw)
    cases = [("GET", "/playlists/songs/%d" % pl, "127.0.0.1:31005"),
             ("GET", "/playlists/%d" % pl, "127.0.0.1:31004"),
             ("GET", "/songs/user/%d" % uid, "127.0.0.1:31003"),
             ("GET", "/users/%d" % uid, "127.0.0.1:31001"),
             ("GET", "/verify", "127.0.0.1:31002")]
    for method, path, address in cases:
        before = len(cluster.adapter.requests)
        assert gw.open(path, method=method, headers=h).status_code == 200, path
        assert cluster.adapter.requests[before][:3] == (address, method, path.split("?")[0])


def test_errors_of_the_services_pass_through_unchanged(gw):
    resp = gw.post("/users", json={"email": "x"})
    assert resp.status_code == 400 and resp.get_json()["error"]["field"] == "email"
    resp = gw.get("/songs/1")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = gw.post("/login", json={"email": "who@example.com", "password": "whatever1"})
    assert resp.status_code == 401


def test_unknown_routes_and_internal_ones_are_404(cluster, gw):
    before = len(cluster.adapter.requests)
    for path in ("/", "/admin", "/users/verify", "/playlistsX"):
        resp = gw.post(path, json={"email": "a@b.co", "password": "12345678"})
        assert resp.status_code == 404, path
        assert resp.get_json()["error"]["code"] == "not_found"
    assert gw.get("/login").status_code == 404
    assert len(cluster.adapter.requests) == before


def test_a_service_down_is_503(cluster, gw):
    cluster.stop("songs")
    resp = gw.get("/songs/1")
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "upstream_unavailable"


def test_the_query_string_and_a_huge_body(gw):
    resp = gw.get("/users/exists?email=nobody@example.com")
    assert resp.get_json() == {"email": "nobody@example.com", "exists": False}
    resp = gw.post("/users", data=b"x" * 200000, content_type="application/json")
    assert resp.status_code == 413


def test_reading_a_playlist_is_one_trace_gateway_aggregator_playlists_songs(cluster, gw):
    _, h, pl, _ = journey(gw)
    marks = {n: len(cluster.spans(n)) for n in SERVICES}
    gw.get("/playlists/songs/%d" % pl, headers=h)
    new = {n: cluster.spans(n)[marks[n]:] for n in SERVICES}
    (root,) = server_spans(new["gateway"])
    assert "parentId" not in root and root["name"] == "get /playlists/songs/<id>"
    (to_agg,) = client_spans(new["gateway"])
    assert to_agg["name"] == "get /playlists/songs/<id>"
    assert to_agg["remoteEndpoint"]["serviceName"] == "alice/aggregator"
    (agg,) = server_spans(new["aggregator"])
    assert agg["parentId"] == to_agg["id"]
    spans = [s for n in SERVICES for s in new[n]]
    assert {s["traceId"] for s in spans} == {root["traceId"]}
    assert len(server_spans(new["playlists"])) == 1 and len(server_spans(new["songs"])) == 2
    assert new["users"] == [] and new["auth"] == []
