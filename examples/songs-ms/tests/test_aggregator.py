# SPDX-License-Identifier: Apache-2.0
"""aggregator: a playlist combined with its songs' details from two services, in one trace."""

import pytest

from conftest import auth, client_spans, server_spans


@pytest.fixture
def world(cluster):
    for name in ("songs", "playlists", "aggregator"):
        cluster.start(name)
    songs, playlists = cluster.client("songs"), cluster.client("playlists")
    ids = []
    for title in ("One", "Two", "Three"):
        resp = songs.post("/songs", headers=auth(1), json={
            "title": title, "artist": "Band", "album": "LP", "release_year": 2001,
            "path": "/m/%s.ogg" % title, "user_id": 1})
        ids.append(resp.get_json()["id"])
    pl = playlists.post("/playlists", json={"name": "Mix", "user_id": 1},
                        headers=auth(1)).get_json()
    for song_id in (ids[2], ids[0]):
        playlists.post("/playlists/songs/%d" % pl["id"], json={"song_id": song_id,
                                                               "user_id": 1}, headers=auth(1))
    return cluster, pl["id"], ids


def test_a_playlist_with_its_songs_details_in_playlist_order(world):
    cluster, pl, ids = world
    resp = cluster.client("aggregator").get("/playlists/songs/%d" % pl, headers=auth(1))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["id"] == pl and body["name"] == "Mix" and body["user_id"] == 1
    assert [s["title"] for s in body["songs"]] == ["Three", "One"]
    assert body["songs"][0] == {"id": ids[2], "title": "Three", "artist": "Band",
                                "album": "LP", "release_year": 2001, "path": "/m/Three.ogg",
                                "user_id": 1}
    assert body["missing_songs"] == []


def test_a_deleted_song_is_listed_as_missing(world):
    cluster, pl, ids = world
    assert cluster.client("songs").delete("/songs/%d" % ids[2],
                                          headers=auth(1)).status_code == 204
    body = cluster.client("aggregator").get("/playlists/songs/%d" % pl,
                                            headers=auth(1)).get_json()
    assert [s["title"] for s in body["songs"]] == ["One"]
    assert body["missing_songs"] == [ids[2]]


def test_errors_of_playlists_pass_through(world):
    cluster, pl, _ = world
    agg = cluster.client("aggregator")
    resp = agg.get("/playlists/songs/999", headers=auth(1))
    assert resp.status_code == 404 and "playlist 999" in resp.get_json()["error"]["message"]
    assert agg.get("/playlists/songs/%d" % pl, headers=auth(2)).status_code == 403


def test_no_token_is_401_before_any_call(world):
    cluster, pl, _ = world
    calls = len(cluster.adapter.requests)
    resp = cluster.client("aggregator").get("/playlists/songs/%d" % pl)
    assert resp.status_code == 401
    assert len(cluster.adapter.requests) == calls


def test_the_token_is_passed_on(world):
    cluster, pl, _ = world
    token = auth(1)["Authorization"]
    cluster.client("aggregator").get("/playlists/songs/%d" % pl, headers=auth(1))
    sent = cluster.adapter.requests[-3:]
    assert [(r[0], r[2]) for r in sent][0] == ("127.0.0.1:31004", "/playlists/%d" % pl)
    assert all(r[3]["Authorization"] == token for r in sent)


def test_one_request_is_one_trace_three_services_deep(world):
    cluster, pl, _ = world
    marks = {n: len(cluster.spans(n)) for n in ("songs", "playlists", "aggregator")}
    cluster.client("aggregator").get("/playlists/songs/%d" % pl, headers=auth(1))
    new = {n: cluster.spans(n)[marks[n]:] for n in marks}
    (root,) = server_spans(new["aggregator"])
    calls = client_spans(new["aggregator"])
    assert [c["name"] for c in calls] == ["get /playlists/<id>", "get /songs/<id>",
                                         "get /songs/<id>"]
    assert [c["remoteEndpoint"]["serviceName"] for c in calls] == [
        "alice/playlists", "alice/songs", "alice/songs"]
    callees = server_spans(new["playlists"]) + server_spans(new["songs"])
    assert len(callees) == 3
    trace = root["traceId"]
    assert all(s["traceId"] == trace for s in calls + callees)
    assert all(c["parentId"] == root["id"] for c in calls)
    assert sorted(s["parentId"] for s in callees) == sorted(c["id"] for c in calls)
    assert {s["localEndpoint"]["serviceName"] for s in callees} == {"alice/playlists",
                                                                   "alice/songs"}
    assert root["tags"]["http.status_code"] == "200" and "parentId" not in root


def test_songs_down_is_503_tagged_as_an_error(world):
    cluster, pl, _ = world
    cluster.stop("songs")
    resp = cluster.client("aggregator").get("/playlists/songs/%d" % pl, headers=auth(1))
    assert resp.status_code == 503 and "songs" in resp.get_json()["error"]["message"]
    root = server_spans(cluster.spans("aggregator"))[-1]
    assert root["tags"]["http.status_code"] == "503" and root["tags"]["error"] == "503"


def test_an_incoming_trace_is_continued(world):
    cluster, pl, _ = world
    headers = dict(auth(1), **{"X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124",
                               "X-B3-SpanId": "a2fb4a1d1a96d312", "X-B3-Sampled": "1"})
    cluster.client("aggregator").get("/playlists/songs/%d" % pl, headers=headers)
    root = server_spans(cluster.spans("aggregator"))[-1]
    assert root["traceId"] == "463ac35c9f6413ad48485a3953bb6124"
    assert root["id"] == "a2fb4a1d1a96d312"
    last_song = server_spans(cluster.spans("songs"))[-1]
    assert last_song["traceId"] == "463ac35c9f6413ad48485a3953bb6124"
