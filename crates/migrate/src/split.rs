//! Splitting a script into statements, for scripts that cannot run as one transaction
//! (ClickHouse, `-- no-transaction` files): each statement runs and is recorded on its own.

/// Which quoting rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `E'..'` strings take backslash escapes, `$tag$..$tag$` bodies, nested `/* */`.
    Postgres,
    /// Backslash escapes in every string, backquoted identifiers.
    #[cfg_attr(not(feature = "clickhouse"), allow(dead_code))]
    ClickHouse,
}

/// One statement, without its terminating `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    /// The text, trimmed.
    pub(crate) sql: String,
    /// 1-based line where the statement starts in the file.
    pub(crate) line: usize,
}

/// Splits `sql` at top-level semicolons. Statements holding only comments and whitespace are
/// dropped.
pub(crate) fn split_statements(sql: &str, dialect: Dialect) -> Vec<Statement> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |from: usize, to: usize, out: &mut Vec<Statement>| {
        let text = &sql[from..to];
        if let Some(code) = code_start(text, dialect) {
            let line = 1 + sql[..from + code].bytes().filter(|&b| b == b'\n').count();
            out.push(Statement {
                sql: text[code..].trim_end().to_owned(),
                line,
            });
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b';' => {
                push(start, i, &mut out);
                i += 1;
                start = i;
            }
            _ => i = skip_token(sql, i, dialect),
        }
    }
    push(start, sql.len(), &mut out);
    out
}

/// Where the first thing that is not whitespace or a comment starts, if anywhere.
fn code_start(text: &str, dialect: Dialect) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let next = skip_token(text, i, dialect);
        let is_comment = bytes[i..].starts_with(b"--") || bytes[i..].starts_with(b"/*");
        if !is_comment {
            return Some(i);
        }
        i = next;
    }
    None
}

/// Returns the index after the token (string, identifier, comment, dollar body or one byte)
/// that starts at `i`.
fn skip_token(sql: &str, i: usize, dialect: Dialect) -> usize {
    let bytes = sql.as_bytes();
    let rest = &bytes[i..];
    match bytes[i] {
        b'-' if rest.starts_with(b"--") => memchr(b'\n', bytes, i).map_or(bytes.len(), |at| at + 1),
        b'/' if rest.starts_with(b"/*") => skip_block_comment(bytes, i, dialect),
        b'\'' => {
            let backslash = dialect == Dialect::ClickHouse
                || (i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !bytes[i - 2].is_ascii_alphanumeric() && bytes[i - 2] != b'_'));
            skip_quoted(bytes, i, b'\'', backslash)
        }
        b'"' => skip_quoted(bytes, i, b'"', dialect == Dialect::ClickHouse),
        b'`' if dialect == Dialect::ClickHouse => skip_quoted(bytes, i, b'`', true),
        b'$' if dialect == Dialect::Postgres => skip_dollar(sql, i),
        _ => i + 1,
    }
}

fn memchr(needle: u8, bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == needle)
        .map(|p| p + from)
}

fn skip_block_comment(bytes: &[u8], i: usize, dialect: Dialect) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < bytes.len() {
        if bytes[j..].starts_with(b"/*") {
            depth += 1;
            j += 2;
        } else if bytes[j..].starts_with(b"*/") {
            depth = depth.saturating_sub(1);
            j += 2;
            if depth == 0 || dialect == Dialect::ClickHouse {
                return j;
            }
        } else {
            j += 1;
        }
    }
    bytes.len()
}

/// Skips a quoted string or identifier; a doubled quote is an escaped quote.
fn skip_quoted(bytes: &[u8], i: usize, quote: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < bytes.len() {
        let b = bytes[j];
        if backslash && b == b'\\' {
            j += 2;
        } else if b == quote {
            if bytes.get(j + 1) == Some(&quote) {
                j += 2;
            } else {
                return j + 1;
            }
        } else {
            j += 1;
        }
    }
    bytes.len()
}

/// Skips `$tag$ ... $tag$`; a `$` that does not open such a body (`$1`) is one byte.
fn skip_dollar(sql: &str, i: usize) -> usize {
    let bytes = sql.as_bytes();
    let tag_end = bytes[i + 1..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .map(|p| p + i + 1);
    let Some(tag_end) = tag_end else {
        return i + 1;
    };
    if bytes[tag_end] != b'$' || bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return i + 1;
    }
    let tag = &sql[i..=tag_end];
    sql[tag_end + 1..]
        .find(tag)
        .map_or(sql.len(), |at| tag_end + 1 + at + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str, dialect: Dialect) -> Vec<(String, usize)> {
        split_statements(sql, dialect)
            .into_iter()
            .map(|s| (s.sql, s.line))
            .collect()
    }

    #[test]
    fn splits_at_top_level_semicolons_with_line_numbers() {
        let sql = "-- no-transaction\nCREATE TABLE a (x int);\n\nINSERT INTO a VALUES (1);\n-- trailing comment\n";
        assert_eq!(
            texts(sql, Dialect::Postgres),
            [
                ("CREATE TABLE a (x int)".to_owned(), 2),
                ("INSERT INTO a VALUES (1)".to_owned(), 4)
            ]
        );
    }

    #[test]
    fn semicolons_inside_strings_comments_and_bodies_do_not_split() {
        let sql = "SELECT 'a;b', \"c;d\" /* e; /* f; */ g; */;\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   SELECT E'it\\'s;', $1;";
        let got = texts(sql, Dialect::Postgres);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[1].0.ends_with("LANGUAGE sql"));
    }

    #[test]
    fn clickhouse_strings_take_backslash_escapes() {
        let sql = "INSERT INTO t VALUES ('it\\'s; fine');\nSELECT `a;b` FROM t";
        let got = texts(sql, Dialect::ClickHouse);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].1, 2);
    }

    #[test]
    fn comment_only_scripts_have_no_statements() {
        assert!(texts("-- nothing\n/* here */\n;\n", Dialect::ClickHouse).is_empty());
    }
}
