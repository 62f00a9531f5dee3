# SPDX-License-Identifier: Apache-2.0
"""songs: the song catalogue. Adding, reading, changing and deleting songs, searching them by
title, artist or album, and listing one user's songs. Anyone logged in reads; only the user who
added a song changes or deletes it."""

import flask

from common import db, service
from common.service import bad_request, forbidden, not_found

SCHEMA = """
CREATE TABLE IF NOT EXISTS songs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    artist TEXT NOT NULL,
    album TEXT NOT NULL,
    release_year INTEGER NOT NULL,
    path TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s', 'now'))
);
CREATE INDEX IF NOT EXISTS songs_user ON songs (user_id);
"""

FIELDS = ("title", "artist", "album", "release_year", "path", "user_id")
TEXT_MAX = 200
PATH_MAX = 1024
YEAR_MIN, YEAR_MAX = 1000, 2100
LIST_MAX = 100


def public(row):
    return {name: row[name] for name in ("id",) + FIELDS}


def read_fields(body, required):
    values = {}
    for name in ("title", "artist", "album"):
        values[name] = service.get_str(body, name, TEXT_MAX, required)
    values["release_year"] = service.get_int(body, "release_year", YEAR_MIN, YEAR_MAX, required)
    values["path"] = service.get_str(body, "path", PATH_MAX, required)
    return {k: v for k, v in values.items() if v is not None}


def find(song_id):
    row = db.conn().execute("SELECT * FROM songs WHERE id = ?", (song_id,)).fetchone()
    if row is None:
        raise not_found("song %d does not exist" % song_id)
    return row


def owned(song_id):
    me = service.authenticate()
    row = find(song_id)
    if row["user_id"] != me:
        raise forbidden("song %d belongs to user %d, and the token is user %d's"
                        % (song_id, row["user_id"], me))
    return row


def load_config(env):
    return service.load_config("songs", env, default_port=5002, stateful=True)


def create_app(config, tracer):
    app = service.make_app(config, tracer)
    db.attach(app, db.Database(config["data_dir"], "songs.db", SCHEMA))

    @app.post("/songs")
    def create_song():
        me = service.authenticate()
        body = service.json_object()
        values = read_fields(body, required=True)
        user_id = service.get_id(body, "user_id")
        if user_id != me:
            raise forbidden("user_id is %d, and the token is user %d's: add songs as yourself"
                            % (user_id, me))
        cur = db.conn().execute(
            "INSERT INTO songs (title, artist, album, release_year, path, user_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (values["title"], values["artist"], values["album"], values["release_year"],
             values["path"], user_id))
        return public(find(cur.lastrowid)), 201, {"Location": "/songs/%d" % cur.lastrowid}

    @app.get("/songs/<id:song_id>")
    def get_song(song_id):
        service.authenticate()
        return public(find(song_id))

    @app.put("/songs/<id:song_id>")
    def update_song(song_id):
        owned(song_id)
        body = service.json_object()
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise bad_request("unknown field %r: a song has %s" % (unknown[0], ", ".join(FIELDS)),
                              unknown[0])
        if "user_id" in body:
            raise bad_request("user_id cannot change: a song stays with the user who added it",
                              "user_id")
        values = read_fields(body, required=False)
        if not values:
            raise bad_request("nothing to change: give any of title, artist, album, "
                              "release_year, path")
        db.conn().execute("UPDATE songs SET %s WHERE id = ?"
                          % ", ".join(k + " = ?" for k in values),
                          list(values.values()) + [song_id])
        return public(find(song_id))

    @app.delete("/songs/<id:song_id>")
    def delete_song(song_id):
        owned(song_id)
        db.conn().execute("DELETE FROM songs WHERE id = ?", (song_id,))
        return "", 204

    @app.get("/songs/search")
    def search():
        service.authenticate()
        query = flask.request.args.get("q", "").strip()
        if not 1 <= len(query) <= TEXT_MAX:
            raise bad_request("give ?q=TEXT (1 to %d characters) to search titles, artists and "
                              "albums" % TEXT_MAX, "q")
        limit = service.query_int("limit", 20, 1, LIST_MAX)
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = db.conn().execute(
            "SELECT * FROM songs WHERE title LIKE ?1 ESCAPE '\\' OR artist LIKE ?1 ESCAPE '\\' "
            "OR album LIKE ?1 ESCAPE '\\' ORDER BY id LIMIT ?2", (like, limit)).fetchall()
        return {"query": query, "songs": [public(r) for r in rows]}

    @app.get("/songs/user/<id:user_id>")
    def user_songs(user_id):
        service.authenticate()
        limit = service.query_int("limit", LIST_MAX, 1, LIST_MAX)
        offset = service.query_int("offset", 0, 0, 10**9)
        rows = db.conn().execute(
            "SELECT * FROM songs WHERE user_id = ? ORDER BY id LIMIT ? OFFSET ?",
            (user_id, limit, offset)).fetchall()
        return {"user_id": user_id, "songs": [public(r) for r in rows]}

    return app
