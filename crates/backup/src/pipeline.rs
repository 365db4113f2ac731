//! The streaming pipeline: source → (packing) → zstd → age → fixed-size multipart parts, and
//! back.
//!
//! Compression and encryption are synchronous and CPU-bound, so they run on blocking threads: one
//! reads the source into 1 MiB chunks, one packs them where the caller asks ([`Packing`]: the
//! `bytea` hex text of a `pg_dump` archive) and compresses them, one encrypts, hashes and cuts
//! parts, so the three overlap. Each chunk is compressed as it pays: a trial compression of its
//! start picks the configured zstd level, the fast level 1 for poorly compressible data the
//! configured level barely improves on (hex text left unpacked), or zstd raw blocks for
//! incompressible data (random or already compressed bytes, packed `bytea`). The result is a stream
//! of zstd frames that any zstd decoder reads as one (an older single-frame backup is the case of
//! one mode throughout); a packed stream is unpacked after it. Finished parts cross a channel to an
//! async task that uploads them one at a time, and a new part is begun only once every part but the
//! last one sent was uploaded, so at most two parts are in memory (one being filled, one
//! uploading), whatever the size of the backup. Downloads run the other way, hashing every stored
//! byte before it is decrypted.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufReader, Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::BackupError;
use crate::keys::{Identity, Recipient};
use crate::manifest::{Encryption, StoredObject};
use crate::storage::Storage;

/// The default multipart part size: 16 MiB. With S3's limit of 10 000 parts an object can grow
/// to 156 GiB stored (compressed), enough for dumps of several hundred GB.
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;
/// The smallest part size S3 accepts for every part but the last.
pub const MIN_REMOTE_PART_SIZE: usize = 5 * 1024 * 1024;
/// The smallest part size accepted for local storage.
pub const MIN_LOCAL_PART_SIZE: usize = 64 * 1024;
/// The default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Stored bytes withheld from the decoders until the whole object has been read and its
/// checksum compared. A zstd block is at most 128 KiB and an age chunk 64 KiB, so the consumer
/// (`pg_restore`) cannot see the end of the data before the checksum has been checked: a
/// damaged backup never completes a restore.
const HOLDBACK: usize = 1024 * 1024;
/// Read size of a packed stream's unpacking.
const UNPACK_BUFFER: usize = 128 * 1024;
/// Read size of the source pump.
#[cfg(any(feature = "postgres", feature = "redis"))]
const PUMP_BUFFER: usize = 256 * 1024;

/// How data is compressed, encrypted and uploaded.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// zstd level, 1 to 19 (default 3).
    pub zstd_level: i32,
    /// zstd worker threads; 0 compresses on the pipeline's compression thread (default).
    /// Workers speed up compressible data at high levels when cores are free, at about
    /// 2 × 8 MiB more memory each.
    pub zstd_workers: u32,
    /// age recipients; empty stores unencrypted.
    pub recipients: Vec<Recipient>,
    /// Multipart part size in bytes; every part but the last has exactly this size.
    pub part_size: usize,
    /// Counters the caller can watch (for a progress bar); `None` for none.
    pub progress: Option<Arc<Progress>>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            zstd_level: DEFAULT_ZSTD_LEVEL,
            zstd_workers: 0,
            recipients: Vec::new(),
            part_size: DEFAULT_PART_SIZE,
            progress: None,
        }
    }
}

impl PipelineOptions {
    pub(crate) fn validate(&self, storage: &Storage) -> Result<(), BackupError> {
        if !(1..=19).contains(&self.zstd_level) {
            return Err(BackupError::config(
                "zstd level",
                format!("{} is outside 1..=19", self.zstd_level),
            ));
        }
        let min = if storage.is_remote() {
            MIN_REMOTE_PART_SIZE
        } else {
            MIN_LOCAL_PART_SIZE
        };
        if self.part_size < min {
            return Err(BackupError::config(
                "part size",
                format!(
                    "{} bytes is below the minimum of {min} bytes for {}",
                    self.part_size,
                    storage.location()
                ),
            ));
        }
        Ok(())
    }
}

/// Byte and part counters of a running backup or restore, updated as data flows.
#[derive(Debug, Default)]
pub struct Progress {
    raw: AtomicU64,
    stored: AtomicU64,
    parts: AtomicU64,
}

impl Progress {
    /// Uncompressed bytes produced (backup) or decoded (restore) so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw.load(Ordering::Relaxed)
    }

    /// Stored bytes written (backup) or read (restore) so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Parts uploaded so far.
    pub fn parts(&self) -> u64 {
        self.parts.load(Ordering::Relaxed)
    }
}

