"""The board's per-column counters (table `board_counters`), kept by database triggers.

Triggers catch every write path (intake's multi-row inserts, the services, bulk imports,
deletes) in the writer's own transaction, so the counters never drift from the records. On
PostgreSQL they are statement-level with transition tables: a multi-row INSERT adds one row
per key, in key order (a fixed lock order), to the slot of the writer's backend, so concurrent
intake transactions rarely queue on one hot counter row. SQLite serializes writers anyway: a
row trigger on one slot. The same statements serve the migration (0007) and `create_all`.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

SLOTS = 8  # PostgreSQL: counter rows per key (a reader sums them)

_COLUMNS = "kind, col, responsible_id, currency, slot, n, priced, amount"
_ON_CONFLICT = (
    "ON CONFLICT (kind, col, responsible_id, currency, slot) DO UPDATE SET"
    " n = board_counters.n + excluded.n,"
    " priced = board_counters.priced + excluded.priced,"
    " amount = board_counters.amount + excluded.amount"
)
# What a record adds to its column's counter: (col, currency, amount) per kind.
_KEYS = {
    "lead": ("{r}.status", "''", "NULL"),
    "deal": ("CAST({r}.stage_id AS TEXT)", "{r}.currency", "{r}.amount"),
}
_TABLES = {"lead": "leads", "deal": "deals"}
# The columns whose change moves a record between counters.
_WATCHED = {
    "lead": ("status", "responsible_id"),
    "deal": ("stage_id", "responsible_id", "currency", "amount"),
}


def _values(kind: str, r: str, sign: int, named: bool = False) -> str:
    """One record's delta in the order of _COLUMNS (named: as a SELECT list); {slot} open."""
    col, currency, amount = (part.format(r=r) for part in _KEYS[kind])
    values: tuple[str, ...] = (
        f"CAST('{kind}' AS TEXT)",
        col,
        f"COALESCE({r}.responsible_id, 0)",
        currency,
        "{slot}",
        str(sign),
        f"CASE WHEN {amount} IS NULL THEN 0 ELSE {sign} END",
        f"COALESCE({amount}, 0) * {sign}",
    )
    if named:
        values = tuple(f"{v} AS {c}" for v, c in zip(values, _COLUMNS.split(", "), strict=True))
    return ", ".join(values)


def _sqlite(kind: str) -> list[str]:
    table = _TABLES[kind]
    ins = f"INSERT INTO board_counters ({_COLUMNS}) VALUES ({{}}) {_ON_CONFLICT};"
    add = ins.format(_values(kind, "NEW", 1).format(slot=0))
    sub = ins.format(_values(kind, "OLD", -1).format(slot=0))
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _WATCHED[kind])
    watched = ", ".join(_WATCHED[kind])
    return [
        f"CREATE TRIGGER board_counters_{table}_ins AFTER INSERT ON {table} BEGIN {add} END",
        f"CREATE TRIGGER board_counters_{table}_del AFTER DELETE ON {table} BEGIN {sub} END",
        f"CREATE TRIGGER board_counters_{table}_upd AFTER UPDATE OF {watched} ON {table}"
        f" WHEN {changed} BEGIN {sub} {add} END",
    ]


def _postgres(kind: str) -> list[str]:
    table = _TABLES[kind]
    slot = f"pg_backend_pid() % {SLOTS}"

    def rows(source: str, sign: int) -> str:
        return f"SELECT {_values(kind, 'r', sign, True).format(slot=slot)} FROM {source} r"

    def apply(*sources: str) -> str:
        union = " UNION ALL ".join(sources)
        return (
            f"INSERT INTO board_counters ({_COLUMNS})"
            f" SELECT kind, col, responsible_id, currency, slot, sum(n), sum(priced), sum(amount)"
            f" FROM ({union}) d GROUP BY kind, col, responsible_id, currency, slot"
            " HAVING sum(n) <> 0 OR sum(priced) <> 0 OR sum(amount) <> 0"
            f" ORDER BY kind, col, responsible_id, currency, slot {_ON_CONFLICT};"
        )

    fn = f"board_counters_{table}"
    body = {
        "ins": apply(rows("new_rows", 1)),
        "del": apply(rows("old_rows", -1)),
        "upd": apply(rows("old_rows", -1), rows("new_rows", 1)),
    }
    refs = {
        "ins": ("INSERT", "NEW TABLE AS new_rows"),
        "del": ("DELETE", "OLD TABLE AS old_rows"),
        "upd": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    }
    out = []
    for op, sql in body.items():
        event, ref = refs[op]
        out.append(
            f"CREATE FUNCTION {fn}_{op}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN {sql} RETURN NULL; END $$"
        )
        out.append(
            f"CREATE TRIGGER {fn}_{op} AFTER {event} ON {table} REFERENCING {ref}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {fn}_{op}()"
        )
    return out


def trigger_ddl(dialect: str) -> list[str]:
    """The statements creating the counters' triggers on `dialect` (sqlite | postgresql)."""
    make = _postgres if dialect == "postgresql" else _sqlite
    return make("lead") + make("deal")


def drop_ddl(dialect: str) -> list[str]:
    out = []
    for table in _TABLES.values():
        for op in ("ins", "del", "upd"):
            name = f"board_counters_{table}_{op}"
            out.append(
                f"DROP TRIGGER IF EXISTS {name}"
                + (f" ON {table}" if dialect == "postgresql" else "")
            )
            if dialect == "postgresql":
                out.append(f"DROP FUNCTION IF EXISTS {name}()")
    return out


def backfill_sql() -> list[str]:
    """Counters from the records as they are (slot 0), after emptying them."""
    out = ["DELETE FROM board_counters"]
    for kind, table in _TABLES.items():
        out.append(
            f"INSERT INTO board_counters ({_COLUMNS})"
            f" SELECT kind, col, responsible_id, currency, slot, sum(n), sum(priced), sum(amount)"
            f" FROM (SELECT {_values(kind, 'r', 1, True).format(slot=0)} FROM {table} r) d"
            " GROUP BY kind, col, responsible_id, currency, slot"
        )
    return out


def create_triggers(connection: Connection) -> None:
    """Triggers and a backfill on a connection (`create_all`'s event, which also fires on a
    schema that exists: the triggers are replaced and the counters rebuilt)."""
    dialect = connection.dialect.name
    for sql in drop_ddl(dialect) + trigger_ddl(dialect) + backfill_sql():
        connection.exec_driver_sql(sql)
