//! Spool behaviour on a real directory: framing, order, corruption, limits, restarts, deletion.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::*;

/// A directory removed when the test ends.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tollgate-spool-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn limits(segment_bytes: u64, max_bytes: u64) -> SpoolLimits {
    SpoolLimits {
        segment_bytes,
        max_bytes,
    }
}

fn record(i: usize) -> Vec<u8> {
    format!("event-{i:05}").into_bytes()
}

fn payloads(records: &[SpooledRecord]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.payload.clone()).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn records_round_trip() {
    let dir = TempDir::new("round-trip");
    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    let written: Vec<Vec<u8>> = (0..100).map(record).collect();
    for payload in &written {
        spool.append(payload).unwrap();
    }
    spool.sync().unwrap();
    assert!(spool.has_unread());
    let read = spool.read(1000).unwrap();
    assert_eq!(payloads(&read), written);
    assert!(!spool.has_unread());
    assert!(spool.read(10).unwrap().is_empty());
}

#[test]
fn order_is_kept_across_segments() {
    let dir = TempDir::new("order");
    // 19-byte frames: three fit in a 64-byte segment.
    let mut spool = UsageSpool::open(dir.path(), limits(64, 1 << 20)).unwrap();
    let written: Vec<Vec<u8>> = (0..20).map(record).collect();
    for payload in &written {
        spool.append(payload).unwrap();
    }
    spool.sync().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 7);
    let mut read = Vec::new();
    loop {
        let batch = spool.read(4).unwrap();
        if batch.is_empty() {
            break;
        }
        read.extend(batch);
    }
    assert_eq!(payloads(&read), written);
}

#[test]
fn reading_follows_appends_to_the_open_segment() {
    let dir = TempDir::new("follow");
    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    spool.append(&record(0)).unwrap();
    assert_eq!(payloads(&spool.read(10).unwrap()), vec![record(0)]);
    spool.append(&record(1)).unwrap();
    spool.append(&record(2)).unwrap();
    assert_eq!(
        payloads(&spool.read(10).unwrap()),
        vec![record(1), record(2)]
    );
}

#[test]
fn a_torn_tail_is_skipped_without_losing_earlier_records() {
    let dir = TempDir::new("torn");
    {
        let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
        for i in 0..5 {
            spool.append(&record(i)).unwrap();
        }
        spool.sync().unwrap();
    }
    // A crash mid-write: a header promising 100 bytes, and only 3 of them.
    let file = &segment_files(dir.path())[0];
    let mut f = OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&0u32.to_le_bytes()).unwrap();
    f.write_all(b"abc").unwrap();
    drop(f);

    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    spool.append(&record(5)).unwrap();
    let read = spool.read(100).unwrap();
    assert_eq!(payloads(&read), (0..6).map(record).collect::<Vec<_>>());
    assert_eq!(spool.corrupt_records(), 1);
}

#[test]
fn a_partial_header_at_the_tail_is_skipped() {
    let dir = TempDir::new("partial-header");
    {
        let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
        spool.append(&record(0)).unwrap();
    }
    let file = &segment_files(dir.path())[0];
    let mut f = OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(&[7, 0, 0]).unwrap();
    drop(f);
    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    assert_eq!(payloads(&spool.read(10).unwrap()), vec![record(0)]);
    assert_eq!(spool.corrupt_records(), 1);
}

#[test]
fn a_flipped_bit_loses_only_its_record() {
    let dir = TempDir::new("bitflip");
    {
        let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
        for i in 0..3 {
            spool.append(&record(i)).unwrap();
        }
    }
    // Flip a bit inside the second record's payload (frames are 8 + 11 bytes).
    let file = &segment_files(dir.path())[0];
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let at = 19 + 8 + 4;
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x10;
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&bytes).unwrap();
    drop(f);

    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    let read = spool.read(10).unwrap();
    assert_eq!(payloads(&read), vec![record(0), record(2)]);
    assert_eq!(spool.corrupt_records(), 1);
}

#[test]
fn a_corrupt_length_skips_the_rest_of_its_segment_only() {
    let dir = TempDir::new("bad-length");
    {
        let mut spool = UsageSpool::open(dir.path(), limits(40, 1 << 20)).unwrap();
        for i in 0..4 {
            spool.append(&record(i)).unwrap();
        }
    }
    // Two records per segment; break the length of the first one of the first segment.
    let file = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(file).unwrap();
    bytes[3] = 0xff;
    std::fs::write(file, &bytes).unwrap();
    let mut spool = UsageSpool::open(dir.path(), limits(40, 1 << 20)).unwrap();
    let read = spool.read(10).unwrap();
    assert_eq!(payloads(&read), vec![record(2), record(3)]);
    assert_eq!(spool.corrupt_records(), 1);
}