fn add(progress: Option<&Arc<Progress>>, pick: fn(&Progress) -> &AtomicU64, n: usize) {
    if let Some(progress) = progress {
        pick(progress).fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What is done to the data before compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// Nothing: the stored object is plain zstd (then age).
    None,
    /// The hex text of `bytea` values in a `pg_dump` archive is packed into bytes first
    /// ([`crate::hexpack`]); the manifest entry names the packing.
    ByteaHex,
}

impl Packing {
    fn name(self) -> Option<String> {
        match self {
            Self::None => None,
            Self::ByteaHex => Some(crate::hexpack::NAME.to_owned()),
        }
    }
}

/// Uploads what `produce` writes, compressed and encrypted, as the object `path`.
///
/// `produce` runs on a blocking thread. The upload is completed only if it returns `Ok`;
/// otherwise, or if anything else fails, it is aborted and nothing appears at `path`.
pub(crate) async fn upload<T: Send + 'static>(
    storage: &Storage,
    path: &Path,
    options: &PipelineOptions,
    produce: impl FnOnce(&mut dyn Write) -> Result<T, BackupError> + Send + 'static,
) -> Result<(T, StoredObject), BackupError> {
    upload_packed(storage, path, options, Packing::None, produce).await
}

/// [`upload`], with the data packed as `packing` says before compression.
pub(crate) async fn upload_packed<T: Send + 'static>(
    storage: &Storage,
    path: &Path,
    options: &PipelineOptions,
    packing: Packing,
    produce: impl FnOnce(&mut dyn Write) -> Result<T, BackupError> + Send + 'static,
) -> Result<(T, StoredObject), BackupError> {
    options.validate(storage)?;
    let mut upload = storage
        .store()
        .put_multipart(path)
        .await
        .map_err(|err| BackupError::storage("starting upload of", path.to_string(), err))?;

    let (parts_tx, mut parts_rx) = mpsc::channel::<PutPayload>(1);
    // One token per part whose memory is free again; the first lets a second part be filled
    // while the first is uploaded, and no more than those two parts are ever held.
    let (freed_tx, freed_rx) = std::sync::mpsc::sync_channel::<()>(2);
    let _ = freed_tx.try_send(());
    let progress = options.progress.clone();
    let uploader_path = path.to_string();
    let uploader = tokio::spawn(async move {
        while let Some(part) = parts_rx.recv().await {
            let len = part.content_length();
            if let Err(err) = upload.put_part(part).await {
                let _ = upload.abort().await;
                return Err(BackupError::storage("uploading", uploader_path, err));
            }
            // The part was dropped with its payload; a full channel already lets the sink on.
            let _ = freed_tx.try_send(());
            add(progress.as_ref(), |p| &p.parts, 1);
            tracing::debug!(bytes = len, "part uploaded");
        }
        Ok(upload)
    });

    let sink = PartSink::new(
        parts_tx,
        freed_rx,
        options.part_size,
        options.progress.clone(),
    );
    let level = options.zstd_level;
    let workers = options.zstd_workers;
    let recipients = options.recipients.clone();
    let progress = options.progress.clone();
    let part_size = options.part_size;
    let encode = tokio::task::spawn_blocking(move || {
        encode_into(
            sink,
            (level, workers, packing),
            &recipients,
            progress,
            produce,
        )
    });

    let encoded = encode.await.map_err(|err| BackupError::Pipeline {
        action: "encoding",
        source: io::Error::other(err.to_string()),
    });
    // The sink (and with it the sender) is gone once `encode` returned, so the uploader ends.
    let upload_outcome = uploader.await.map_err(|err| BackupError::Pipeline {
        action: "uploading",
        source: io::Error::other(err.to_string()),
    });
    match (encoded, upload_outcome) {
        (Ok(Ok((value, raw, stored, sha256))), Ok(Ok(mut upload))) => {
            upload.complete().await.map_err(|err| {
                BackupError::storage("completing upload of", path.to_string(), err)
            })?;
            let name = path.filename().unwrap_or_default().to_owned();
            Ok((
                value,
                StoredObject {
                    name,
                    raw_bytes: raw,
                    stored_bytes: stored,
                    sha256,
                    part_size: part_size as u64,
                    packing: packing.name(),
                },
            ))
        }
        // An upload failure makes the encoder fail with a broken pipe; report the cause.
        (_, Ok(Err(upload_err)) | Err(upload_err)) => Err(upload_err),
        (Ok(Err(encode_err)) | Err(encode_err), Ok(Ok(mut upload))) => {
            let _ = upload.abort().await;
            Err(encode_err)
        }
    }
}

type Encoded<T> = (T, u64, u64, String);

/// Input bytes the compression decides on at a time.
const CHUNK: usize = 1024 * 1024;
/// The start of each chunk that is compressed on trial to decide how to compress the chunk.
const PROBE: usize = 32 * 1024;
/// The fast zstd level used where the configured one does not pay.
const FAST_LEVEL: i32 = 1;

