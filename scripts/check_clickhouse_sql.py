#!/usr/bin/env python3
"""Checks every ClickHouse DDL file and query of minipay against a CURRENT ClickHouse.

Runs through chdb (PyPI package `chdb-core`, import name `chdb`), which embeds ClickHouse
in-process, so no server is needed. Normally started by `scripts/check-clickhouse-sql`
(which also installs chdb-core when it is missing); `scripts/test` runs that after the Rust
tests. Without chdb it prints "skipped: chdb not available" to stderr and exits 0.

What is checked, for both renderings of the DDL, each on a fresh chdb session with a
`minipay` database (`CREATE DATABASE minipay; USE minipay`):

  [ttl]     `{ttl}` -> `TTL at + INTERVAL 1 YEAR`  (what `render_ddl` sends to current servers;
                                                   the clause is read from
                                                   src/history/clickhouse.rs when possible)
            `{if_not_exists}` -> `IF NOT EXISTS`
  [no ttl]  `{ttl}` -> ``                          (the form for old servers, < 19.6)
            `{if_not_exists}` -> ``
  and in both `{cluster}` -> `minipay`, `{database}` -> `minipay` (the cluster-only DDL, whose
  `Distributed` tables need the cluster: the sessions get a config declaring it).

  1. `clickhouse/*.sql` in name order, each applied twice (the Rust code relies on
     `IF NOT EXISTS`, so a second run must be harmless; in the [no ttl] form, which has no
     `ADD COLUMN IF NOT EXISTS`, a second run may fail with "already exists" as the Rust
     migration runner then takes the migration as applied).
  2. Built-in samples (SAMPLES below): an INSERT of every column of `statement_entries`,
     including a replayed entry and NULLs, then a `LIMIT 1 BY entry_id` select and a
     `FINAL` select whose exact output is compared.
  3. `clickhouse/queries/*.sql` in name order, in the same session (so later files see what
     earlier ones created or inserted; use numeric name prefixes to order them).

Query files (`clickhouse/queries/*.sql`) hold ONE query each, exactly as the Rust code passes
it to `clickhouse::Client::query`. Leading `--` lines are a header and are not sent; in it:

  -- bind: <SQL literal>     one line per `?`, in order, the value as the clickhouse crate
                             would render it: 42, 'text' (quoted, escaped), '2024-05-01 00:00:00'
  -- fields: a, b, c         what `?fields` expands to (rendered as `a`,`b`,`c`, as the crate does)
  -- expect-rows: N          optional: the query must return exactly N rows

Placeholders are substituted the way the clickhouse crate does it (src/sql/mod.rs): `??` is a
literal `?`, `?fields` is the field list, every other `?` takes the next `-- bind:` value, even
inside string literals or comments. A count mismatch is a failure.

Coverage of the Rust code: every `.query("...")` call in src/history/**/*.rs whose only
argument is a string literal (plain or raw) must have a query file with the same text
(whitespace-insensitive); otherwise it fails with "not listed in clickhouse/queries/". Calls
with a second argument (`client.query(sql, &params)` is tokio-postgres) are ignored; calls
with a non-literal argument (`&format!(..)`, `&render_ddl(..)`) are reported as `skip`.
Queries built elsewhere (constants, `client.insert::<Row>("table")`) are not detected.

Output: one `ok   <what>` or `FAIL <what>: <error>` line per statement on stdout, a summary
line, exit status 1 if anything failed.
"""

import datetime
import glob
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATABASE = "minipay"
RUST_DIR = "src/history"
DEFAULT_TTL_CLAUSE = "TTL at + INTERVAL 1 YEAR"
# What `{cluster}` becomes in the cluster-only DDL (`render_cluster_ddl`), and the cluster the
# chdb sessions are given.
CLUSTER = "minipay"
CLUSTER_CONFIG = f"""<clickhouse><remote_servers><{CLUSTER}>
<shard><replica><host>127.0.0.1</host><port>1</port></replica></shard>
<shard><replica><host>127.0.0.1</host><port>2</port></replica></shard>
</{CLUSTER}></remote_servers></clickhouse>
"""


