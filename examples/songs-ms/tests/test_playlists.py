# SPDX-License-Identifier: Apache-2.0
"""playlists: creating, adding and removing songs, reading, a user's playlists; owners only."""

import pytest

from conftest import auth


@pytest.fixture
def playlists(cluster):
    cluster.start("playlists")
    return cluster.client("playlists")


def create(client, user_id=1, name="Road trip"):
    resp = client.post("/playlists", json={"name": name, "user_id": user_id},
                       headers=auth(user_id))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def add_song(client, playlist_id, song_id, user_id=1):
    return client.post("/playlists/songs/%d" % playlist_id,
                       json={"song_id": song_id, "user_id": user_id}, headers=auth(user_id))


def test_create_then_add_songs_in_order(playlists):
    pl = create(playlists)
    assert pl == {"id": pl["id"], "name": "Road trip", "user_id": 1, "songs": []}
    for song_id in (30, 10, 20):
        resp = add_song(playlists, pl["id"], song_id)
        assert resp.status_code == 201
    assert resp.get_json()["songs"] == [30, 10, 20]
    resp = playlists.get("/playlists/%d" % pl["id"], headers=auth(1))
    assert resp.status_code == 200 and resp.get_json()["songs"] == [30, 10, 20]


def test_a_song_is_in_a_playlist_once(playlists):
    pl = create(playlists)
    assert add_song(playlists, pl["id"], 5).status_code == 201
    resp = add_song(playlists, pl["id"], 5)
    assert resp.status_code == 409 and resp.get_json()["error"]["field"] == "song_id"


def test_remove_a_song(playlists):
    pl = create(playlists)
    add_song(playlists, pl["id"], 5)
    add_song(playlists, pl["id"], 6)
    path = "/playlists/songs/%d/5" % pl["id"]
    assert playlists.delete(path, headers=auth(2)).status_code == 403
    assert playlists.delete(path, headers=auth(1)).status_code == 204
    assert playlists.get("/playlists/%d" % pl["id"], headers=auth(1)).get_json()["songs"] == [6]
    assert playlists.delete(path, headers=auth(1)).status_code == 404
    assert add_song(playlists, pl["id"], 5).status_code == 201  # back, at the end
    assert playlists.get("/playlists/%d" % pl["id"], headers=auth(1)).get_json()["songs"] == [6, 5]


def test_a_playlist_is_its_owners(playlists):
    pl = create(playlists, user_id=1)
    assert playlists.get("/playlists/%d" % pl["id"], headers=auth(2)).status_code == 403
    assert playlists.get("/playlists/%d" % pl["id"]).status_code == 401
    assert add_song(playlists, pl["id"], 5, user_id=2).status_code == 403
    resp = playlists.post("/playlists/songs/%d" % pl["id"], json={"song_id": 5, "user_id": 2},
                          headers=auth(1))
    assert resp.status_code == 403
    resp = playlists.post("/playlists", json={"name": "x", "user_id": 2}, headers=auth(1))
    assert resp.status_code == 403
    assert playlists.get("/playlists/user/1", headers=auth(2)).status_code == 403


@pytest.mark.parametrize("body,field", [
    ({"user_id": 1}, "name"),
    ({"name": "", "user_id": 1}, "name"),
    ({"name": "n" * 101, "user_id": 1}, "name"),
    ({"name": "x"}, "user_id"),
    ({"name": "x", "user_id": -4}, "user_id"),
    ({"name": "x", "user_id": "one"}, "user_id"),
])
def test_bad_playlist_input_is_400(playlists, body, field):
    resp = playlists.post("/playlists", json=body, headers=auth(1))
    assert resp.status_code == 400 and resp.get_json()["error"]["field"] == field


def test_bad_song_input_is_400(playlists):
    pl = create(playlists)
    path = "/playlists/songs/%d" % pl["id"]
    for body in ({"user_id": 1}, {"song_id": "5", "user_id": 1}, {"song_id": 5},
                 {"song_id": 0, "user_id": 1}, [5]):
        resp = playlists.post(path, json=body, headers=auth(1))
        assert resp.status_code == 400, body


def test_missing_playlist_is_404(playlists):
    assert playlists.get("/playlists/77", headers=auth(1)).status_code == 404
    assert add_song(playlists, 77, 5).status_code == 404
    assert playlists.delete("/playlists/songs/77/5", headers=auth(1)).status_code == 404
    assert playlists.get("/playlists/x", headers=auth(1)).status_code == 404


def test_a_users_playlists_and_deleting_one(playlists):
    a = create(playlists, name="A")
    b = create(playlists, name="B")
    create(playlists, user_id=2, name="Not mine")
    add_song(playlists, a["id"], 1)
    body = playlists.get("/playlists/user/1", headers=auth(1)).get_json()
    assert [p["name"] for p in body["playlists"]] == ["A", "B"]
    assert playlists.delete("/playlists/%d" % a["id"], headers=auth(2)).status_code == 403
    assert playlists.delete("/playlists/%d" % a["id"], headers=auth(1)).status_code == 204
    body = playlists.get("/playlists/user/1", headers=auth(1)).get_json()
    assert [p["id"] for p in body["playlists"]] == [b["id"]]