/// The encoder runs in three stages on three threads, so that reading the source, compressing
/// and encrypting + hashing overlap: `produce` writes into chunks of [`CHUNK`] bytes, one thread
/// packs ([`Packing`]) and compresses them ([`ChunkCompressor`]), one encrypts, hashes and cuts
/// parts.
fn encode_into<T>(
    sink: PartSink,
    (level, workers, packing): (i32, u32, Packing),
    recipients: &[Recipient],
    progress: Option<Arc<Progress>>,
    produce: impl FnOnce(&mut dyn Write) -> Result<T, BackupError>,
) -> Result<Encoded<T>, BackupError> {
    let pipeline_err = |action| move |source| BackupError::Pipeline { action, source };
    let sealer = if recipients.is_empty() {
        Sealer::Plain(sink)
    } else {
        let encryptor = age::Encryptor::with_recipients(
            recipients.iter().map(|r| r.inner() as &dyn age::Recipient),
        )
        .map_err(|err| BackupError::config("age recipients", err.to_string()))?;
        Sealer::Age(
            encryptor
                .wrap_output(sink)
                .map_err(pipeline_err("encrypting"))?,
        )
    };
    let mut compressor =
        ChunkCompressor::new(level, workers).map_err(pipeline_err("compressing"))?;
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    let (frame_tx, frame_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    std::thread::scope(|scope| {
        let sealing = scope.spawn(move || -> Result<(u64, String), BackupError> {
            let mut sealer = sealer;
            for frame in frame_rx {
                sealer
                    .write_all(&frame)
                    .map_err(pipeline_err("encrypting"))?;
            }
            let sink = sealer.finish().map_err(pipeline_err("encrypting"))?;
            sink.finish().map_err(pipeline_err("uploading"))
        });
        let compressing = scope.spawn(move || -> io::Result<()> {
            let broken = || io::Error::new(io::ErrorKind::BrokenPipe, "the encryption stopped");
            let mut hex_packer =
                (packing == Packing::ByteaHex).then(crate::hexpack::Packer::default);
            let mut packed_chunk = Vec::new();
            for chunk in chunk_rx {
                let data = match hex_packer.as_mut() {
                    Some(packer) => {
                        packer.pack(&chunk, &mut packed_chunk);
                        &packed_chunk
                    }
                    None => &chunk,
                };
                for frame in compressor.compress(data)? {
                    frame_tx.send(frame).map_err(|_| broken())?;
                }
            }
            frame_tx.send(compressor.finish()?).map_err(|_| broken())
        });
        let mut chunks = ChunkWriter {
            tx: chunk_tx,
            buffer: Vec::with_capacity(CHUNK),
            count: 0,
            progress,
        };
        let produced = produce(&mut chunks);
        let raw = chunks.count;
        let flushed = chunks.finish();
        let compressed = compressing.join().map_err(|_| BackupError::Pipeline {
            action: "compressing",
            source: io::Error::other("the compression thread panicked"),
        })?;
        let sealing_outcome = sealing.join().map_err(|_| BackupError::Pipeline {
            action: "encrypting",
            source: io::Error::other("the encryption thread panicked"),
        })?;
        // The first failure downstream explains the broken pipes upstream of it.
        let (stored, sha256) = sealing_outcome?;
        compressed.map_err(pipeline_err("compressing"))?;
        let value = produced?;
        flushed.map_err(pipeline_err("compressing"))?;
        Ok((value, raw, stored, sha256))
    })
}

/// Cuts what the source writes into chunks for the compression thread.
struct ChunkWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buffer: Vec<u8>,
    count: u64,
    progress: Option<Arc<Progress>>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the compression stopped"))
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.count += n as u64;
        add(self.progress.as_ref(), |p| &p.raw, n);
        if self.buffer.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkMode {
    /// At the configured level: it pays.
    Configured,
    /// At [`FAST_LEVEL`]: poorly compressible data (less than 3:1 at the fast level) that the
    /// configured level shrinks by less than a tenth more, such as the hex text `pg_dump` writes
    /// for random `bytea`.
    Fast,
    /// Stored in zstd raw blocks: the fast level saves less than 3% (random or already
    /// compressed data).
    Raw,
}

/// Compresses chunks into a stream of zstd frames. Consecutive chunks of one mode share one
/// frame (so matches reach across them); a change of mode ends the frame. Any zstd decoder reads
/// the concatenation, and an older single-frame stream is the case of one mode throughout.
struct ChunkCompressor {
    level: i32,
    workers: u32,
    probe: zstd::bulk::Compressor<'static>,
    probe_out: Vec<u8>,
    current: Option<(ChunkMode, zstd::stream::write::Encoder<'static, Vec<u8>>)>,
    /// Whether any frame was written: an empty input still gets one.
    wrote: bool,
    /// The last choice between the configured and the fast level, with the fast probe's size
    /// per mille of its sample that led to it: a chunk whose fast probe shrinks it alike (within
    /// [`SAME_PROBE`]) is the same kind of data and gets the same choice without a second probe.
    last_choice: Option<(usize, ChunkMode)>,
}

/// Fast-probe results this close (per mille of the sample) count as the same kind of data.
const SAME_PROBE: usize = 10;

impl ChunkCompressor {
    fn new(level: i32, workers: u32) -> io::Result<Self> {
        Ok(Self {
            level,
            workers,
            probe: zstd::bulk::Compressor::new(FAST_LEVEL)?,
            probe_out: Vec::with_capacity(zstd::zstd_safe::compress_bound(PROBE)),
            current: None,
            wrote: false,
            last_choice: None,
        })
    }

    fn probe_size(&mut self, sample: &[u8], level: i32) -> io::Result<usize> {
        self.probe.set_compression_level(level)?;
        self.probe_out.clear();
        self.probe.compress_to_buffer(sample, &mut self.probe_out)
    }

    fn mode_of(&mut self, chunk: &[u8]) -> io::Result<ChunkMode> {
        let sample = &chunk[..chunk.len().min(PROBE)];
        if sample.is_empty() {
            return Ok(ChunkMode::Configured);
        }
        let fast = self.probe_size(sample, FAST_LEVEL)?;
        if fast * 100 >= sample.len() * 97 {
            return Ok(ChunkMode::Raw);
        }
        if self.level <= FAST_LEVEL || fast * 3 < sample.len() {
            return Ok(ChunkMode::Configured);
        }
        let per_mille = fast * 1000 / sample.len();
        if let Some((last, mode)) = self.last_choice
            && last.abs_diff(per_mille) <= SAME_PROBE
        {
            return Ok(mode);
        }
        let configured = self.probe_size(sample, self.level)?;
        let mode = if configured * 10 > fast * 9 {
            ChunkMode::Fast
        } else {
            ChunkMode::Configured
        };
        self.last_choice = Some((per_mille, mode));
        Ok(mode)
    }

    fn encoder(&self, level: i32) -> io::Result<zstd::stream::write::Encoder<'static, Vec<u8>>> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::with_capacity(CHUNK), level)?;
        encoder.include_checksum(true)?;
        if self.workers > 0 {
            encoder.multithread(self.workers)?;
        }
        Ok(encoder)
    }

    /// The compressed bytes `chunk` completes (possibly none yet: a frame's encoder buffers).
    fn compress(&mut self, chunk: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mode = self.mode_of(chunk)?;
        let mut out = Vec::new();
        if self.current.as_ref().is_some_and(|(m, _)| *m != mode) {
            out.push(self.finish()?);
        }
        if mode == ChunkMode::Raw {
            out.push(raw_frame(chunk));
            self.wrote = true;
            return Ok(out);
        }
        if self.current.is_none() {
            let level = if mode == ChunkMode::Fast {
                FAST_LEVEL
            } else {
                self.level
            };
            self.current = Some((mode, self.encoder(level)?));
        }
        if let Some((_, encoder)) = self.current.as_mut() {
            encoder.write_all(chunk)?;
            // Moved out by a copy, so the encoder's buffer keeps its capacity for the next chunk.
            let done = encoder.get_mut().split_off(0);
            if !done.is_empty() {
                out.push(done);
            }
        }
        Ok(out)
    }

    /// Ends the current frame; an empty input gets an empty frame.
    fn finish(&mut self) -> io::Result<Vec<u8>> {
        let current = match self.current.take() {
            Some((_, encoder)) => Some(encoder),
            None if !self.wrote => Some(self.encoder(self.level)?),
            None => None,
        };
        self.wrote = true;
        match current {
            Some(encoder) => encoder.finish(),
            None => Ok(Vec::new()),
        }
    }
}

/// `data` as one zstd frame of raw (stored) blocks: the frame header with the content size, then
/// blocks of at most 128 KiB, each a 3-byte header and the bytes as they are.
fn raw_frame(data: &[u8]) -> Vec<u8> {
    const MAX_BLOCK: usize = 128 * 1024;
    let blocks = data.len().div_ceil(MAX_BLOCK).max(1);
    let mut frame = Vec::with_capacity(data.len() + 13 + 3 * blocks);
    frame.extend_from_slice(&0xFD2F_B528_u32.to_le_bytes());
    // Frame header descriptor: an 8-byte content size, single segment (no window descriptor),
    // no checksum (the stored object's SHA-256 covers these bytes), no dictionary.
    frame.push(0b1110_0000);
    frame.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut rest = data;
    loop {
        let n = rest.len().min(MAX_BLOCK);
        let last = u32::from(n == rest.len());
        // Block header: last-block bit, type 0 (raw), size; n is at most 128 KiB.
        let header = last | (u32::try_from(n).unwrap_or_default() << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if last == 1 {
            return frame;
        }
    }
}

/// Copies `reader` into `writer` with a large buffer.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) fn pump(reader: &mut dyn Read, writer: &mut dyn Write) -> io::Result<u64> {
    pump_paced(reader, writer, false)
}

/// The pipe size asked for a child's output: room for [`PUMP_BUFFER`] reads while the child
/// goes on writing.
#[cfg(all(target_os = "linux", any(feature = "postgres", feature = "redis")))]
const PIPE_SIZE: usize = 1024 * 1024;
/// How long the reader of a widened pipe waits after a read that found less than a full buffer.
#[cfg(any(feature = "postgres", feature = "redis"))]
const PIPE_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Copies a child's standard output into `writer`.
///
/// `pg_dump`, `pg_basebackup` and `redis-cli` write their output in 4 KiB pieces. A reader that
/// waits on the pipe is woken for every piece, and on two cores those wake-ups (a context switch
/// each, in the writer and in the reader) cost more CPU time than compressing the data. So the
/// pipe is widened to [`PIPE_SIZE`] and, after a read that found less than a full buffer, the
/// reader pauses for [`PIPE_PAUSE`] and lets the pipe fill instead of waiting in `read`. A read
/// that finds less than a quarter of the pipe means the child writes less than a quarter of
/// the pipe per pause, so the child never blocks on a full pipe because of it. Where the pipe
/// cannot be widened, the reader never pauses.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) fn pump_pipe(
    pipe: &mut std::process::ChildStdout,
    writer: &mut dyn Write,
) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    let paced = rustix::pipe::fcntl_setpipe_size(&*pipe, PIPE_SIZE)
        .is_ok_and(|size| size >= 4 * PUMP_BUFFER);
    #[cfg(not(target_os = "linux"))]
    let paced = false;
    pump_paced(pipe, writer, paced)
}