def sample_statements():
    """Statements that exercise `statement_entries`: (label, sql, expected TSV output or None)."""
    at = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).replace(microsecond=0)
    at_text = at.strftime("%Y-%m-%d %H:%M:%S")
    at_us = int(at.timestamp()) * 1_000_000
    columns = (
        "entry_id, account_id, at, at_us, direction, amount, balance_after, kind, "
        "counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name"
    )
    transfer = f"(1, 42, '{at_text}', {at_us}, 'in', 2500, 12500, 'transfer', 7, 'Alice', 1001, 'rent', 'alice')"
    # The same entry again (an outbox replay), and an entry without counterparty or transfer.
    fee = f"(2, 42, '{at_text}', {at_us + 1}, 'out', 100, 12400, 'fee', NULL, '', NULL, '', NULL)"
    picked = "entry_id, direction, amount, counterparty_account_id, transfer_id, memo, counterparty_user_name"
    expected = "2\tout\t100\t\\N\t\\N\t\t\\N\n1\tin\t2500\t7\t1001\trent\talice\n"
    return [
        ("sample: INSERT INTO statement_entries (all columns, NULLs, a replay)",
         f"INSERT INTO statement_entries ({columns}) VALUES {transfer}, {fee}, {transfer}", None),
        ("sample: SELECT ... LIMIT 1 BY entry_id",
         f"SELECT {picked} FROM statement_entries WHERE account_id = 42 "
         f"ORDER BY at_us DESC, entry_id DESC LIMIT 1 BY entry_id", expected),
        ("sample: SELECT ... FINAL",
         f"SELECT {picked} FROM statement_entries FINAL WHERE account_id = 42 "
         f"ORDER BY at_us DESC, entry_id DESC", expected),
    ]


# --- Rust source scanning ---------------------------------------------------------------

def ttl_clause():
    """The `{ttl}` replacement for current servers, read from `render_ddl` when possible."""
    path = os.path.join(ROOT, RUST_DIR, "clickhouse.rs")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        text = ""
    m = re.search(r'if\s+ttl\s*\{\s*"([^"\\]*)"\s*\}\s*else\s*\{\s*""\s*\}', text)
    if m:
        return m.group(1)
    print(f"note: could not read the {{ttl}} clause from {RUST_DIR}/clickhouse.rs (render_ddl); "
          f"using {DEFAULT_TTL_CLAUSE!r}", file=sys.stderr)
    return DEFAULT_TTL_CLAUSE


def rust_string_literal(text, i):
    """Parses a Rust string literal starting at text[i]; returns (value, end) or None."""
    m = re.compile(r'r(#*)"').match(text, i)
    if m:
        close = '"' + m.group(1)
        end = text.find(close, m.end())
        return None if end < 0 else (text[m.end():end], end + len(close))
    if i >= len(text) or text[i] != '"':
        return None
    out, j = [], i + 1
    simple = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
    while j < len(text):
        c = text[j]
        if c == '"':
            return "".join(out), j + 1
        if c != "\\":
            out.append(c)
            j += 1
            continue
        e = text[j + 1:j + 2]
        if e in simple:
            out.append(simple[e])
            j += 2
        elif e == "\n":  # line continuation: skip the newline and the next line's indentation
            j += 2
            while j < len(text) and text[j] in " \t\r\n":
                j += 1
        elif e == "x":
            out.append(chr(int(text[j + 2:j + 4], 16)))
            j += 4
        elif e == "u":
            close = text.index("}", j)
            out.append(chr(int(text[j + 3:close], 16)))
            j = close + 1
        else:
            return None
    return None


def line_of(text, index):
    return text.count("\n", 0, index) + 1


