"""DuckDB's own Iceberg reader (its `iceberg` extension, `iceberg_scan`) over our tables, run in
an interpreter of its own (issue 16).

Why a separate interpreter and these pins: the project's environment has duckdb 2.0, whose
extensions are downloaded from extensions.duckdb.org at `LOAD` time (nothing to install from a
package registry, and nothing reachable offline). DuckDB 1.4.4's extensions are published on
PyPI as wheels (`duckdb-ext-*`), and an extension loads only into the DuckDB version it was built
for, so the reader under test is DuckDB 1.4.4 with the iceberg, avro (manifests) and httpfs (S3)
extensions of the same build. They cannot share an interpreter with duckdb 2.0, so they are
installed with `pip install --target` into `.venv/duckdb-iceberg-<version>/` (once; `.ci/
duckdb-iceberg` does it in CI) and a subprocess runs `python -S` (no site-packages: only
that directory and the standard library) with that directory first on its path.

Results come back as Parquet files DuckDB writes itself (`COPY ... TO`), read here with pyarrow:
the isolated interpreter then needs neither pyarrow nor pytz.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DUCKDB = "1.4.4"
EXTENSIONS_BUILD = "1.4.4.20260205"
PACKAGES = (f"duckdb=={DUCKDB}", *(f"duckdb-ext-{e}=={EXTENSIONS_BUILD}" for e in ("iceberg", "avro", "httpfs")))
TARGET = Path(__file__).resolve().parents[3] / ".venv" / f"duckdb-iceberg-{DUCKDB}"

# What the subprocess runs: argv[1] is the install directory; stdin the JSON request.
_RUNNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import duckdb
request = json.load(sys.stdin)
con = duckdb.connect(config={
    "extension_directory": sys.argv[1] + "/duckdb_ext/extensions",
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
})
for extension in ("httpfs", "avro", "iceberg"):
    con.execute("LOAD " + extension)
con.execute("SET TimeZone = 'UTC'")
for statement in request["setup"]:
    con.execute(statement)
for name, sql in request["queries"].items():
    con.execute("COPY (" + sql + ") TO '" + request["out"] + "/" + name + ".parquet' (FORMAT parquet)")
loaded = con.execute(
    "SELECT extension_name, extension_version FROM duckdb_extensions() WHERE loaded AND extension_name = 'iceberg'"
).fetchall()
print(json.dumps({"duckdb": duckdb.__version__, "iceberg": loaded[0][1]}))
"""


def install(target: Path = TARGET) -> Path:
    """DuckDB 1.4.4 and its extensions in `target` (nothing done when already there)."""
    stamp = target / "INSTALLED"
    wanted = " ".join(PACKAGES)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:  # pytest-xdist workers install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == wanted:
            return target
        pip = (sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--upgrade")
        subprocess.run([*pip, "--target", str(target), *PACKAGES], check=True)
        stamp.write_text(wanted)
    return target


def s3_secret(endpoint: str, key_id: str, secret: str, region: str) -> str:
    """DuckDB's S3 secret for an S3-compatible endpoint such as SeaweedFS (path-style URLs)."""
    scheme, host = endpoint.split("://", 1)
    return (
        f"CREATE SECRET streamhouse (TYPE s3, KEY_ID '{key_id}', SECRET '{secret}', REGION '{region}', "
        f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL {'true' if scheme == 'https' else 'false'})"
    )


def run_queries(
    tables: Mapping[str, str], queries: Mapping[str, str], setup: tuple[str, ...] = ()
) -> tuple[dict[str, pa.Table], dict[str, str]]:
    """Each query's result by DuckDB 1.4.4 over `tables` (view name → the table's current
    metadata JSON, read with `iceberg_scan`), and the versions that read them."""
    target = install()
    with tempfile.TemporaryDirectory() as out:
        views = tuple(f"CREATE VIEW {name} AS SELECT * FROM iceberg_scan('{meta}')" for name, meta in tables.items())
        request = {"setup": [*setup, *views], "queries": dict(queries), "out": out}
        done = subprocess.run(
            [sys.executable, "-S", "-c", _RUNNER, str(target)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"DuckDB {DUCKDB} failed: {done.stderr.strip()[-2000:]}")
        results = {name: pq.read_table(f"{out}/{name}.parquet") for name in queries}
    return results, json.loads(done.stdout)


# The Nexmark queries DuckDB expresses (docs: streamhouse.datagen.nexmark_queries): q0-q3 as
# they are; the windowed ones with their window table functions written out (TUMBLE as a
# bucket of the event time, HOP as the five 2 s-aligned starts whose 10 s window holds the
# event, SESSION as runs of a bidder's bids at most 10 s apart); windows as epoch ms.
_MS = "epoch_ms(date_time)"
WINDOWED = {
    "q5": f"""
        WITH hops AS (SELECT auction, ({_MS} // 2000) * 2000 - k * 2000 AS ws FROM bid, range(5) AS r(k)),
        counts AS (SELECT auction, count(*) AS num, ws FROM hops GROUP BY auction, ws),
        maxes AS (SELECT max(num) AS maxn, ws FROM counts GROUP BY ws)
        SELECT counts.auction, counts.num FROM counts JOIN maxes ON counts.ws = maxes.ws AND counts.num >= maxes.maxn
        ORDER BY counts.auction, counts.num""",
    "q7": f"""
        WITH w AS (SELECT max(price) AS maxprice, ({_MS} // 10000) * 10000 + 10000 AS wend FROM bid GROUP BY 2)
        SELECT B.auction, B.bidder, B.price, B.date_time, B.extra FROM bid B JOIN w ON B.price = w.maxprice
        WHERE epoch_ms(B.date_time) BETWEEN w.wend - 10000 AND w.wend
        ORDER BY B.auction, B.bidder, B.price, B.date_time, B.extra""",
    "q8": f"""
        WITH P AS (SELECT DISTINCT id, name, ({_MS} // 10000) * 10000 AS ws FROM person),
        A AS (SELECT DISTINCT seller, ({_MS} // 10000) * 10000 AS ws FROM auction)
        SELECT P.id, P.name, epoch_ms(P.ws) AS starttime FROM P JOIN A ON P.id = A.seller AND P.ws = A.ws
        ORDER BY P.id, P.name, starttime""",
    "q11": f"""
        WITH marked AS (
            SELECT bidder, {_MS} AS t, _partition, _offset,
                CASE WHEN {_MS} - lag({_MS}) OVER (PARTITION BY bidder ORDER BY {_MS}, _partition, _offset)
                    <= 10000 THEN 0 ELSE 1 END AS opens
            FROM bid),
        sessions AS (
            SELECT bidder, t, sum(opens) OVER (
                PARTITION BY bidder ORDER BY t, _partition, _offset ROWS UNBOUNDED PRECEDING) AS session
            FROM marked)
        SELECT bidder, count(*) AS bid_count, epoch_ms(min(t)) AS starttime, epoch_ms(max(t) + 10000) AS endtime
        FROM sessions GROUP BY bidder, session
        ORDER BY bidder, bid_count, starttime, endtime""",
}


if __name__ == "__main__":  # .ci/duckdb-iceberg: install once, before the tests
    print(install())