#[cfg(any(feature = "postgres", feature = "redis"))]
fn pump_paced(reader: &mut dyn Read, writer: &mut dyn Write, paced: bool) -> io::Result<u64> {
    let mut buffer = vec![0_u8; PUMP_BUFFER];
    let mut total = 0_u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        writer.write_all(&buffer[..n])?;
        total += n as u64;
        if paced && n < PUMP_BUFFER {
            std::thread::sleep(PIPE_PAUSE);
        }
    }
}

enum Sealer {
    Plain(PartSink),
    Age(age::stream::StreamWriter<PartSink>),
}

impl Sealer {
    fn finish(self) -> io::Result<PartSink> {
        match self {
            Self::Plain(sink) => Ok(sink),
            Self::Age(writer) => writer.finish(),
        }
    }
}

impl Write for Sealer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(sink) => sink.write(buf),
            Self::Age(writer) => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(sink) => sink.flush(),
            Self::Age(writer) => writer.flush(),
        }
    }
}

/// The pieces a part is filled in. A part is a list of these rather than one allocation of
/// `part_size` bytes: the allocator hands pieces of this size back and reuses them, where freed
/// 16 MiB buffers stayed in the process (they raised the peak RSS by a part's size).
const SEGMENT: usize = 1024 * 1024;

