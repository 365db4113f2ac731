//! What a backup reads of the `pg_dump` custom-format archive streaming past: the version of
//! the `pg_dump` that wrote it, from the archive's header, so that no `pg_dump --version` (on
//! Debian a Perl wrapper, ~50 ms) has to run before each dump.

use std::io::{self, Write};

/// The archive's first bytes kept: the header with its three strings (database name, server
/// and `pg_dump` versions) fits well within this.
const HEAD: usize = 4096;

/// Passes everything written to `inner` and keeps the first [`HEAD`] bytes.
pub(crate) struct HeadRecorder<'a> {
    inner: &'a mut dyn Write,
    head: Vec<u8>,
}

impl<'a> HeadRecorder<'a> {
    pub(crate) fn new(inner: &'a mut dyn Write) -> Self {
        Self {
            inner,
            head: Vec::with_capacity(HEAD),
        }
    }

    /// The `pg_dump` version the recorded header names, as `pg_dump --version` prints it
    /// (`pg_dump (PostgreSQL) 15.8 (Debian 15.8-1)`); `None` if the header is not one this
    /// reader knows.
    pub(crate) fn dump_version(&self) -> Option<String> {
        dump_version(&self.head).map(|version| format!("pg_dump (PostgreSQL) {version}"))
    }
}

impl Write for HeadRecorder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let keep = n.min(HEAD - self.head.len());
        self.head.extend_from_slice(&buf[..keep]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the header `pg_dump` writes (`WriteHead` in `pg_backup_archiver.c`) up to its third
/// string, `PG_VERSION` of the `pg_dump` that wrote it. Archive versions 1.10 (PostgreSQL 8.4)
/// and later carry it; from 1.15 the compression is a byte (the algorithm), before an integer.
fn dump_version(head: &[u8]) -> Option<String> {
    let rest = head.strip_prefix(b"PGDMP")?;
    let (&[major, minor, _revision, int_size, _offset_size, _format], mut rest) =
        rest.split_first_chunk::<6>()?;
    if major != 1 || minor < 10 || !(1..=8).contains(&int_size) {
        return None;
    }
    let int_size = usize::from(int_size);
    // An integer is a sign byte and `int_size` bytes, least significant first.
    let read_int = |rest: &mut &[u8]| -> Option<i64> {
        let (sign, magnitude) = rest.split_first()?;
        let magnitude = magnitude.get(..int_size)?;
        let value = magnitude
            .iter()
            .rev()
            .fold(0_i64, |value, byte| (value << 8) | i64::from(*byte));
        *rest = &rest[1 + int_size..];
        Some(if *sign == 0 { value } else { -value })
    };
    if minor >= 15 {
        rest = rest.get(1..)?;
    } else {
        read_int(&mut rest)?;
    }
    // Seconds, minutes, hours, day, month, year, daylight saving: when the dump began.
    for _ in 0..7 {
        read_int(&mut rest)?;
    }
    let mut strings = Vec::with_capacity(3);
    for _ in 0..3 {
        let len = usize::try_from(read_int(&mut rest)?).ok()?;
        let (text, tail) = rest.split_at_checked(len)?;
        strings.push(text);
        rest = tail;
    }
    let version = std::str::from_utf8(strings[2]).ok()?;
    (!version.is_empty()).then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::{HEAD, HeadRecorder, dump_version};

    /// The header of an archive written by PostgreSQL 15's `pg_dump` (format 1.14), as bytes.
    fn header_1_14(database: &str, version: &str) -> Vec<u8> {
        let int = |value: u32| {
            let mut bytes = vec![0_u8];
            bytes.extend_from_slice(&value.to_le_bytes());
            bytes
        };
        let string = |text: &str| {
            let mut bytes = int(u32::try_from(text.len()).unwrap_or_default());
            bytes.extend_from_slice(text.as_bytes());
            bytes
        };
        let mut head = b"PGDMP".to_vec();
        head.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        head.extend(int(0));
        for field in [53, 53, 19, 6, 11, 126, 0] {
            head.extend(int(field));
        }
        head.extend(string(database));
        head.extend(string(version));
        head.extend(string(version));
        head.extend_from_slice(b"\x00\x07\x00\x00\x00");
        head
    }

    #[test]
    fn the_version_is_read_from_a_header_and_nothing_else() {
        let version = "15.20 (Debian 15.20-0+deb12u1)";
        let head = header_1_14("gw_bench", version);
        assert_eq!(dump_version(&head).as_deref(), Some(version));
        // Cut anywhere before the end of the third string, or not an archive: no version.
        let end = head.len() - 5;
        for cut in 0..end {
            assert_eq!(dump_version(&head[..cut]), None, "cut at {cut}");
        }
        assert_eq!(dump_version(b"-- PostgreSQL database dump\n"), None);
        let mut old = head.clone();
        old[6] = 9;
        assert_eq!(dump_version(&old), None, "format 1.9 has no version string");
    }

    #[test]
    fn the_recorder_passes_everything_and_keeps_the_head() -> std::io::Result<()> {
        let head = header_1_14("db", "16.4");
        let body = vec![7_u8; 3 * HEAD];
        let mut out = Vec::new();
        let mut recorder = HeadRecorder::new(&mut out);
        for piece in [&head[..10], &head[10..], &body[..]] {
            recorder.write_all(piece)?;
        }
        assert_eq!(
            recorder.dump_version().as_deref(),
            Some("pg_dump (PostgreSQL) 16.4")
        );
        assert_eq!(out, [head, body].concat());
        Ok(())
    }
}
