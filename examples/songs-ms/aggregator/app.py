# SPDX-License-Identifier: Apache-2.0
"""aggregator: a playlist with its songs' details. GET /playlists/songs/{id} asks playlists for
the playlist and its song ids, then songs for each song, passing the caller's token on, so one
request makes a trace three services deep. Keeps no data."""

import flask

from common import service
from common.service import ApiError


def load_config(env):
    return service.load_config("aggregator", env, default_port=5004,
                               needs=("PLAYLISTS_URL", "SONGS_URL"))


def create_app(config, tracer, session=None):
    app = service.make_app(config, tracer)
    playlists = service.downstream(config, tracer, "PLAYLISTS_URL", "playlists", session)
    songs = service.downstream(config, tracer, "SONGS_URL", "songs", session)

    def body_of(resp, app_name):
        try:
            return resp.json()
        except ValueError:
            raise ApiError(502, "upstream_error", "%s answered %d without JSON"
                           % (app_name, resp.status_code))

    @app.get("/playlists/songs/<id:playlist_id>")
    def playlist_with_songs(playlist_id):
        service.authenticate()  # a bad token is refused here, before any call
        auth = {"Authorization": flask.request.headers["Authorization"]}
        resp = playlists.call("GET", "/playlists/%d" % playlist_id, "get /playlists/<id>",
                              headers=auth)
        if resp.status_code != 200:
            raise service.passed_error(resp, "playlists")
        playlist = body_of(resp, "playlists")
        ids = playlist.get("songs") if isinstance(playlist, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ApiError(502, "upstream_error", "playlists answered a playlist without songs")
        details, missing = [], []
        for song_id in ids:
            resp = songs.call("GET", "/songs/%d" % song_id, "get /songs/<id>", headers=auth)
            if resp.status_code == 404:
                missing.append(song_id)  # deleted since it was added: the playlist still reads
            elif resp.status_code == 200:
                details.append(body_of(resp, "songs"))
            else:
                raise service.passed_error(resp, "songs")
        return {"id": playlist.get("id"), "name": playlist.get("name"),
                "user_id": playlist.get("user_id"), "songs": details, "missing_songs": missing}

    return app
