# SPDX-License-Identifier: Apache-2.0
"""auth: logs users in. POST /login checks the email and password with the users service and
answers a JWT (HS256, signed with JWT_SECRET) that every other service checks by itself;
GET /verify says whose a token is. Keeps no data."""

from common import service
from common.service import ApiError

TTL_DEFAULT_S = 3600


def load_config(env):
    config = service.load_config("auth", env, default_port=5001, needs=("USERS_URL",))
    text = env.get("JWT_TTL_S", str(TTL_DEFAULT_S))
    if not text.isdigit() or not 60 <= int(text) <= 7 * 86400:
        raise service.ConfigError("JWT_TTL_S is %r: expected seconds from 60 to 604800" % text)
    config["jwt_ttl_s"] = int(text)
    return config


def create_app(config, tracer, session=None):
    app = service.make_app(config, tracer)
    users = service.downstream(config, tracer, "USERS_URL", "users", session)

    @app.post("/login")
    def login():
        body = service.json_object()
        email = service.get_str(body, "email", 254)
        password = body.get("password")
        if not isinstance(password, str) or not password:
            raise service.bad_request("password is required, as a string", "password")
        resp = users.call("POST", "/users/verify", "post /users/verify",
                          json_body={"email": email, "password": password},
                          headers={"Accept": "application/json"})
        if resp.status_code == 401:
            raise service.unauthorized("wrong email or password")
        if resp.status_code != 200:
            raise service.passed_error(resp, "users")
        try:
            user = resp.json()
            user_id, user_email = int(user["id"]), user["email"]
        except (ValueError, KeyError, TypeError):
            raise ApiError(502, "upstream_error", "users answered an unexpected body")
        token = service.issue_token(config["jwt_secret"],
                                    {"id": user_id, "email": user_email,
                                     "name": user.get("name", "")}, config["jwt_ttl_s"])
        return {"token": token, "token_type": "Bearer", "expires_in": config["jwt_ttl_s"],
                "user_id": user_id}

    @app.get("/verify")
    def verify():
        user_id = service.authenticate()
        return {"user_id": user_id, "valid": True}

    return app
