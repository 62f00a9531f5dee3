# SPDX-License-Identifier: Apache-2.0
"""songs: adding, reading, changing, deleting, searching and listing songs; who may do what."""

import pytest

from conftest import auth

SONG = {"title": "Blue in Green", "artist": "Miles Davis", "album": "Kind of Blue",
        "release_year": 1959, "path": "/music/kind-of-blue/03.flac", "user_id": 1}


@pytest.fixture
def songs(cluster):
    cluster.start("songs")
    return cluster.client("songs")


def add(client, user_id=1, **fields):
    body = dict(SONG, user_id=user_id, **fields)
    resp = client.post("/songs", json=body, headers=auth(user_id))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_add_and_read_a_song(songs):
    song = add(songs)
    assert song == dict(SONG, id=song["id"])
    resp = songs.get("/songs/%d" % song["id"], headers=auth(2))  # anyone logged in reads
    assert resp.status_code == 200 and resp.get_json() == song


def test_songs_need_a_valid_token(songs):
    song = add(songs)
    assert songs.post("/songs", json=SONG).status_code == 401
    assert songs.get("/songs/%d" % song["id"]).status_code == 401
    assert songs.get("/songs/search?q=blue").status_code == 401
    assert songs.get("/songs/%d" % song["id"], headers=auth(1, secret="x" * 20)).status_code == 401


def test_a_song_is_added_only_as_oneself(songs):
    resp = songs.post("/songs", json=dict(SONG, user_id=2), headers=auth(1))
    assert resp.status_code == 403 and "user_id" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("change,field", [
    ({"title": None}, "title"),
    ({"title": ""}, "title"),
    ({"title": 7}, "title"),
    ({"artist": "a" * 201}, "artist"),
    ({"album": {"x": 1}}, "album"),
    ({"release_year": "1959"}, "release_year"),
    ({"release_year": 1959.5}, "release_year"),
    ({"release_year": True}, "release_year"),
    ({"release_year": 99999}, "release_year"),
    ({"path": None}, "path"),
    ({"user_id": "1"}, "user_id"),
    ({"user_id": 0}, "user_id"),
    ({"user_id": 2**70}, "user_id"),
])
def test_bad_song_fields_are_400(songs, change, field):
    body = {k: v for k, v in dict(SONG, **change).items() if v is not None}
    resp = songs.post("/songs", json=body, headers=auth(1))
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]["field"] == field


def test_missing_song_is_404(songs):
    assert songs.get("/songs/999", headers=auth(1)).status_code == 404
    assert songs.get("/songs/99999999999999999999", headers=auth(1)).status_code == 404
    assert songs.put("/songs/999", json={"title": "x"}, headers=auth(1)).status_code == 404
    assert songs.delete("/songs/999", headers=auth(1)).status_code == 404


def test_only_the_owner_changes_or_deletes(songs):
    song = add(songs, user_id=1)
    path = "/songs/%d" % song["id"]
    assert songs.put(path, json={"title": "Mine now"}, headers=auth(2)).status_code == 403
    assert songs.delete(path, headers=auth(2)).status_code == 403
    resp = songs.put(path, json={"title": "Blue in Green (take 2)", "release_year": 1960},
                     headers=auth(1))
    assert resp.status_code == 200
    assert resp.get_json()["title"] == "Blue in Green (take 2)"
    assert resp.get_json()["release_year"] == 1960 and resp.get_json()["artist"] == "Miles Davis"
    assert songs.get(path, headers=auth(1)).get_json()["title"] == "Blue in Green (take 2)"
    assert songs.delete(path, headers=auth(1)).status_code == 204
    assert songs.get(path, headers=auth(1)).status_code == 404


def test_update_refuses_bad_changes(songs):
    path = "/songs/%d" % add(songs)["id"]
    for body in ({}, {"genre": "jazz"}, {"user_id": 2}, {"release_year": "x"}):
        assert songs.put(path, json=body, headers=auth(1)).status_code == 400, body
    assert songs.put(path, data="x", headers=auth(1)).status_code == 400


def test_search_by_title_artist_or_album(songs):
    add(songs)
    add(songs, title="So What")
    add(songs, title="Giant Steps", artist="John Coltrane", album="Giant Steps")
    titles = lambda q: [s["title"] for s in songs.get("/songs/search", query_string={"q": q},
                                                      headers=auth(3)).get_json()["songs"]]
    assert titles("miles") == ["Blue in Green", "So What"]
    assert titles("GIANT") == ["Giant Steps"]
    assert titles("kind of") == ["Blue in Green", "So What"]
    assert titles("%") == [] and titles("_") == []  # wildcards are literal
    assert titles("nothing like it") == []
    resp = songs.get("/songs/search?q=miles&limit=1", headers=auth(3))
    assert len(resp.get_json()["songs"]) == 1
    assert songs.get("/songs/search", headers=auth(3)).status_code == 400
    assert songs.get("/songs/search?q=a&limit=0", headers=auth(3)).status_code == 400
    assert songs.get("/songs/search?q=a&limit=x", headers=auth(3)).status_code == 400


def test_a_users_songs(songs):
    add(songs, user_id=1)
    add(songs, user_id=2, title="Other")
    add(songs, user_id=1, title="Second")
    body = songs.get("/songs/user/1", headers=auth(2)).get_json()
    assert body["user_id"] == 1 and [s["title"] for s in body["songs"]] == ["Blue in Green",
                                                                            "Second"]
    assert songs.get("/songs/user/3", headers=auth(2)).get_json()["songs"] == []
    assert [s["title"] for s in songs.get("/songs/user/1?offset=1", headers=auth(1)
                                          ).get_json()["songs"]] == ["Second"]


def test_data_survives_a_restart_in_the_same_data_dir(cluster, songs):
    song = add(songs)
    cluster.start("songs")  # a new replica process on the same EMP_DATA_DIR
    resp = cluster.client("songs").get("/songs/%d" % song["id"], headers=auth(1))
    assert resp.status_code == 200 and resp.get_json() == song
