//! The on-disk spool: where usage events wait while Kafka cannot take them.
//!
//! A directory of append-only segment files named by a 20-digit sequence number
//! (`00000000000000000001.seg`). Each record is framed as `[u32 len][u32 crc32][payload]`
//! (little-endian; the CRC covers the payload). Appends go to the newest segment until it
//! passes the segment size, then a new one starts; the total size is capped and appends beyond
//! the cap are refused. Records are read back in append order; a segment is deleted only once
//! every record read from it was acknowledged. A torn tail (a crash mid-write) or a flipped bit
//! is detected by the length and CRC and skipped with a warning. A reopened spool reads every
//! segment it finds from the start and appends to a fresh segment, so it never writes behind a
//! torn tail. Appends are buffered; [`UsageSpool::sync`] flushes and fsyncs them as one batch.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record's frame header: length and CRC.
const HEADER_BYTES: u64 = 8;
/// Largest payload a record may carry; a longer length in a header means corruption.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";

/// Spool limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolLimits {
    /// A new segment starts once the current one holds this many bytes.
    pub segment_bytes: u64,
    /// Appends that would take the spool's total size past this are refused.
    pub max_bytes: u64,
}

impl Default for SpoolLimits {
    /// 16 MiB segments, 1 GiB in total.
    fn default() -> Self {
        Self {
            segment_bytes: 16 * 1024 * 1024,
            max_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Why the spool could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The append would take the spool past its size cap.
    #[error("spool is full: {used} of {max} bytes used, {needed} more needed")]
    Full {
        /// Bytes in use.
        used: u64,
        /// Bytes the record needs, frame included.
        needed: u64,
        /// The cap.
        max: u64,
    },
    /// The payload is larger than [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")]
    RecordTooLarge(usize),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a record lives: its segment and byte offset. Passed back to [`UsageSpool::ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPos {
    /// Segment sequence number.
    pub segment: u64,
    /// Byte offset of the record's frame in the segment.
    pub offset: u64,
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    /// Where it lives; acknowledge it with this.
    pub pos: RecordPos,
    /// The payload as appended.
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// File size, buffered appends included.
    bytes: u64,
    /// Records handed out by `read`.
    dispatched: u64,
    /// Records acknowledged.
    acked: u64,
    /// Every record has been handed out (or skipped as corrupt); nothing more will be appended.
    fully_read: bool,
}

#[derive(Debug)]
struct Writer {
    segment: u64,
    file: BufWriter<File>,
    len: u64,
}

#[derive(Debug)]
struct Reader {
    segment: u64,
    file: File,
    offset: u64,
}

/// The spool directory. Not thread-safe by itself: the pipeline keeps it behind a mutex.
#[derive(Debug)]
pub struct UsageSpool {
    dir: PathBuf,
    limits: SpoolLimits,
    /// Oldest first; the last one may be the writer's.
    segments: VecDeque<Segment>,
    writer: Option<Writer>,
    reader: Option<Reader>,
    /// Appends not yet fsynced.
    dirty: bool,
    total_bytes: u64,
    next_id: u64,
    /// Records (or torn tails) skipped as unreadable since the spool was opened.
    corrupt: u64,
}

impl UsageSpool {
    /// Opens (creating if needed) the spool in `dir`. Segments left by an earlier process are
    /// read back from their start; new appends go to a new segment.
    pub fn open(dir: impl Into<PathBuf>, limits: SpoolLimits) -> Result<Self, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(segment_id) else {
                continue;
            };
            let bytes = entry.metadata().map_err(io_error(&entry.path()))?.len();
            found.push((id, bytes));
        }
        found.sort_unstable();
        let mut spool = Self {
            next_id: found.last().map_or(1, |(id, _)| id + 1),
            dir,
            limits,
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            dirty: false,
            total_bytes: 0,
            corrupt: 0,
        };
        for (id, bytes) in found {
            if bytes == 0 {
                // Created but never written: nothing to replay.
                let path = spool.segment_path(id);
                std::fs::remove_file(&path).map_err(io_error(&path))?;
                continue;
            }
            spool.total_bytes += bytes;
            spool.segments.push_back(Segment {
                id,
                bytes,
                dispatched: 0,
                acked: 0,
                fully_read: false,
            });
        }
        if !spool.segments.is_empty() {
            tracing::info!(dir = %spool.dir.display(), segments = spool.segments.len(),
                bytes = spool.total_bytes, "Usage spool holds events from an earlier run.");
        }
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes on disk (and in the write buffer), frames included.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Whether no segment is left: everything appended was read and acknowledged.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether records remain that [`UsageSpool::read`] has not handed out yet.
    pub fn has_unread(&self) -> bool {
        self.segments.iter().any(|s| {
            let offset = match &self.reader {
                Some(r) if r.segment == s.id => r.offset,
                _ => 0,
            };
            !s.fully_read && offset < self.readable_len(s)
        })
    }

    /// Records and torn tails skipped as unreadable since the spool was opened.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt
    }

    /// Appends a record (buffered: call [`UsageSpool::sync`] after a batch).
    pub fn append(&mut self, payload: &[u8]) -> Result<(), SpoolError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(SpoolError::RecordTooLarge(payload.len()));
        }
        let len =
            u32::try_from(payload.len()).map_err(|_| SpoolError::RecordTooLarge(payload.len()))?;
        let needed = HEADER_BYTES + u64::from(len);
        if self.total_bytes + needed > self.limits.max_bytes {
            return Err(SpoolError::Full {
                used: self.total_bytes,
                needed,
                max: self.limits.max_bytes,
            });
        }
        let roll = self
            .writer
            .as_ref()
            .is_none_or(|w| w.len > 0 && w.len + needed > self.limits.segment_bytes);
        if roll {
            self.start_segment()?;
        }
        let path = self.writer_path();
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        writer
            .file
            .write_all(&header)
            .and_then(|()| writer.file.write_all(payload))
            .map_err(io_error(&path))?;
        writer.len += needed;
        let id = writer.segment;
        if let Some(segment) = self.segments.iter_mut().rev().find(|s| s.id == id) {
            segment.bytes += needed;
        }
        self.total_bytes += needed;
        self.dirty = true;
        Ok(())
    }

    /// Flushes buffered appends and fsyncs them: the end of a batch.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if !self.dirty {
            return Ok(());
        }
        let path = self.writer_path();
        if let Some(writer) = self.writer.as_mut() {
            writer.file.flush().map_err(io_error(&path))?;
            writer.file.get_ref().sync_data().map_err(io_error(&path))?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Reads up to `max` records in append order, starting after the last one handed out.
    pub fn read(&mut self, max: usize) -> Result<Vec<SpooledRecord>, SpoolError> {
        let mut records = Vec::new();
        // The reader opens files directly: buffered appends must reach the file first.
        if let Some(writer) = self.writer.as_mut() {
            let path = self.dir.join(segment_name(writer.segment));
            writer.file.flush().map_err(io_error(&path))?;
        }
        while records.len() < max {
            let Some(index) = self.segments.iter().position(|s| !s.fully_read) else {
                break;
            };
            let (id, limit, active) = {
                let segment = &self.segments[index];
                (
                    segment.id,
                    self.readable_len(segment),
                    self.writer
                        .as_ref()
                        .is_some_and(|w| w.segment == segment.id),
                )
            };
            if self.reader.as_ref().is_none_or(|r| r.segment != id) {
                let path = self.segment_path(id);
                let file = File::open(&path).map_err(io_error(&path))?;
                self.reader = Some(Reader {
                    segment: id,
                    file,
                    offset: 0,
                });
            }
            let before = records.len();
            let finished = self.read_segment(limit, active, max, &mut records)?;
            let got = u64::try_from(records.len() - before).unwrap_or(u64::MAX);
            let segment = &mut self.segments[index];
            segment.dispatched += got;
            if finished {
                segment.fully_read = true;
                self.reader = None;
                self.collect_garbage()?;
            } else if active {
                // Caught up with the writer: nothing more to read for now.
                break;
            }
        }
        Ok(records)
    }

    /// Reads records from the current reader up to `limit`. True when the segment is
    /// exhausted for good (a closed segment read to its end, or its tail is unreadable).
    fn read_segment(
        &mut self,
        limit: u64,
        active: bool,
        max: usize,
        records: &mut Vec<SpooledRecord>,
    ) -> Result<bool, SpoolError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(true);
        };
        let path = self.dir.join(segment_name(reader.segment));
        reader
            .file
            .seek(SeekFrom::Start(reader.offset))
            .map_err(io_error(&path))?;
        let mut file = io::BufReader::new(&reader.file);
        loop {
            let remaining = limit.saturating_sub(reader.offset);
            if remaining == 0 {
                return Ok(!active);
            }
            if records.len() >= max {
                return Ok(false);
            }
            let torn = |corrupt: &mut u64, what: &str| {
                tracing::warn!(segment = %path.display(), offset = reader.offset, what,
                    "Usage spool segment has an unreadable tail; skipping it.");
                *corrupt += 1;
                Ok(true)
            };
            if remaining < HEADER_BYTES {
                return torn(&mut self.corrupt, "partial frame header");
            }
            let mut header = [0u8; 8];
            file.read_exact(&mut header).map_err(io_error(&path))?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let Ok(len_usize) = usize::try_from(len) else {
                return torn(&mut self.corrupt, "record length out of range");
            };
            if len_usize > MAX_RECORD_BYTES || HEADER_BYTES + u64::from(len) > remaining {
                return torn(&mut self.corrupt, "record length beyond the segment's end");
            }
            let mut payload = vec![0u8; len_usize];
            file.read_exact(&mut payload).map_err(io_error(&path))?;
            let pos = RecordPos {
                segment: reader.segment,
                offset: reader.offset,
            };
            reader.offset += HEADER_BYTES + u64::from(len);
            if crc32fast::hash(&payload) == crc {
                records.push(SpooledRecord { pos, payload });
            } else {
                // The length was plausible, so the frames after it are probably intact.
                tracing::warn!(segment = %path.display(), offset = pos.offset,
                    "Usage spool record failed its checksum; skipping it.");
                self.corrupt += 1;
            }
        }
    }

    /// Acknowledges a record handed out by [`UsageSpool::read`]: it reached Kafka. A segment is
    /// deleted once it is fully read and every record read from it is acknowledged.
    pub fn ack(&mut self, pos: RecordPos) -> Result<(), SpoolError> {
        if let Some(segment) = self.segments.iter_mut().find(|s| s.id == pos.segment) {
            segment.acked += 1;
        }
        self.collect_garbage()
    }

    /// Deletes segments with nothing left to deliver. The writer's segment qualifies once
    /// every byte in it was read and acknowledged; the next append then starts a new one.
    fn collect_garbage(&mut self) -> Result<(), SpoolError> {
        let mut index = 0;
        while index < self.segments.len() {
            let segment = &self.segments[index];
            let is_writer = self
                .writer
                .as_ref()
                .is_some_and(|w| w.segment == segment.id);
            let caught_up = self
                .reader
                .as_ref()
                .is_some_and(|r| r.segment == segment.id && r.offset >= segment.bytes);
            let done = segment.acked >= segment.dispatched
                && (segment.fully_read || (is_writer && caught_up));
            if !done {
                index += 1;
                continue;
            }
            let id = segment.id;
            let bytes = segment.bytes;
            if is_writer {
                self.writer = None;
                self.dirty = false;
            }
            if self.reader.as_ref().is_some_and(|r| r.segment == id) {
                self.reader = None;
            }
            let path = self.segment_path(id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
            self.segments.remove(index);
            self.total_bytes = self.total_bytes.saturating_sub(bytes);
        }
        Ok(())
    }

    /// How far the reader may go in `segment`: what was written (and flushed) so far.
    fn readable_len(&self, segment: &Segment) -> u64 {
        match &self.writer {
            Some(w) if w.segment == segment.id => w.len,
            _ => segment.bytes,
        }
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        // Whatever is buffered for the old segment becomes durable before we move on.
        self.sync()?;
        if let Some(old) = self.writer.take()
            && let Some(segment) = self.segments.iter_mut().find(|s| s.id == old.segment)
        {
            segment.bytes = old.len;
        }
        let id = self.next_id;
        let path = self.segment_path(id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        // The new file's directory entry must survive a crash too.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&self.dir))?;
        self.next_id += 1;
        self.segments.push_back(Segment {
            id,
            bytes: 0,
            dispatched: 0,
            acked: 0,
            fully_read: false,
        });
        self.writer = Some(Writer {
            segment: id,
            file: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
        });
        Ok(())
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(segment_name(id))
    }

    fn writer_path(&self) -> PathBuf {
        self.writer
            .as_ref()
            .map_or_else(|| self.dir.clone(), |w| self.segment_path(w.segment))
    }
}

impl Drop for UsageSpool {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "Usage spool could not be synced on close.");
        }
    }
}

fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

fn segment_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests;