/// Hashes stored bytes and cuts them into parts of exactly `part_size` bytes.
struct PartSink {
    tx: mpsc::Sender<PutPayload>,
    /// A token for each uploaded part: a new part is begun only when one arrived, so at most
    /// two parts (one filled here, one uploaded) are in memory.
    freed: std::sync::mpsc::Receiver<()>,
    /// The full segments of the part being filled.
    segments: Vec<Bytes>,
    /// The segment being filled.
    buffer: Vec<u8>,
    /// Bytes in the part being filled.
    filled: usize,
    part_size: usize,
    hasher: Sha256,
    stored: u64,
    progress: Option<Arc<Progress>>,
}

impl PartSink {
    fn new(
        tx: mpsc::Sender<PutPayload>,
        freed: std::sync::mpsc::Receiver<()>,
        part_size: usize,
        progress: Option<Arc<Progress>>,
    ) -> Self {
        Self {
            tx,
            freed,
            segments: Vec::new(),
            buffer: Vec::with_capacity(SEGMENT.min(part_size)),
            filled: 0,
            part_size,
            hasher: Sha256::new(),
            stored: 0,
            progress,
        }
    }

    /// Ends the segment being filled; the next one is no larger than the rest of the part.
    fn end_segment(&mut self) {
        let next = Vec::with_capacity(SEGMENT.min(self.part_size - self.filled));
        let segment = std::mem::replace(&mut self.buffer, next);
        if !segment.is_empty() {
            self.segments.push(Bytes::from(segment));
        }
    }

