//! The DDL of a versioned table: the table, its revision sequence, its history table, and the
//! triggers that stamp each change, record it and announce it.

use super::{VersionedError, is_identifier};

/// What the DDL of a new versioned table is made from: its name, its key and its other columns.
///
/// [`sql`](Self::sql) writes what `platform_config`'s and `feature_flags`' migrations write out
/// by hand, for any table, so a new versioned table is one migration holding the generated SQL
/// and a [`super::VersionedTable`] naming it (`history` is `<table>_history`). The objects it
/// creates, all named after the table:
///
/// - `<table>_revision_seq`, the sequence revisions come from (one order across the table);
/// - `<table>` with the key columns (`NOT NULL`, unique together), the given columns, and
///   `updated_at`, `updated_by` and `revision`; a table that exists already gets the last three
///   with `ADD COLUMN IF NOT EXISTS` (it needs a unique constraint on the key of its own);
/// - `<table>_history` (`id`, the key columns, `op`, `old_row`, `new_row`, `revision`,
///   `changed_by`, `changed_at`) and an index on the key and revision;
/// - `<table>_actor(explicit)`: who made a change, the row's `updated_by` when the writer set
///   it, else the transaction's `groundwork.actor` (set by [`super::begin`]), else the database
///   user;
/// - `<table>_stamp`, a `BEFORE INSERT OR UPDATE` trigger: a new revision, `updated_at`, and the
///   author in `updated_by` (a plain `UPDATE` that leaves `updated_by` alone does not keep the
///   previous writer's name);
/// - `<table>_record`, an `AFTER` trigger: one history row per change (a delete takes a revision
///   of its own) and `pg_notify` on [`channel`](Self::channel) with the key columns, `revision`
///   and `op` as a JSON object, never the value (payloads are capped near 8000 bytes).
///
/// Every statement is idempotent (`IF NOT EXISTS`, `CREATE OR REPLACE`, `DROP TRIGGER IF
/// EXISTS`), as the deployed migrations are. Names and types are written into the SQL as given:
/// pass only constants.
///
/// ```
/// use groundwork_live::versioned::VersionedDdl;
///
/// let sql = VersionedDdl {
///     table: "rate_limits",
///     key: &[("tenant", "VARCHAR(100)"), ("route", "TEXT")],
///     columns: &[("per_second", "INTEGER NOT NULL"), ("note", "TEXT")],
///     announce_moves: true,
/// }
/// .sql()?;
/// assert!(sql.contains("CREATE TABLE IF NOT EXISTS rate_limits_history ("));
/// assert!(sql.contains("pg_notify('groundwork_rate_limits'"));
/// # Ok::<(), groundwork_live::versioned::VersionedError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionedDdl<'a> {
    /// The table, e.g. `rate_limits`; a plain lower-case identifier.
    pub table: &'a str,
    /// The key columns with their SQL types, e.g. `[("env", "VARCHAR(20)"), ("key",
    /// "VARCHAR(255)")]`, in the order [`super::VersionedTable::key`] gives them. The history
    /// table copies them with the same types.
    pub key: &'a [(&'a str, &'a str)],
    /// The other columns with their SQL types and constraints, e.g. `("value", "JSONB NOT
    /// NULL")`. `updated_at`, `updated_by` and `revision` are added; do not list them.
    pub columns: &'a [(&'a str, &'a str)],
    /// Whether an `UPDATE` that changes a row's key also announces a `DELETE` of its old key, so
    /// a feed that loads the named key drops the old one. `platform_config` does; `feature_flags`
    /// was deployed without it (its admin API never renames a flag).
    pub announce_moves: bool,
}

/// Columns the layer adds to every versioned table.
const VERSION_COLUMNS: [&str; 3] = ["updated_at", "updated_by", "revision"];

