//! Packing of the hex text `pg_dump` writes for `bytea`, before compression.
//!
//! `pg_dump` writes table data in `COPY`'s text format, where a `bytea` value is hex text after
//! an escaped `\x`: `\\x0a1b…`, two characters for every byte. zstd shrinks hex text of random
//! bytes back to about half, but only by entropy-coding every character, which costs more CPU
//! than the dump itself on incompressible data (random bytes, attachments, already compressed
//! documents). Packing each long run of lowercase hex after `\\x` back into its bytes halves
//! that text for a fraction of the cost, and leaves the compressor data it recognises as
//! incompressible and stores as it is. Text without such runs passes through unchanged.
//!
//! The packed stream ([`NAME`]) is a sequence of records, each a literal part and a hex part:
//!
//! ```text
//! u32 LE  literal length L
//! L bytes copied as they are
//! u32 LE  hex length N, in characters
//! ⌈N/2⌉ bytes, two characters each (the first in the high nibble); an odd N leaves the last
//!         byte's low nibble 0
//! ```
//!
//! Unpacking writes the hex part as lowercase characters, so that the stream round-trips exactly:
//! only lowercase runs are packed. A run crossing the end of the input piece given to
//! [`Packer::pack`] continues in the next piece's first record.

use std::io::{self, BufRead, Read};

use memchr::memmem;

/// The name of this packing in a stored object's manifest entry (`"prefilter"`).
pub(crate) const NAME: &str = "pg-bytea-hex-1";

/// A run of fewer hex characters stays literal: its two length fields would cost about what
/// packing it saves. 32 packs a 16-byte value, such as an MD5 digest.
const MIN_RUN: usize = 32;

/// What precedes a `bytea` value's hex text in `COPY`'s text format: a backslash, escaped, and `x`.
const PREFIX: &[u8] = b"\\\\x";

/// Packs pieces of a stream one after the other, each into a complete sequence of records.
#[derive(Debug)]
pub(crate) struct Packer {
    finder: memmem::Finder<'static>,
    /// Whether the last piece ended inside a hex run (or right after its prefix).
    in_run: bool,
}

impl Default for Packer {
    fn default() -> Self {
        Self {
            finder: memmem::Finder::new(PREFIX),
            in_run: false,
        }
    }
}