    fn send_part(&mut self) -> io::Result<()> {
        self.filled = 0;
        self.end_segment();
        let part: PutPayload = std::mem::take(&mut self.segments).into_iter().collect();
        self.tx
            .blocking_send(part)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends the full part, then waits until an earlier one is uploaded before beginning the next.
    fn next_part(&mut self) -> io::Result<()> {
        self.send_part()?;
        self.freed
            .recv()
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn finish(mut self) -> io::Result<(u64, String)> {
        if self.filled > 0 || self.stored == 0 {
            self.send_part()?;
        }
        let sha = format!("{:x}", self.hasher.finalize());
        Ok((self.stored, sha))
    }
}

impl Write for PartSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = (self.part_size - self.filled).min(self.buffer.capacity() - self.buffer.len());
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        self.hasher.update(&buf[..n]);
        self.filled += n;
        self.stored += n as u64;
        add(self.progress.as_ref(), |p| &p.stored, n);
        if self.filled == self.part_size {
            self.next_part()?;
        } else if self.buffer.len() == self.buffer.capacity() {
            self.end_segment();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a download needs to know about the object.
#[derive(Debug, Clone)]
pub(crate) struct DownloadSpec {
    pub(crate) backup: String,
    pub(crate) path: Path,
    pub(crate) object: StoredObject,
    pub(crate) recipients: Option<String>,
}

/// Streams the object down, verifying its SHA-256 and size, decrypting with `identities` when
/// the backup is encrypted, decompressing, and hands the plaintext to `consume` on a blocking
/// thread.
///
/// When anything fails, the rest of the object is still read and hashed: a damaged object is
/// reported as [`BackupError::ChecksumMismatch`] whatever stage noticed first.
pub(crate) async fn download<T: Send + 'static>(
    storage: &Storage,
    spec: DownloadSpec,
    identities: Vec<Identity>,
    progress: Option<Arc<Progress>>,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    if let (Some(recipients), true) = (&spec.recipients, identities.is_empty()) {
        return Err(BackupError::KeyRequired {
            backup: spec.backup.clone(),
            recipients: recipients.clone(),
        });
    }
    let result = storage
        .store()
        .get(&spec.path)
        .await
        .map_err(|err| BackupError::storage("downloading", spec.path.to_string(), err))?;
    let mut stream = result.into_stream();
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let fetcher = tokio::spawn(async move {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(io::Error::other);
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });

    let decode = tokio::task::spawn_blocking(move || {
        let state = Rc::new(RefCell::new(Verifier {
            rx,
            pending: VecDeque::new(),
            pending_len: 0,
            hasher: Some(Sha256::new()),
            read: 0,
            outcome: None,
            actual: None,
            spec: spec.clone(),
            progress: progress.clone(),
        }));
        let reader = VerifyingReader(Rc::clone(&state));
        let result = decode_from(reader, &spec, &identities, progress, consume);
        // Whatever happened, read and hash the rest so damage is reported as such.
        let verified = state.borrow_mut().drain_and_verify();
        match (result, verified) {
            (_, Err(checksum)) => Err(checksum),
            (Err(err), Ok(())) => Err(err),
            (Ok(value), Ok(())) => Ok(value),
        }
    });
    let outcome = decode.await.map_err(|err| BackupError::Pipeline {
        action: "decoding",
        source: io::Error::other(err.to_string()),
    });
    fetcher.abort();
    outcome?
}

fn decode_from<T>(
    reader: VerifyingReader,
    spec: &DownloadSpec,
    identities: &[Identity],
    progress: Option<Arc<Progress>>,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let decode_err = |reason: String| BackupError::Decode {
        object: spec.path.to_string(),
        reason,
    };
    let plain: Box<dyn Read> = if spec.recipients.is_some() {
        let decryptor = age::Decryptor::new_buffered(BufReader::new(reader))
            .map_err(|err| decode_err(format!("reading the age header: {err}")))?;
        match decryptor.decrypt(identities.iter().map(|i| i.inner() as &dyn age::Identity)) {
            Ok(stream) => Box::new(stream),
            Err(age::DecryptError::NoMatchingKeys) => {
                return Err(BackupError::WrongKey {
                    backup: spec.backup.clone(),
                    recipients: spec.recipients.clone().unwrap_or_default(),
                });
            }
            Err(err) => return Err(decode_err(format!("decrypting: {err}"))),
        }
    } else {
        Box::new(reader)
    };
    let zstd = zstd::stream::read::Decoder::new(plain)
        .map_err(|err| decode_err(format!("starting zstd: {err}")))?;
    let decoder: Box<dyn Read> = match spec.object.packing.as_deref() {
        None => Box::new(zstd),
        Some(crate::hexpack::NAME) => Box::new(crate::hexpack::Unpacker::new(
            BufReader::with_capacity(UNPACK_BUFFER, zstd),
        )),
        Some(other) => {
            return Err(decode_err(format!(
                "it is packed as {other:?}, which this version of groundwork-backup does not \
                 know (a newer one wrote it)"
            )));
        }
    };
    let mut counting = CountingReader {
        inner: decoder,
        progress,
    };
    consume(&mut counting)
}

struct CountingReader<R> {
    inner: R,
    progress: Option<Arc<Progress>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        add(self.progress.as_ref(), |p| &p.raw, n);
        Ok(n)
    }
}

struct VerifyingReader(Rc<RefCell<Verifier>>);

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// Hashes stored bytes as they arrive and releases them only while more than [`HOLDBACK`]
/// bytes follow, or once the whole object has arrived and matched the manifest.
struct Verifier {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    pending: VecDeque<Bytes>,
    pending_len: usize,
    /// `None` once the end was reached and the digest compared.
    hasher: Option<Sha256>,
    read: u64,
    /// The result of the comparison, once known.
    outcome: Option<Result<(), String>>,
    /// The digest of the stored bytes, once all were read.
    actual: Option<String>,
    spec: DownloadSpec,
    progress: Option<Arc<Progress>>,
}

impl Verifier {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let verified = matches!(self.outcome, Some(Ok(())));
            if let Some(front) = self.pending.front_mut() {
                let releasable = if verified {
                    front.len()
                } else {
                    (self.pending_len.saturating_sub(HOLDBACK)).min(front.len())
                };
                if releasable > 0 {
                    let n = releasable.min(buf.len());
                    buf[..n].copy_from_slice(&front[..n]);
                    let _ = front.split_to(n);
                    if front.is_empty() {
                        self.pending.pop_front();
                    }
                    self.pending_len -= n;
                    return Ok(n);
                }
            }
            match &self.outcome {
                Some(Ok(())) => return Ok(0),
                Some(Err(message)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, message.clone()));
                }
                None => {}
            }
            self.receive()?;
        }
    }

    /// Takes the next chunk from the download, or compares the digest at the end.
    fn receive(&mut self) -> io::Result<()> {
        match self.rx.blocking_recv() {
            Some(Ok(chunk)) => {
                if let Some(hasher) = self.hasher.as_mut() {
                    hasher.update(&chunk);
                }
                self.read += chunk.len() as u64;
                add(self.progress.as_ref(), |p| &p.stored, chunk.len());
                self.pending_len += chunk.len();
                self.pending.push_back(chunk);
                Ok(())
            }
            Some(Err(err)) => {
                let message = format!("downloading {}: {err}", self.spec.path);
                self.outcome = Some(Err(message.clone()));
                Err(io::Error::other(message))
            }
            None => {
                let actual = self
                    .hasher
                    .take()
                    .map(|h| format!("{:x}", h.finalize()))
                    .unwrap_or_default();
                let object = &self.spec.object;
                self.actual = Some(actual.clone());
                self.outcome = Some(
                    if actual == object.sha256 && self.read == object.stored_bytes {
                        Ok(())
                    } else {
                        Err(format!("checksum mismatch for {}", self.spec.path))
                    },
                );
                Ok(())
            }
        }
    }

    /// Reads and hashes whatever the decoders left, then reports a mismatch.
    fn drain_and_verify(&mut self) -> Result<(), BackupError> {
        while self.outcome.is_none() {
            match self.receive() {
                Ok(()) => {
                    // Drop what nobody will decode any more.
                    self.pending.clear();
                    self.pending_len = 0;
                }
                Err(_) => break,
            }
        }
        match &self.outcome {
            Some(Err(_)) if self.actual.is_some() => Err(BackupError::ChecksumMismatch {
                object: self.spec.path.to_string(),
                expected: self.spec.object.sha256.clone(),
                actual: self.actual.clone().unwrap_or_default(),
                expected_bytes: self.spec.object.stored_bytes,
                actual_bytes: self.read,
            }),
            // Verified, or a download error that the stage that failed reports.
            _ => Ok(()),
        }
    }
}

