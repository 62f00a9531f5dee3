#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A realistic mix of songs-ms requests against its gateway, for a duration at a rate (what
load.sh runs). Sets up a few users with songs and playlists first, then sends, at RATE requests
per second: mostly reads (a playlist through the aggregator, songs, searches, a user's lists),
some writes (new songs, songs added to playlists, renames) and logins. Prints what it sent, the
statuses and the latencies.

    loadgen.py --url http://127.0.0.1:31006 --duration 60 --rate 20 [--users 5] [--workers N]
"""

import argparse
import collections
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

WORDS = ["blue", "night", "river", "fire", "gold", "rain", "echo", "summer", "ghost", "light",
         "road", "heart", "stone", "wild", "city", "dream"]
ARTISTS = ["The Cribs", "Nova Lane", "Miles Ahead", "Lisbon Sound", "Paper Kites", "Aurora"]

# (weight, action name)
MIX = [(30, "playlist_with_songs"), (18, "get_song"), (14, "search"), (8, "user_songs"),
       (6, "user_playlists"), (8, "add_song"), (5, "add_to_playlist"), (4, "login"),
       (3, "get_user"), (2, "rename_song"), (2, "user_exists")]


def parse_duration(text):
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError("%r is not a duration (30, 30s, 5m, 1h)" % text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class User:
    def __init__(self, uid, email, password, token):
        self.uid, self.email, self.password, self.token = uid, email, password, token
        self.songs = []
        self.playlists = []
        self.lock = threading.Lock()

    def headers(self):
        return {"Authorization": "Bearer " + self.token}


class Load:
    def __init__(self, url, timeout_s):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.local = threading.local()
        self.rng_lock = threading.Lock()
        self.rng = random.Random()
        self.stats_lock = threading.Lock()
        self.statuses = collections.Counter()
        self.by_action = collections.Counter()
        self.latencies = collections.defaultdict(list)
        self.users = []

    def session(self):
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
        return self.local.s

    def pick(self, seq):
        with self.rng_lock:
            return self.rng.choice(seq)

    def request(self, action, method, path, **kwargs):
        start = time.monotonic()
        try:
            resp = self.session().request(method, self.url + path, timeout=self.timeout_s,
                                          **kwargs)
            status = str(resp.status_code)
        except requests.RequestException as e:
            resp, status = None, type(e).__name__
        elapsed = time.monotonic() - start
        with self.stats_lock:
            self.statuses[status] += 1
            self.by_action[action] += 1
            self.latencies[action].append(elapsed)
        return resp

    def sign_up(self, i, tag):
        email = "load-%s-%d@example.com" % (tag, i)
        password = "load-password-%d" % i
        resp = self.request("setup", "POST", "/users",
                            json={"email": email, "name": "Load %d" % i, "password": password})
        if resp is None or resp.status_code != 201:
            raise SystemExit("loadgen: signing up %s failed: %s" % (
                email, resp.text if resp is not None else "no answer"))
        uid = resp.json()["id"]
        resp = self.request("setup", "POST", "/login", json={"email": email,
                                                              "password": password})
        if resp is None or resp.status_code != 200:
            raise SystemExit("loadgen: logging in %s failed" % email)
        return User(uid, email, password, resp.json()["token"])

    def new_song(self, user, action="add_song"):
        title = "%s %s" % (self.pick(WORDS).title(), self.pick(WORDS))
        resp = self.request(action, "POST", "/songs", headers=user.headers(), json={
            "title": title, "artist": self.pick(ARTISTS), "album": self.pick(WORDS).title(),
            "release_year": 1960 + self.rng.randrange(64), "path": "/music/%s.ogg"
            % title.replace(" ", "-"), "user_id": user.uid})
        if resp is not None and resp.status_code == 201:
            with user.lock:
                user.songs.append(resp.json()["id"])

    def setup(self, users, songs_each, playlists_each):
        tag = "%x" % random.getrandbits(32)
        for i in range(users):
            user = self.sign_up(i, tag)
            for _ in range(songs_each):
                self.new_song(user, "setup")
            for p in range(playlists_each):
                resp = self.request("setup", "POST", "/playlists", headers=user.headers(),
                                    json={"name": "Mix %d" % p, "user_id": user.uid})
                pl = resp.json()["id"]
                user.playlists.append(pl)
                for song in random.sample(user.songs, min(6, len(user.songs))):
                    self.request("setup", "POST", "/playlists/songs/%d" % pl,
                                 headers=user.headers(),
                                 json={"song_id": song, "user_id": user.uid})
            self.users.append(user)

    def act(self, action):
        user = self.pick(self.users)
        h = user.headers()
        if action == "playlist_with_songs":
            self.request(action, "GET", "/playlists/songs/%d" % self.pick(user.playlists),
                         headers=h)
        elif action == "get_song":
            other = self.pick(self.users)
            with other.lock:
                song = self.pick(other.songs)
            self.request(action, "GET", "/songs/%d" % song, headers=h)
        elif action == "search":
            self.request(action, "GET", "/songs/search", params={"q": self.pick(WORDS)},
                         headers=h)
        elif action == "user_songs":
            self.request(action, "GET", "/songs/user/%d" % self.pick(self.users).uid, headers=h)
        elif action == "user_playlists":
            self.request(action, "GET", "/playlists/user/%d" % user.uid, headers=h)
        elif action == "add_song":
            self.new_song(user)
        elif action == "add_to_playlist":
            with user.lock:
                song = self.pick(user.songs)
            self.request(action, "POST", "/playlists/songs/%d" % self.pick(user.playlists),
                         headers=h, json={"song_id": song, "user_id": user.uid})  # 409s too
        elif action == "login":
            resp = self.request(action, "POST", "/login",
                                json={"email": user.email, "password": user.password})
            if resp is not None and resp.status_code == 200:
                user.token = resp.json()["token"]
        elif action == "get_user":
            self.request(action, "GET", "/users/%d" % user.uid, headers=h)
        elif action == "rename_song":
            with user.lock:
                song = self.pick(user.songs)
            self.request(action, "PUT", "/songs/%d" % song, headers=h,
                         json={"title": "%s (remastered)" % self.pick(WORDS).title()})
        elif action == "user_exists":
            self.request(action, "GET", "/users/exists/%d" % self.pick(self.users).uid)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100.0))] if values else 0.0


def main(argv=None):
    p = argparse.ArgumentParser(description="A realistic request mix against songs-ms.")
    p.add_argument("--url", required=True, help="the gateway's URL")
    p.add_argument("--duration", type=parse_duration, required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--users", type=int, default=5)
    p.add_argument("--songs", type=int, default=12, help="songs per user at setup")
    p.add_argument("--playlists", type=int, default=3, help="playlists per user at setup")
    p.add_argument("--workers", type=int, default=0, help="threads (default: from the rate)")
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    if not 0 < args.rate <= 10000 or args.duration <= 0 or not 1 <= args.users <= 1000:
        p.error("the rate must be from 0 to 10000 per second, the duration positive and "
                "--users from 1 to 1000")
    if args.songs < 1 or args.playlists < 1:
        p.error("--songs and --playlists must be at least 1")
    load = Load(args.url, args.timeout)
    t0 = time.monotonic()
    load.setup(args.users, args.songs, args.playlists)
    print("loadgen: set up %d users with %d songs and %d playlists each in %.1f s"
          % (args.users, args.songs, args.playlists, time.monotonic() - t0), file=sys.stderr)
    for key in ("setup",):
        load.by_action.pop(key, None)
        load.latencies.pop(key, None)
    load.statuses.clear()

    weights = [w for w, _ in MIX]
    actions = [a for _, a in MIX]
    workers = args.workers or max(4, min(128, int(args.rate)))
    pending = threading.Semaphore(workers * 2)
    skipped = 0
    start = time.monotonic()
    sent = 0
    with ThreadPoolExecutor(workers) as pool:
        while True:
            now = time.monotonic()
            if now - start >= args.duration:
                break
            due = start + sent / args.rate
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            sent += 1
            if not pending.acquire(blocking=False):
                skipped += 1  # the app is slower than the rate: do not pile up requests
                continue
            action = random.choices(actions, weights)[0]
            future = pool.submit(load.act, action)
            future.add_done_callback(lambda _: pending.release())
    elapsed = time.monotonic() - start
    total = sum(load.by_action.values())
    print("loadgen: %d requests in %.1f s (%.1f/s, target %.1f/s), %d skipped because %d were "
          "waiting" % (total, elapsed, total / elapsed, args.rate, skipped, workers * 2))
    print("statuses: " + ", ".join("%s: %d" % kv for kv in sorted(load.statuses.items())))
    print("%-22s %7s %9s %9s %9s" % ("action", "count", "p50 ms", "p95 ms", "p99 ms"))
    for action in actions:
        lat = load.latencies.get(action, [])
        if lat:
            print("%-22s %7d %9.1f %9.1f %9.1f" % (action, len(lat), percentile(lat, 50) * 1000,
                                                   percentile(lat, 95) * 1000,
                                                   percentile(lat, 99) * 1000))
    failed = sum(n for s, n in load.statuses.items() if not s[0] in "234")
    return 1 if total and failed > total / 2 else 0


if __name__ == "__main__":
    sys.exit(main())