impl Packer {
    /// Replaces `out` with the records of `piece`.
    pub(crate) fn pack(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(piece.len() + 8);
        let mut literal_start = 0;
        let mut search_from = 0;
        let mut continuing = std::mem::take(&mut self.in_run);
        loop {
            let run_start = if continuing {
                continuing = false;
                search_from
            } else {
                match self.finder.find(&piece[search_from..]) {
                    Some(at) => search_from + at + PREFIX.len(),
                    None => break,
                }
            };
            let rest = &piece[run_start..];
            // A short run that ends inside the piece stays literal; it is found before anything
            // is written, so the literal text is copied once, however many short runs it holds.
            let leading = rest
                .iter()
                .take(MIN_RUN)
                .take_while(|byte| NIBBLE[usize::from(**byte)] != 0xFF)
                .count();
            if leading < MIN_RUN && leading < rest.len() {
                search_from = run_start + leading;
                continue;
            }
            push_len(out, run_start - literal_start);
            out.extend_from_slice(&piece[literal_start..run_start]);
            let hex_len_at = out.len();
            push_len(out, 0);
            let run = pack_hex(rest, out);
            set_len(out, hex_len_at, run);
            let run_end = run_start + run;
            if run_end == piece.len() {
                // The run (maybe still empty) can go on in the next piece.
                self.in_run = true;
                return;
            }
            literal_start = run_end;
            search_from = run_end;
        }
        push_len(out, piece.len() - literal_start);
        out.extend_from_slice(&piece[literal_start..]);
        push_len(out, 0);
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // A piece is at most a pipeline chunk (1 MiB), far below u32::MAX.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn set_len(out: &mut [u8], at: usize, len: usize) {
    out[at..at + 4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// The value of each lowercase hex character; 0xFF for every other byte.
const NIBBLE: [u8; 256] = {
    let mut table = [0xFF_u8; 256];
    let mut i = 0_u8;
    while i < 16 {
        let character = if i < 10 { b'0' + i } else { b'a' + i - 10 };
        table[character as usize] = i;
        i += 1;
    }
    table
};

/// The two lowercase hex characters of each byte.
const HEX: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0_u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

/// The 16 bytes that 32 lowercase hex characters stand for, or `None` if any of them is another
/// byte. Written per character without early exits, so that the compiler turns both loops into
/// vector instructions (about 10 GB/s of hex text on one core, against 3 GB/s for eight
/// characters at a time in integer arithmetic).
fn pack32(block: &[u8; 32]) -> Option<[u8; 16]> {
    let mut nibbles = [0_u8; 32];
    let mut other = false;
    for (nibble, &byte) in nibbles.iter_mut().zip(block) {
        let digit = byte.wrapping_sub(b'0');
        let letter = byte.wrapping_sub(b'a');
        other |= digit >= 10 && letter >= 6;
        *nibble = if digit < 10 {
            digit
        } else {
            letter.wrapping_add(10)
        };
    }
    if other {
        return None;
    }
    let mut packed = [0_u8; 16];
    for (byte, pair) in packed.iter_mut().zip(nibbles.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Some(packed)
}

/// Packs the lowercase hex characters `text` begins with onto `out`; returns how many there are.
fn pack_hex(text: &[u8], out: &mut Vec<u8>) -> usize {
    let mut done = 0;
    // 32 characters a time while all are hex, then pairs.
    for block in text.chunks_exact(32) {
        let Some(packed) = block.try_into().ok().and_then(pack32) else {
            break;
        };
        out.extend_from_slice(&packed);
        done += 32;
    }
    let mut pairs = text[done..].chunks_exact(2);
    for pair in &mut pairs {
        let (high, low) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        if high == 0xFF {
            return done;
        }
        if low == 0xFF {
            out.push(high << 4);
            return done + 1;
        }
        out.push((high << 4) | low);
        done += 2;
    }
    if let Some(&last) = text.get(done) {
        let high = NIBBLE[usize::from(last)];
        if high != 0xFF {
            out.push(high << 4);
            done += 1;
        }
    }
    done
}

/// Where [`Unpacker`] is in the record stream.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Before a record's literal length (or at the end of the stream).
    Record,
    /// This many literal bytes to copy, then the hex length.
    Literal(usize),
    /// This many hex characters to write.
    Hex(usize),
    /// A byte's low character, left over for a read of one byte; then `Hex(rest)`.
    Low(u8, usize),
}

/// Reads a packed stream and yields the original bytes.
#[derive(Debug)]
pub(crate) struct Unpacker<R> {
    inner: R,
    state: State,
    /// The first error, returned by every read after it: a stream that failed never ends
    /// cleanly (the bytes before the error are handed out first).
    failed: Option<(io::ErrorKind, String)>,
}

impl<R: BufRead> Unpacker<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::Record,
            failed: None,
        }
    }

    /// A length field; `None` at a clean end of the stream where `at_end_ok`.
    fn read_len(&mut self, at_end_ok: bool) -> io::Result<Option<usize>> {
        let mut field = [0_u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.inner.read(&mut field[got..])?;
            if n == 0 {
                if got == 0 && at_end_ok {
                    return Ok(None);
                }
                return Err(truncated());
            }
            got += n;
        }
        Ok(Some(u32::from_le_bytes(field) as usize))
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the {NAME} stream ends inside a record"),
    )
}

impl<R: BufRead> Read for Unpacker<R> {
    /// Fills `buf` across records (a table of short values has a record every few dozen bytes,
    /// and a consumer that wrote out each record on its own made a system call of each).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() && self.failed.is_none() {
            match self.read_some(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) => self.failed = Some((err.kind(), err.to_string())),
            }
        }
        match &self.failed {
            Some((kind, message)) if filled == 0 => Err(io::Error::new(*kind, message.clone())),
            _ => Ok(filled),
        }
    }
}