def rust_queries():
    """Yields (place, sql or None) for every `.query(` call in the ClickHouse Rust code."""
    for path in sorted(glob.glob(os.path.join(ROOT, RUST_DIR, "**", "*.rs"), recursive=True)):
        text = open(path, encoding="utf-8").read()
        rel = os.path.relpath(path, ROOT)
        for m in re.finditer(r"\.query\(\s*", text):
            place = f"{rel}:{line_of(text, m.start())}"
            parsed = rust_string_literal(text, m.end())
            if parsed is None:
                yield place, None
                continue
            value, end = parsed
            rest = text[end:].lstrip()
            if re.match(r",?\s*\)", rest):  # the only argument (a trailing comma is allowed)
                yield place, value
            # `.query("...", &params)` is tokio-postgres, not ClickHouse.


def normalize(sql):
    return " ".join(sql.split())


# --- Query files --------------------------------------------------------------------------

class QueryFile:
    def __init__(self, path):
        self.path = os.path.relpath(path, ROOT)
        self.binds, self.fields, self.expect_rows, self.errors = [], None, None, []
        lines = open(path, encoding="utf-8").read().split("\n")
        n = 0
        while n < len(lines) and (lines[n].lstrip().startswith("--") or not lines[n].strip()):
            m = re.match(r"\s*--\s*(bind|fields|expect-rows)\s*:\s*(.*?)\s*$", lines[n])
            if m:
                key, value = m.groups()
                if key == "bind":
                    self.binds.append(value)
                elif key == "fields":
                    self.fields = ",".join(f"`{f.strip()}`" for f in value.split(",") if f.strip())
                else:
                    try:
                        self.expect_rows = int(value)
                    except ValueError:
                        self.errors.append(f"bad expect-rows value {value!r}")
            n += 1
        self.text = "\n".join(lines[n:]).strip()
        if not self.text:
            self.errors.append("no query after the header")

    def render(self):
        """Substitutes placeholders like clickhouse::sql::SqlBuilder; raises ValueError."""
        out, rest, binds = [], self.text, list(self.binds)
        while True:
            idx = rest.find("?")
            if idx < 0:
                out.append(rest)
                break
            out.append(rest[:idx])
            rest = rest[idx + 1:]
            if rest.startswith("?"):
                out.append("?")
                rest = rest[1:]
            elif rest.startswith("fields"):
                if self.fields is None:
                    raise ValueError("?fields used but no `-- fields:` line")
                out.append(self.fields)
                rest = rest[len("fields"):]
            else:
                if not binds:
                    raise ValueError(f"more `?` placeholders than `-- bind:` lines ({len(self.binds)})")
                out.append(binds.pop(0))
        if binds:
            raise ValueError(f"{len(binds)} `-- bind:` line(s) left over: more binds than `?` placeholders")
        return "".join(out)


# --- Running ------------------------------------------------------------------------------

