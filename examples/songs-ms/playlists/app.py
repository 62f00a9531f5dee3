# SPDX-License-Identifier: Apache-2.0
"""playlists: users' playlists and the ids of the songs in them. Creating one, adding and
removing a song, reading one, listing a user's. A playlist is its owner's only. Song details
are the songs service's: the aggregator puts the two together."""

import sqlite3

from common import db, service
from common.service import conflict, forbidden, not_found

SCHEMA = """
CREATE TABLE IF NOT EXISTS playlists (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s', 'now'))
);
CREATE INDEX IF NOT EXISTS playlists_user ON playlists (user_id);
CREATE TABLE IF NOT EXISTS playlist_songs (
    playlist_id INTEGER NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    song_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (playlist_id, song_id)
);
"""

NAME_MAX = 100
SONGS_MAX = 500  # per playlist
LIST_MAX = 100


def song_ids(playlist_id):
    rows = db.conn().execute("SELECT song_id FROM playlist_songs WHERE playlist_id = ? "
                             "ORDER BY position", (playlist_id,)).fetchall()
    return [r["song_id"] for r in rows]


def public(row, with_songs=True):
    playlist = {"id": row["id"], "name": row["name"], "user_id": row["user_id"]}
    if with_songs:
        playlist["songs"] = song_ids(row["id"])
    return playlist


def owned(playlist_id, user_id=None):
    """The playlist, after checking the token is its owner's (and user_id's, when given)."""
    me = service.authenticate()
    row = db.conn().execute("SELECT * FROM playlists WHERE id = ?", (playlist_id,)).fetchone()
    if row is None:
        raise not_found("playlist %d does not exist" % playlist_id)
    if row["user_id"] != me:
        raise forbidden("playlist %d belongs to user %d, and the token is user %d's"
                        % (playlist_id, row["user_id"], me))
    if user_id is not None and user_id != me:
        raise forbidden("user_id is %d, and the token is user %d's" % (user_id, me))
    return row


def load_config(env):
    return service.load_config("playlists", env, default_port=5003, stateful=True)


def create_app(config, tracer):
    app = service.make_app(config, tracer)
    db.attach(app, db.Database(config["data_dir"], "playlists.db", SCHEMA))

    @app.post("/playlists")
    def create_playlist():
        me = service.authenticate()
        body = service.json_object()
        name = service.get_str(body, "name", NAME_MAX)
        user_id = service.get_id(body, "user_id")
        if user_id != me:
            raise forbidden("user_id is %d, and the token is user %d's: make playlists as "
                            "yourself" % (user_id, me))
        cur = db.conn().execute("INSERT INTO playlists (name, user_id) VALUES (?, ?)",
                                (name, user_id))
        row = db.conn().execute("SELECT * FROM playlists WHERE id = ?",
                                (cur.lastrowid,)).fetchone()
        return public(row), 201, {"Location": "/playlists/%d" % cur.lastrowid}

    @app.get("/playlists/<id:playlist_id>")
    def get_playlist(playlist_id):
        return public(owned(playlist_id))

    @app.delete("/playlists/<id:playlist_id>")
    def delete_playlist(playlist_id):
        owned(playlist_id)
        db.conn().execute("DELETE FROM playlists WHERE id = ?", (playlist_id,))
        return "", 204

    @app.post("/playlists/songs/<id:playlist_id>")
    def add_song(playlist_id):
        body = service.json_object()
        song_id = service.get_id(body, "song_id")
        user_id = service.get_id(body, "user_id")
        owned(playlist_id, user_id)
        conn = db.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            count, last = conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(position), 0) FROM playlist_songs "
                "WHERE playlist_id = ?", (playlist_id,)).fetchone()
            if count >= SONGS_MAX:
                raise conflict("playlist %d has %d songs, the most it can hold"
                               % (playlist_id, SONGS_MAX))
            conn.execute("INSERT INTO playlist_songs (playlist_id, song_id, position) "
                         "VALUES (?, ?, ?)", (playlist_id, song_id, last + 1))
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise conflict("song %d is in playlist %d already" % (song_id, playlist_id),
                           "song_id")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return public(owned(playlist_id)), 201

    @app.delete("/playlists/songs/<id:playlist_id>/<id:song_id>")
    def remove_song(playlist_id, song_id):
        owned(playlist_id)
        cur = db.conn().execute("DELETE FROM playlist_songs WHERE playlist_id = ? AND song_id = ?",
                                (playlist_id, song_id))
        if cur.rowcount == 0:
            raise not_found("song %d is not in playlist %d" % (song_id, playlist_id))
        return "", 204

    @app.get("/playlists/user/<id:user_id>")
    def user_playlists(user_id):
        service.require_user(user_id, "the playlists of user %d" % user_id)
        limit = service.query_int("limit", LIST_MAX, 1, LIST_MAX)
        offset = service.query_int("offset", 0, 0, 10**9)
        rows = db.conn().execute(
            "SELECT * FROM playlists WHERE user_id = ? ORDER BY id LIMIT ? OFFSET ?",
            (user_id, limit, offset)).fetchall()
        return {"user_id": user_id, "playlists": [public(r, with_songs=False) for r in rows]}

    return app