impl<R: BufRead> Unpacker<R> {
    /// Up to the end of the current literal or hex part.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Record => match self.read_len(true)? {
                    None => return Ok(0),
                    Some(len) => self.state = State::Literal(len),
                },
                State::Literal(0) => {
                    let len = self.read_len(false)?.unwrap_or_default();
                    self.state = State::Hex(len);
                }
                State::Literal(left) => {
                    let available = self.inner.fill_buf()?;
                    if available.is_empty() {
                        return Err(truncated());
                    }
                    let n = available.len().min(buf.len()).min(left);
                    buf[..n].copy_from_slice(&available[..n]);
                    self.inner.consume(n);
                    self.state = State::Literal(left - n);
                    return Ok(n);
                }
                State::Hex(0) => self.state = State::Record,
                State::Low(low, left) => {
                    buf[0] = low;
                    self.state = State::Hex(left);
                    return Ok(1);
                }
                State::Hex(left) => {
                    let available = self.inner.fill_buf()?;
                    if available.is_empty() {
                        return Err(truncated());
                    }
                    let pairs = available.len().min(buf.len() / 2).min(left / 2);
                    if pairs > 0 {
                        for (out, byte) in buf.chunks_exact_mut(2).zip(&available[..pairs]) {
                            out.copy_from_slice(&HEX[usize::from(*byte)]);
                        }
                        self.inner.consume(pairs);
                        self.state = State::Hex(left - 2 * pairs);
                        return Ok(2 * pairs);
                    }
                    // One character fits, or one is left: the byte's high one first.
                    let [high, low] = HEX[usize::from(available[0])];
                    self.inner.consume(1);
                    buf[0] = high;
                    self.state = if left == 1 {
                        State::Hex(0)
                    } else {
                        State::Low(low, left - 2)
                    };
                    return Ok(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::io::{BufReader, Read as _};

    use super::{MIN_RUN, Packer, Unpacker, pack_hex, pack32};
    use crate::test_data::pseudo_random;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut text, b| {
            let _ = write!(text, "{b:02x}");
            text
        })
    }

    /// `COPY` text of `rows` rows of an id and a `bytea` of `len` random bytes.
    fn copy_text(rows: usize, len: usize, seed: u64) -> Vec<u8> {
        let mut text = String::new();
        for id in 0..rows {
            let value = hex(&pseudo_random(len, seed + id as u64));
            let _ = writeln!(text, "{id}\t\\\\x{value}");
        }
        text.into_bytes()
    }

    fn pack_pieces(data: &[u8], piece: usize) -> Vec<u8> {
        let mut packer = Packer::default();
        let mut stream = Vec::new();
        let mut records = Vec::new();
        for part in data.chunks(piece.max(1)) {
            packer.pack(part, &mut records);
            stream.extend_from_slice(&records);
        }
        stream
    }

    fn unpack(packed: &[u8], capacity: usize, read_size: usize) -> std::io::Result<Vec<u8>> {
        let mut unpacker = Unpacker::new(BufReader::with_capacity(capacity, packed));
        let mut plain = Vec::new();
        let mut buf = vec![0_u8; read_size];
        loop {
            let n = unpacker.read(&mut buf)?;
            if n == 0 {
                return Ok(plain);
            }
            plain.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn pack32_takes_exactly_thirty_two_lowercase_hex_characters() {
        let text = b"0123456789abcdef9a9aff00e1d2c3b4";
        let expected: Vec<u8> = text
            .chunks_exact(2)
            .map(|pair| {
                u8::from_str_radix(std::str::from_utf8(pair).unwrap_or_default(), 16)
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(pack32(text).map(|p| p.to_vec()), Some(expected));
        // Every byte that is not a lowercase hex character, in every position, is refused.
        for byte in 0..=255_u8 {
            if byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte) {
                continue;
            }
            for position in 0..32 {
                let mut block = *text;
                block[position] = byte;
                assert_eq!(pack32(&block), None, "{byte:#x} at {position}");
            }
        }
    }

    #[test]
    fn pack_hex_stops_at_the_first_other_byte() {
        for len in 0..80 {
            let mut text = b"0123456789abcdef".repeat(5);
            text.truncate(len);
            text.extend_from_slice(b"G\t12");
            let mut out = Vec::new();
            assert_eq!(pack_hex(&text, &mut out), len, "{len}");
            assert_eq!(out.len(), len.div_ceil(2), "{len}");
        }
    }

    #[test]
    fn copy_text_packs_to_about_half_and_round_trips_whatever_the_piece_and_read_sizes()
    -> std::io::Result<()> {
        let data = copy_text(200, 700, 1);
        let packed = pack_pieces(&data, 1024 * 1024);
        assert!(
            packed.len() < data.len() * 52 / 100,
            "{} of {}",
            packed.len(),
            data.len()
        );
        for piece in [1, 2, 3, 7, 64, 1000, 4096, 65_537, data.len()] {
            let packed = pack_pieces(&data, piece);
            for (capacity, read_size) in [(1, 1), (3, 2), (8192, 1), (8192, 3), (65_536, 65_536)] {
                let plain = unpack(&packed, capacity, read_size)?;
                assert!(plain == data, "pieces of {piece}, reads of {read_size}");
            }
        }
        Ok(())
    }

    #[test]
    fn other_bytes_pass_through_and_round_trip() -> std::io::Result<()> {
        let short_run = format!("1\t\\\\x{}\n", "ab".repeat(MIN_RUN / 2 - 1));
        let long_run = format!("2\t\\\\x{}\n", "cd".repeat(MIN_RUN));
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            pseudo_random(300_000, 9),
            b"\\\\x".to_vec(),
            b"\\\\x\\\\x\\\\x".to_vec(),
            format!("\\\\x{}", "A1".repeat(100)).into_bytes(),
            format!("\\\\x{}7", "e1".repeat(100)).into_bytes(),
            short_run.clone().into_bytes(),
            [
                short_run.as_bytes(),
                long_run.as_bytes(),
                &pseudo_random(5000, 3),
            ]
            .concat(),
        ];
        for data in cases {
            for piece in [1, 5, 100, 1 << 20] {
                let packed = pack_pieces(&data, piece);
                assert!(unpack(&packed, 4096, 4096)? == data, "{} bytes", data.len());
            }
        }
        // Text without a run, or with short runs only, costs one record's two length fields.
        let text = pseudo_random(300_000, 9);
        assert_eq!(pack_pieces(&text, 1 << 20).len(), text.len() + 8);
        let short = copy_text(10_000, MIN_RUN / 2 - 1, 4);
        assert_eq!(pack_pieces(&short, 1 << 20).len(), short.len() + 8);
        // 16-byte values (MD5 digests) are packed: 40 bytes a row here become 33.
        let digests = copy_text(10_000, 16, 4);
        let packed = pack_pieces(&digests, 1 << 20);
        assert!(
            packed.len() < digests.len() * 85 / 100,
            "{} of {}",
            packed.len(),
            digests.len()
        );
        assert!(unpack(&packed, 4096, 4096)? == digests);
        Ok(())
    }

    #[test]
    fn a_cut_stream_is_an_error_not_a_shorter_result() {
        let data = copy_text(20, 100, 5);
        let packed = pack_pieces(&data, 1 << 20);
        // Where each length field begins.
        let mut fields = Vec::new();
        let mut at = 0;
        while at < packed.len() {
            let literal = u32::from_le_bytes([0, 1, 2, 3].map(|i| packed[at + i])) as usize;
            fields.push(at);
            at += 4 + literal;
            let hex = u32::from_le_bytes([0, 1, 2, 3].map(|i| packed[at + i])) as usize;
            fields.push(at);
            at += 4 + hex.div_ceil(2);
        }
        let inside_fields = fields
            .iter()
            .flat_map(|field| [field + 1, field + 2, field + 3]);
        let inside_parts = [5, 9, packed.len() / 2, packed.len() - 1];
        for cut in inside_fields.chain(inside_parts) {
            // Large reads: the error comes after data was read in the same call.
            for read_size in [7, 1 << 16] {
                let err = unpack(&packed[..cut], 4096, read_size).err();
                assert!(
                    err.as_ref()
                        .is_some_and(|e| e.to_string().contains("ends inside a record")),
                    "cut at {cut}, reads of {read_size}: {err:?}"
                );
            }
        }
    }
}