/// The manifest's description of how `options` encrypt.
pub(crate) fn encryption_of(options: &PipelineOptions) -> Option<Encryption> {
    (!options.recipients.is_empty()).then(|| Encryption {
        algorithm: "age".into(),
        recipients: options.recipients.iter().map(ToString::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use std::io::Write as _;

    use sha2::{Digest as _, Sha256};

    use super::{CHUNK, ChunkCompressor, ChunkMode, PartSink, SEGMENT, raw_frame};
    use crate::test_data::pseudo_random;

    fn hex(bytes: &[u8]) -> Vec<u8> {
        bytes
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect()
    }

    fn rows(len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len + 64);
        let mut id = 0_u64;
        while data.len() < len {
            id += 1;
            data.extend_from_slice(format!("{id}\t{}\t0\t{:>84}\n", id % 7, "").as_bytes());
        }
        data.truncate(len);
        data
    }

    fn compress_all(level: i32, chunks: &[Vec<u8>]) -> std::io::Result<(Vec<u8>, Vec<ChunkMode>)> {
        let mut compressor = ChunkCompressor::new(level, 0)?;
        let mut out = Vec::new();
        let mut modes = Vec::new();
        for chunk in chunks {
            modes.push(compressor.mode_of(chunk)?);
            for frame in compressor.compress(chunk)? {
                out.extend_from_slice(&frame);
            }
        }
        out.extend_from_slice(&compressor.finish()?);
        Ok((out, modes))
    }

    fn decode(stored: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut plain = Vec::new();
        zstd::stream::read::Decoder::new(stored)?.read_to_end(&mut plain)?;
        Ok(plain)
    }

    #[test]
    fn each_chunk_is_compressed_as_it_pays_and_the_frames_decode_as_one_stream()
    -> std::io::Result<()> {
        let random = pseudo_random(CHUNK, 1);
        let hex_text = hex(&pseudo_random(CHUNK / 2, 2));
        let compressible = rows(CHUNK);
        let chunks = vec![
            compressible.clone(),
            compressible.clone(),
            random.clone(),
            hex_text.clone(),
            // Like the one before: the choice is taken over without probing the level again.
            hex(&pseudo_random(CHUNK / 2, 3)),
            compressible,
            random[..1000].to_vec(),
        ];
        let (stored, modes) = compress_all(3, &chunks)?;
        assert_eq!(
            modes,
            vec![
                ChunkMode::Configured,
                ChunkMode::Configured,
                ChunkMode::Raw,
                ChunkMode::Fast,
                ChunkMode::Fast,
                ChunkMode::Configured,
                ChunkMode::Raw,
            ]
        );
        assert_eq!(decode(&stored)?, chunks.concat());
        // Raw chunks cost only their headers; the others still shrink.
        let (random_only, _) = compress_all(3, &[random])?;
        assert!(random_only.len() < CHUNK + 64, "{}", random_only.len());
        let (hex_only, _) = compress_all(3, &[hex_text])?;
        assert!(hex_only.len() < CHUNK * 6 / 10, "{}", hex_only.len());
        Ok(())
    }

    #[test]
    fn parts_have_exactly_the_part_size_and_hold_the_bytes_in_order() -> std::io::Result<()> {
        let part_size = 2 * SEGMENT + SEGMENT / 2 + 7;
        let data = pseudo_random(3 * part_size + 12_345, 3);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let (freed_tx, freed_rx) = std::sync::mpsc::sync_channel(2);
        let _ = freed_tx.try_send(());
        let uploader = std::thread::spawn(move || {
            let mut parts = Vec::new();
            while let Some(part) = rx.blocking_recv() {
                let part: &object_store::PutPayload = &part;
                parts.push(
                    part.iter()
                        .flat_map(|b| b.iter().copied())
                        .collect::<Vec<u8>>(),
                );
                let _ = freed_tx.try_send(());
            }
            parts
        });
        let mut sink = PartSink::new(tx, freed_rx, part_size, None);
        for piece in data.chunks(70_001) {
            sink.write_all(piece)?;
        }
        let (stored, sha256) = sink.finish()?;
        let parts = uploader
            .join()
            .map_err(|_| std::io::Error::other("the uploader panicked"))?;
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![part_size, part_size, part_size, 12_345]);
        assert!(parts.concat() == data, "the parts hold other bytes");
        assert_eq!(stored, data.len() as u64);
        assert_eq!(sha256, format!("{:x}", Sha256::digest(&data)));
        Ok(())
    }

    #[test]
    fn an_empty_input_is_one_empty_frame_and_raw_frames_decode() -> std::io::Result<()> {
        let (stored, _) = compress_all(3, &[])?;
        assert!(!stored.is_empty());
        assert_eq!(decode(&stored)?, Vec::<u8>::new());
        for len in [0, 1, 128 * 1024, 128 * 1024 + 1, 300_000] {
            let data = pseudo_random(len, 7);
            assert_eq!(decode(&raw_frame(&data))?, data, "{len} bytes");
        }
        Ok(())
    }
}