#[test]
fn appends_beyond_the_size_cap_are_refused() {
    let dir = TempDir::new("cap");
    // Each frame is 19 bytes: five fit in 100.
    let mut spool = UsageSpool::open(dir.path(), limits(64, 100)).unwrap();
    for i in 0..5 {
        spool.append(&record(i)).unwrap();
    }
    let refused = spool.append(&record(5));
    assert!(
        matches!(refused, Err(SpoolError::Full { used: 95, .. })),
        "{refused:?}"
    );
    assert_eq!(spool.bytes(), 95);
    // Delivering the first segment's three records frees room again.
    for r in spool.read(3).unwrap() {
        spool.ack(r.pos).unwrap();
    }
    spool.append(&record(5)).unwrap();
}

#[test]
fn oversized_records_are_refused() {
    let dir = TempDir::new("oversized");
    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    let huge = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        spool.append(&huge),
        Err(SpoolError::RecordTooLarge(_))
    ));
}

#[test]
fn a_reopened_spool_replays_everything_unacknowledged_and_appends_after_it() {
    let dir = TempDir::new("reopen");
    {
        let mut spool = UsageSpool::open(dir.path(), limits(64, 1 << 20)).unwrap();
        for i in 0..5 {
            spool.append(&record(i)).unwrap();
        }
        spool.sync().unwrap();
        // Read but never acknowledged: the next process must deliver them again.
        assert_eq!(spool.read(2).unwrap().len(), 2);
    }
    let mut spool = UsageSpool::open(dir.path(), limits(64, 1 << 20)).unwrap();
    assert!(spool.has_unread());
    assert_eq!(spool.bytes(), 95);
    spool.append(&record(5)).unwrap();
    spool.sync().unwrap();
    let mut read = Vec::new();
    loop {
        let batch = spool.read(100).unwrap();
        if batch.is_empty() {
            break;
        }
        read.extend(batch);
    }
    assert_eq!(payloads(&read), (0..6).map(record).collect::<Vec<_>>());
}

#[test]
fn a_segment_is_deleted_only_after_all_its_records_are_acknowledged() {
    let dir = TempDir::new("ack");
    let mut spool = UsageSpool::open(dir.path(), limits(40, 1 << 20)).unwrap();
    for i in 0..4 {
        spool.append(&record(i)).unwrap();
    }
    spool.sync().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);
    let read = spool.read(10).unwrap();
    assert_eq!(read.len(), 4);
    // Out of order, as deliveries to different partitions may be.
    spool.ack(read[1].pos).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        2,
        "one record still unacked"
    );
    spool.ack(read[0].pos).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    spool.ack(read[3].pos).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    spool.ack(read[2].pos).unwrap();
    assert!(segment_files(dir.path()).is_empty());
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    // Appending after the writer's segment was retired starts a new one.
    spool.append(&record(9)).unwrap();
    assert_eq!(payloads(&spool.read(10).unwrap()), vec![record(9)]);
}

#[test]
fn unacknowledged_records_keep_their_segment_across_a_restart() {
    let dir = TempDir::new("ack-restart");
    {
        let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
        spool.append(&record(0)).unwrap();
        spool.append(&record(1)).unwrap();
        let read = spool.read(10).unwrap();
        spool.ack(read[0].pos).unwrap();
    }
    assert_eq!(segment_files(dir.path()).len(), 1);
    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    // Segment granularity: the acknowledged record comes again (metering deduplicates it).
    assert_eq!(
        payloads(&spool.read(10).unwrap()),
        vec![record(0), record(1)]
    );
}

#[test]
fn foreign_files_are_ignored_and_empty_segments_removed() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("00000000000000000007.seg"), b"").unwrap();
    let mut spool = UsageSpool::open(dir.path(), SpoolLimits::default()).unwrap();
    assert!(spool.is_empty());
    assert!(!dir.path().join("00000000000000000007.seg").exists());
    spool.append(&record(0)).unwrap();
    spool.sync().unwrap();
    assert!(dir.path().join("00000000000000000008.seg").exists());
}