class Checker:
    def __init__(self, chdb_session):
        self.Session = chdb_session
        self.failed = 0
        self.passed = 0

    def ok(self, what):
        self.passed += 1
        print(f"ok   {what}", flush=True)

    def fail(self, what, error, sql=None):
        self.failed += 1
        print(f"FAIL {what}: {' '.join(str(error).split())}", flush=True)
        if sql is not None:
            for line in sql.strip().split("\n"):
                print(f"       | {line}")

    def run(self, session, what, sql, expect=None, expect_rows=None):
        try:
            out = session.query(sql, "TabSeparated").bytes().decode("utf-8", "replace")
        except Exception as e:  # chdb raises ChdbError (a RuntimeError) with the server message
            self.fail(what, e, sql)
            return False
        if expect is not None and out != expect:
            self.fail(what, f"unexpected result {out!r}, wanted {expect!r}", sql)
            return False
        if expect_rows is not None and out.count("\n") != expect_rows:
            self.fail(what, f"{out.count(chr(10))} rows, wanted {expect_rows}", sql)
            return False
        self.ok(what)
        return True

    def check_variant(self, label, clause, if_not_exists, ddl_files, query_files):
        session = self.Session()
        try:
            for sql in (f"CREATE DATABASE IF NOT EXISTS {DATABASE}", f"USE {DATABASE}"):
                if not self.run_quiet(session, f"setup [{label}]", sql):
                    return
            for path in ddl_files:
                rel = os.path.relpath(path, ROOT)
                sql = (open(path, encoding="utf-8").read()
                       .replace("{ttl}", clause).replace("{if_not_exists}", if_not_exists)
                       .replace("{cluster}", CLUSTER).replace("{database}", DATABASE))
                if (self.run_quiet(session, f"{rel} [{label}]", sql)
                        and self.run_quiet(session, f"{rel} [{label}] (applied a second time)", sql,
                                           already_applied_ok=not if_not_exists)):
                    self.ok(f"{rel} [{label}] (applied twice)")
            for what, sql, expect in sample_statements():
                self.run(session, f"{what} [{label}]", sql, expect=expect)
            for q in query_files:
                what = f"{q.path} [{label}]"
                if q.errors:
                    self.fail(what, "; ".join(q.errors))
                    continue
                try:
                    sql = q.render()
                except ValueError as e:
                    self.fail(what, e, q.text)
                    continue
                self.run(session, what, sql, expect_rows=q.expect_rows)
        finally:
            session.close()

    def run_quiet(self, session, what, sql, already_applied_ok=False):
        """Runs without an `ok` line (a later line reports success); failures are reported.
        With `already_applied_ok`, "column ... already exists" counts as success, as it does
        for the Rust migration runner on servers without `ADD COLUMN IF NOT EXISTS`."""
        try:
            session.query(sql, "TabSeparated")
            return True
        except Exception as e:
            if already_applied_ok and "already exists" in str(e):
                return True
            self.fail(what, e, sql)
            return False

    def check_coverage(self, query_files):
        listed = {normalize(q.text): q for q in query_files if not q.errors}
        used = set()
        for place, sql in rust_queries():
            if sql is None:
                print(f"skip {place}: query text is not a string literal (not checked here)")
                continue
            key = normalize(sql)
            if key in listed:
                used.add(key)
                self.ok(f"{place} is listed as {listed[key].path}")
            else:
                self.fail(place, f"ClickHouse query not listed in clickhouse/queries/: {key!r} "
                                 f"(add a file with this text, see scripts/check_clickhouse_sql.py)")
        for key, q in listed.items():
            if key not in used:
                print(f"note: {q.path} matches no .query(\"...\") literal in {RUST_DIR}/", file=sys.stderr)


def main():
    try:
        import chdb
        from chdb import session as chdb_session
    except Exception as e:  # ImportError, or a broken native library
        print(f"check-clickhouse-sql: skipped: chdb not available ({e})", file=sys.stderr)
        return 0

    ddl_files = sorted(glob.glob(os.path.join(ROOT, "clickhouse", "*.sql")))
    query_files = [QueryFile(p) for p in sorted(glob.glob(os.path.join(ROOT, "clickhouse", "queries", "*.sql")))]
    # The cluster's DDL (`Distributed` tables, `{cluster}`) needs a cluster the engine knows:
    # one of two shards, declared in a config file (it is never connected to).
    config = os.path.join(tempfile.mkdtemp(prefix="check-clickhouse-sql-"), "cluster.xml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(CLUSTER_CONFIG)
    checker = Checker(lambda: chdb_session.Session(f":memory:?config-file={config}"))

    probe = chdb_session.Session()
    try:
        engine = probe.query("SELECT version()", "TabSeparated").bytes().decode().strip()
    finally:
        probe.close()
    print(f"checking ClickHouse SQL on ClickHouse {engine} (chdb {chdb.__version__})")

    checker.check_variant("ttl", ttl_clause(), "IF NOT EXISTS", ddl_files, query_files)
    checker.check_variant("no ttl", "", "", ddl_files, query_files)
    checker.check_coverage(query_files)

    print(f"clickhouse sql: {checker.passed} ok, {checker.failed} failed")
    return 1 if checker.failed else 0


if __name__ == "__main__":
    sys.exit(main())