impl VersionedDdl<'_> {
    /// The history table: `<table>_history`.
    pub fn history(&self) -> String {
        format!("{}_history", self.table)
    }

    /// The NOTIFY channel the triggers announce changes on: `groundwork_<table>`.
    pub fn channel(&self) -> String {
        format!("groundwork_{}", self.table)
    }

    /// The SQL that creates the table and makes it versioned (see the type's documentation).
    /// [`VersionedError::Column`] names a table or column that is not a plain lower-case
    /// identifier, a table without key columns (as `""`), or a column the layer adds itself.
    pub fn sql(&self) -> Result<String, VersionedError> {
        self.check()?;
        let table = self.table;
        let history = self.history();
        let sequence = format!("{table}_revision_seq");
        let keys: Vec<&str> = self.key.iter().map(|(name, _)| *name).collect();
        let key_list = keys.join(", ");

        let mut table_columns: Vec<String> = self
            .key
            .iter()
            .map(|(name, sql_type)| format!("{name} {sql_type} NOT NULL"))
            .collect();
        table_columns.extend(
            self.columns
                .iter()
                .map(|(name, definition)| format!("{name} {definition}")),
        );
        table_columns.extend([
            "updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()".to_owned(),
            "updated_by VARCHAR(100)".to_owned(),
            format!("revision   BIGINT NOT NULL DEFAULT nextval('{sequence}')"),
            format!("UNIQUE ({key_list})"),
        ]);
        let history_keys = self
            .key
            .iter()
            .map(|(name, sql_type)| format!("    {name} {sql_type} NOT NULL,\n"))
            .collect::<Vec<_>>()
            .concat();

        let tables = format!(
            "-- The versioned, audited table `{table}`, as groundwork_live::versioned::VersionedDdl \
             writes it.\n\n\
             CREATE SEQUENCE IF NOT EXISTS {sequence};\n\n\
             CREATE TABLE IF NOT EXISTS {table} (\n    {columns}\n);\n\n\
             -- A table created before it was versioned gets the version columns too.\n\
             ALTER TABLE {table}\n    \
             ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),\n    \
             ADD COLUMN IF NOT EXISTS updated_by VARCHAR(100),\n    \
             ADD COLUMN IF NOT EXISTS revision   BIGINT NOT NULL DEFAULT nextval('{sequence}');\n\n\
             CREATE TABLE IF NOT EXISTS {history} (\n    \
             id         BIGSERIAL PRIMARY KEY,\n\
             {history_keys}    \
             op         TEXT NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),\n    \
             old_row    JSONB,\n    \
             new_row    JSONB,\n    \
             revision   BIGINT NOT NULL,\n    \
             changed_by VARCHAR(100),\n    \
             changed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()\n);\n\n\
             CREATE INDEX IF NOT EXISTS {history}_{index}_revision\n    \
             ON {history} ({key_list}, revision DESC);\n\n",
            columns = table_columns.join(",\n    "),
            index = keys.join("_"),
        );
        let triggers = format!(
            "DROP TRIGGER IF EXISTS {table}_stamp ON {table};\n\
             CREATE TRIGGER {table}_stamp\n    \
             BEFORE INSERT OR UPDATE ON {table}\n    \
             FOR EACH ROW EXECUTE FUNCTION {table}_stamp();\n\n\
             DROP TRIGGER IF EXISTS {table}_record ON {table};\n\
             CREATE TRIGGER {table}_record\n    \
             AFTER INSERT OR UPDATE OR DELETE ON {table}\n    \
             FOR EACH ROW EXECUTE FUNCTION {table}_record();\n"
        );
        Ok([tables, self.functions(&sequence, &history), triggers].concat())
    }

    fn check(&self) -> Result<(), VersionedError> {
        if self.key.is_empty() {
            return Err(VersionedError::Column(String::new()));
        }
        let names = std::iter::once(self.table)
            .chain(self.key.iter().map(|(name, _)| *name))
            .chain(self.columns.iter().map(|(name, _)| *name));
        for name in names {
            if !is_identifier(name) {
                return Err(VersionedError::Column(name.to_owned()));
            }
        }
        let listed = self.key.iter().chain(self.columns);
        if let Some((name, _)) = listed
            .into_iter()
            .find(|(name, _)| VERSION_COLUMNS.contains(name))
        {
            return Err(VersionedError::Column((*name).to_owned()));
        }
        Ok(())
    }

    /// The actor, stamp and record functions. The actor and stamp functions follow
    /// `platform_config`'s migration line by line, so `pg_get_functiondef` shows the same text.
    fn functions(&self, sequence: &str, history: &str) -> String {
        let table = self.table;
        let channel = self.channel();
        let columns = |row: &str| {
            self.key
                .iter()
                .map(|(name, _)| format!("{row}.{name}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let payload = |row: &str, op: &str| {
            let keys = self
                .key
                .iter()
                .map(|(name, _)| format!("'{name}', {row}.{name}, "))
                .collect::<Vec<_>>()
                .concat();
            format!("json_build_object({keys}'revision', rev, 'op', {op})::text")
        };
        let key_list = self
            .key
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ");
        let moves = if self.announce_moves {
            format!(
                "        -- An UPDATE that changes the key announces the old key as deleted.\n        \
                 IF TG_OP = 'UPDATE' AND ({old}) IS DISTINCT FROM ({new}) THEN\n            \
                 PERFORM pg_notify('{channel}',\n                {payload});\n        \
                 END IF;\n",
                old = columns("OLD"),
                new = columns("NEW"),
                payload = payload("OLD", "'DELETE'"),
            )
        } else {
            String::new()
        };
        format!(
            "-- Who made a change: the row's updated_by when the writer set it, else the session's\n\
             -- `groundwork.actor` setting (the admin API sets it), else the database user.\n\
             CREATE OR REPLACE FUNCTION {table}_actor(explicit TEXT) RETURNS TEXT\n\
             LANGUAGE sql STABLE AS $$\n    \
             SELECT COALESCE(NULLIF(explicit, ''), NULLIF(current_setting('groundwork.actor', true), ''), session_user::text)\n\
             $$;\n\n\
             CREATE OR REPLACE FUNCTION {table}_stamp() RETURNS trigger\n\
             LANGUAGE plpgsql AS $$\n\
             BEGIN\n    \
             NEW.revision := nextval('{sequence}');\n    \
             NEW.updated_at := NOW();\n    \
             -- A plain UPDATE that does not mention updated_by must not keep the previous writer's name.\n    \
             IF TG_OP = 'UPDATE' AND NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN\n        \
             NEW.updated_by := NULL;\n    \
             END IF;\n    \
             NEW.updated_by := {table}_actor(NEW.updated_by);\n    \
             RETURN NEW;\n\
             END\n\
             $$;\n\n\
             CREATE OR REPLACE FUNCTION {table}_record() RETURNS trigger\n\
             LANGUAGE plpgsql AS $$\n\
             DECLARE\n    \
             rev BIGINT;\n\
             BEGIN\n    \
             IF TG_OP = 'DELETE' THEN\n        \
             rev := nextval('{sequence}');\n        \
             INSERT INTO {history} ({key_list}, op, old_row, new_row, revision, changed_by)\n        \
             VALUES ({old}, TG_OP, to_jsonb(OLD), NULL, rev, {table}_actor(NULL));\n        \
             PERFORM pg_notify('{channel}',\n            {old_payload});\n    \
             ELSE\n        \
             rev := NEW.revision;\n        \
             INSERT INTO {history} ({key_list}, op, old_row, new_row, revision, changed_by)\n        \
             VALUES ({new}, TG_OP, CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END, to_jsonb(NEW), rev, NEW.updated_by);\n\
             {moves}        \
             -- The payload names the change, never the value: NOTIFY payloads are capped near 8000\n        \
             -- bytes, and a value can be far larger.\n        \
             PERFORM pg_notify('{channel}',\n            {new_payload});\n    \
             END IF;\n    \
             RETURN NULL;\n\
             END\n\
             $$;\n\n",
            old = columns("OLD"),
            new = columns("NEW"),
            old_payload = payload("OLD", "TG_OP"),
            new_payload = payload("NEW", "TG_OP"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::VersionedDdl;
    use crate::versioned::VersionedError;

    const WIDGETS: VersionedDdl<'static> = VersionedDdl {
        table: "widgets",
        key: &[("sku", "TEXT")],
        columns: &[("payload", "JSONB NOT NULL")],
        announce_moves: false,
    };

    #[test]
    fn names_that_are_not_plain_identifiers_or_belong_to_the_layer_are_refused() {
        let refused = |ddl: VersionedDdl<'_>| match ddl.sql() {
            Err(VersionedError::Column(name)) => Some(name),
            _ => None,
        };
        assert_eq!(
            refused(VersionedDdl {
                table: "Widgets",
                ..WIDGETS
            }),
            Some("Widgets".to_owned())
        );
        assert_eq!(
            refused(VersionedDdl {
                key: &[("sku; DROP TABLE x", "TEXT")],
                ..WIDGETS
            }),
            Some("sku; DROP TABLE x".to_owned())
        );
        assert_eq!(
            refused(VersionedDdl {
                columns: &[("revision", "BIGINT")],
                ..WIDGETS
            }),
            Some("revision".to_owned())
        );
        assert_eq!(
            refused(VersionedDdl {
                key: &[],
                ..WIDGETS
            }),
            Some(String::new())
        );
        assert!(WIDGETS.sql().is_ok());
    }

    #[test]
    fn a_moved_key_is_announced_only_when_asked() -> Result<(), VersionedError> {
        let without = WIDGETS.sql()?;
        assert!(!without.contains("IS DISTINCT FROM (NEW.sku)"), "{without}");
        let with = VersionedDdl {
            announce_moves: true,
            ..WIDGETS
        }
        .sql()?;
        assert!(
            with.contains("IF TG_OP = 'UPDATE' AND (OLD.sku) IS DISTINCT FROM (NEW.sku) THEN"),
            "{with}"
        );
        assert!(
            with.contains("json_build_object('sku', OLD.sku, 'revision', rev, 'op', 'DELETE')"),
            "{with}"
        );
        Ok(())
    }
}
