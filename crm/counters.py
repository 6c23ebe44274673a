"""The board's per-column counters (table `board_counters`), kept by database triggers.

Triggers catch every write path (intake's multi-row inserts, the services, bulk imports,
deletes) in the writer's own transaction, so the counters never drift from the records. On
PostgreSQL they are statement-level with transition tables: a statement adds one row per key,
in key order, to its transaction's slot, so concurrent intake transactions do not queue on one
hot counter row. SQLite serializes writers anyway: a row trigger on one slot. The same
statements serve the migrations (0007, 0009) and `create_all`.

PostgreSQL slots are per transaction, not per backend: a transaction's first counter write
takes a free slot (a transaction-level advisory lock, tried from `pg_backend_pid() % SLOTS`
on) and keeps it to the end (`leadbot.counter_slot`, a transaction-local setting). Slots were
`pg_backend_pid() % SLOTS`: two transactions on backends of one slot that changed two keys in
two statements in opposite orders deadlocked on the counter rows (a test provokes it), and
real writers do that: an ORM flush writes rows in primary-key order, not counter-key order,
and a conversion writes its lead, then its deal, in two statements, while intake rounds and
bulk writes go in their own orders. Intake retries a batch that failed one event at a time,
but a console, bot or API edit would have failed. With a slot of its own a transaction never
waits for another's counter row. Only when every slot is held does a transaction share its
backend's slot, unlocked, as every one did before (waiting for a holder of the same key row,
and the rare deadlock that brings): SLOTS is above the connections that write at once.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

SLOTS = 16  # PostgreSQL: counter rows per key (a reader sums them)
# The first key of the slots' advisory locks (pg_advisory_xact_lock(int, int): a key space of
# its own, apart from crm.db's one-key identity locks).
_SLOT_LOCKS = 0x6C62
_SLOT_SETTING = "leadbot.counter_slot"
# A transaction's slot: the one it holds, else the first free one from its backend's on.
_SLOT_FUNCTION = f"""CREATE FUNCTION board_counters_slot() RETURNS integer LANGUAGE plpgsql AS $$
 DECLARE
  held text := current_setting('{_SLOT_SETTING}', true);
  base integer := pg_backend_pid() % {SLOTS};
  s integer;
 BEGIN
  IF held <> '' THEN RETURN held::integer; END IF;
  FOR i IN 0..{SLOTS - 1} LOOP
   s := (base + i) % {SLOTS};
   IF pg_try_advisory_xact_lock({_SLOT_LOCKS}, s) THEN
    PERFORM set_config('{_SLOT_SETTING}', s::text, true);
    RETURN s;
   END IF;
  END LOOP;
  RETURN base;
 END $$"""

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
    slot = "counter_slot"  # the trigger function's variable

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
            " DECLARE counter_slot integer := board_counters_slot();"
            f" BEGIN {sql} RETURN NULL; END $$"
        )
        out.append(
            f"CREATE TRIGGER {fn}_{op} AFTER {event} ON {table} REFERENCING {ref}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {fn}_{op}()"
        )
    return out


def trigger_ddl(dialect: str) -> list[str]:
    """The statements creating the counters' triggers on `dialect` (sqlite | postgresql)."""
    if dialect != "postgresql":
        return _sqlite("lead") + _sqlite("deal")
    return [_SLOT_FUNCTION, *_postgres("lead"), *_postgres("deal")]


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
    if dialect == "postgresql":
        out.append("DROP FUNCTION IF EXISTS board_counters_slot()")
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
