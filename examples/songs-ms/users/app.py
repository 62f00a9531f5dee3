# SPDX-License-Identifier: Apache-2.0
"""users: the accounts of songs-ms. Sign-up, reading, changing and deleting one's account, and
whether a user exists. Passwords are kept only as scrypt hashes; POST /users/verify checks one
for the auth service, which issues the tokens (the gateway does not expose it)."""

import hashlib
import hmac
import os
import sqlite3

import flask

from common import db, service
from common.service import ApiError, bad_request, conflict, not_found

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s', 'now'))
);
"""

EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
PASSWORD_MIN, PASSWORD_MAX = 8, 256
# scrypt with 16 MiB of memory per hash: RFC 7914's interactive setting
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password, salt=None):
    """'scrypt$N$r$p$SALT$HASH' (hex) of password, with a new random salt unless one is given."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (SCRYPT_N, SCRYPT_R, SCRYPT_P, salt.hex(), digest.hex())


def check_password(password, stored):
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                                  r=int(r), p=int(p), maxmem=64 * 1024 * 1024,
                                  dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


# checked when the email is unknown, so that an unknown email takes as long as a wrong password
_DUMMY_HASH = None


def public(row):
    return {"id": row["id"], "email": row["email"], "name": row["name"],
            "created_at": row["created_at"]}


def get_email(body, required=True):
    return service.get_str(body, "email", 254, required, 3, EMAIL, "an email address")


def get_password(body, required=True):
    value = body.get("password")
    if value is None and not required:
        return None
    if value is None:
        raise bad_request("password is required", "password")
    if not isinstance(value, str):
        raise bad_request("password must be a string, not %s" % service.json_type(value),
                          "password")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise bad_request("password must have %d to %d characters" % (PASSWORD_MIN, PASSWORD_MAX),
                          "password")
    return value


def find(user_id):
    row = db.conn().execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        raise not_found("user %d does not exist" % user_id)
    return row


def load_config(env):
    return service.load_config("users", env, default_port=5000, stateful=True)


def create_app(config, tracer):
    app = service.make_app(config, tracer)
    db.attach(app, db.Database(config["data_dir"], "users.db", SCHEMA))

    @app.post("/users")
    def create_user():
        body = service.json_object()
        email = get_email(body)
        name = service.get_str(body, "name", 100)
        password = get_password(body)
        try:
            cur = db.conn().execute(
                "INSERT INTO users (email, name, password_hash) VALUES (?, ?, ?)",
                (email, name, hash_password(password)))
        except sqlite3.IntegrityError:
            raise conflict("a user with email %r exists already" % email, "email")
        return public(find(cur.lastrowid)), 201, {"Location": "/users/%d" % cur.lastrowid}

    @app.get("/users/<id:user_id>")
    def get_user(user_id):
        service.require_user(user_id, "user %d" % user_id)
        return public(find(user_id))

    @app.put("/users/<id:user_id>")
    def update_user(user_id):
        service.require_user(user_id, "user %d" % user_id)
        body = service.json_object()
        unknown = sorted(set(body) - {"email", "name", "password"})
        if unknown:
            raise bad_request("unknown field %r: a user has email, name and password"
                              % unknown[0], unknown[0])
        email = get_email(body, required=False)
        name = service.get_str(body, "name", 100, required=False)
        password = get_password(body, required=False)
        if email is None and name is None and password is None:
            raise bad_request("nothing to change: give email, name or password")
        find(user_id)
        sets, values = [], []
        for column, value in (("email", email), ("name", name)):
            if value is not None:
                sets.append(column + " = ?")
                values.append(value)
        if password is not None:
            sets.append("password_hash = ?")
            values.append(hash_password(password))
        try:
            db.conn().execute("UPDATE users SET %s WHERE id = ?" % ", ".join(sets),
                              values + [user_id])
        except sqlite3.IntegrityError:
            raise conflict("a user with email %r exists already" % email, "email")
        return public(find(user_id))

    @app.delete("/users/<id:user_id>")
    def delete_user(user_id):
        service.require_user(user_id, "user %d" % user_id)
        find(user_id)
        db.conn().execute("DELETE FROM users WHERE id = ?", (user_id,))
        return "", 204

    @app.get("/users/exists/<id:user_id>")
    def user_exists(user_id):
        row = db.conn().execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone()
        return {"id": user_id, "exists": row is not None}

    @app.get("/users/exists")
    def email_exists():
        email = flask.request.args.get("email")
        if email is None:
            raise bad_request("give ?email=ADDRESS", "email")
        email = get_email({"email": email})
        row = db.conn().execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone()
        return {"email": email, "exists": row is not None}

    @app.post("/users/verify")
    def verify():
        """For auth: the user whose email and password these are, or 401."""
        global _DUMMY_HASH
        body = service.json_object()
        email = get_email(body)
        password = service.get_str(body, "password", PASSWORD_MAX)
        row = db.conn().execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        if row is None:
            if _DUMMY_HASH is None:
                _DUMMY_HASH = hash_password("not a password")
            check_password(password, _DUMMY_HASH)
            raise ApiError(401, "unauthorized", "wrong email or password")
        if not check_password(body["password"], row["password_hash"]):
            raise ApiError(401, "unauthorized", "wrong email or password")
        return public(row)

    return app
