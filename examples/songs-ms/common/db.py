# SPDX-License-Identifier: Apache-2.0
"""SQLite for the services with data: one database file in the replica's data directory
($EMP_DATA_DIR, which EMP keeps across stop, start and scaling), a connection per request."""

import os
import sqlite3

import flask


class Database:
    def __init__(self, data_dir, file_name, schema):
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, file_name)
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema)
        conn.close()

    def connect(self):
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def request_connection(self):
        """The connection of the request in progress, closed when it ends."""
        conn = flask.g.get("db")
        if conn is None:
            conn = flask.g.db = self.connect()
        return conn


def close_request_connection(exc=None):
    conn = flask.g.pop("db", None)
    if conn is not None:
        conn.close()


def attach(app, database):
    """Makes database the app's, with its connections closed at the end of each request."""
    app.extensions["songs_ms_db"] = database
    app.teardown_appcontext(close_request_connection)
    return database


def conn():
    return flask.current_app.extensions["songs_ms_db"].request_connection()
