"""The revoke's old delete against the sweep's batches, on one engine (scripts/bench-sweep.sh).

sqlite N BATCH            a fresh database in a temporary directory, the server's pragmas
postgres N BATCH PSQL URL a migrated database, driven through psql (no driver to install)
"""

import glob
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

ORG, SCOPE = "a" * 32, "b" * 32
MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "host-native", "migrations")
SWEEP = (
    "DELETE FROM data_keys WHERE org_id = '{o}' AND id IN (SELECT id FROM data_keys "
    "WHERE org_id = '{o}' AND scope_id = '{s}' LIMIT {b})"
)
UNCOUNT = (
    "UPDATE orgs SET stored_keys = CASE WHEN stored_keys > {d} THEN stored_keys - {d} "
    "ELSE 0 END WHERE id = '{o}'"
)


def report(engine, n, batch, old, batches):
    total = sum(batches)
    longest = max(batches)
    median = sorted(batches)[len(batches) // 2]
    print(
        f"{engine} {n} keys: one DELETE in one transaction {old:.2f} s; "
        f"sweep {len(batches)} batches of {batch}: {total:.2f} s in all, "
        f"median {median * 1000:.1f} ms, longest {longest * 1000:.1f} ms"
    )


def sqlite(n, batch):
    with tempfile.TemporaryDirectory() as d:
        c = sqlite3.connect(os.path.join(d, "byok.db"), isolation_level=None)
        for p in ("journal_mode = WAL", "synchronous = FULL", "secure_delete = ON",
                  "journal_size_limit = 0"):
            c.execute("PRAGMA " + p)
        for m in sorted(glob.glob(os.path.join(MIGRATIONS, "*.sql"))):
            c.executescript(open(m).read())
        c.execute("INSERT INTO orgs (id, name, default_holder, unwrap_cache_ttl_ms, created_at) "
                  "VALUES (?, 'o', 'managed', 0, 0)", (ORG,))

        def fill():
            c.execute("BEGIN")
            c.executemany(
                "INSERT INTO data_keys (org_id, id, scope_id, version, wrapped, created_at) "
                "VALUES (?, ?, ?, 1, ?, 0)",
                ((ORG, "%032x" % i, SCOPE, os.urandom(140)) for i in range(n)))
            c.execute("UPDATE orgs SET stored_keys = ? WHERE id = ?", (n, ORG))
            c.execute("COMMIT")

        fill()
        t = time.perf_counter()
        c.execute("BEGIN")
        c.execute("DELETE FROM data_keys WHERE org_id = ? AND scope_id = ?", (ORG, SCOPE))
        c.execute("COMMIT")
        old = time.perf_counter() - t
        fill()
        batches = []
        while True:
            t = time.perf_counter()
            c.execute("BEGIN IMMEDIATE")
            gone = c.execute(SWEEP.format(o=ORG, s=SCOPE, b=batch)).rowcount
            c.execute(UNCOUNT.format(d=gone, o=ORG))
            c.execute("COMMIT")
            batches.append(time.perf_counter() - t)
            if gone < batch:
                break
        report("sqlite", n, batch, old, batches)


def postgres(n, batch, psql, url):
    def run(script):
        out = subprocess.run([psql, url, "-qAt", "-v", "ON_ERROR_STOP=1"], input=script,
                             capture_output=True, text=True, check=True).stdout
        return [float(l.split()[1]) / 1000 for l in out.splitlines() if l.startswith("Time:")]

    fill = (
        "INSERT INTO orgs (id, name, default_holder, unwrap_cache_ttl_ms, created_at) "
        f"VALUES ('{ORG}', 'o', 'managed', 0, 0) ON CONFLICT DO NOTHING;\n"
        "INSERT INTO data_keys (org_id, id, scope_id, version, wrapped, created_at) "
        f"SELECT '{ORG}', lpad(to_hex(i), 32, '0'), '{SCOPE}', 1, "
        f"decode(repeat(md5(i::text), 9), 'hex'), 0 FROM generate_series(1, {n}) i;\n"
        "VACUUM ANALYZE data_keys;\n"
    )
    run(fill)
    # The old way, under no timeout (the server's is 10 s): how long it would need.
    times = run("SET statement_timeout = 0;\n\\timing on\nBEGIN;\n"
                f"DELETE FROM data_keys WHERE org_id = '{ORG}' AND scope_id = '{SCOPE}';\n"
                "COMMIT;\n")
    old = sum(times)
    run(fill)
    one = (
        f"BEGIN;\nSELECT 1 FROM orgs WHERE id = '{ORG}' FOR UPDATE;\n"
        + SWEEP.format(o=ORG, s=SCOPE, b=batch) + ";\n"
        + UNCOUNT.format(d=batch, o=ORG) + ";\nCOMMIT;\n"
    )
    count = n // batch + 1
    times = run("\\timing on\n" + one * count)
    # Five timed statements a batch: BEGIN, the lock, the delete, the count, COMMIT.
    batches = [sum(times[i:i + 5]) for i in range(0, len(times), 5)]
    report("postgres", n, batch, old, batches)


if __name__ == "__main__":
    engine, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if engine == "sqlite":
        sqlite(n, batch)
    else:
        postgres(n, batch, sys.argv[4], sys.argv[5])
