//! The spool writer: a thread of its own that appends events to the [`UsageSpool`] in batches,
//! one fsync per batch, so that neither the request path nor the producer loop waits on disk.
//!
//! Spool records carry the Kafka key with the value: `[u8 key length][key][value]`, a zero
//! length meaning no key (tenant ids are never empty).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tollgate_core::{TenantId, UsageEvent};

use super::metrics::{DropReason, UsageMetrics, gauge_value};
use super::spool::{SpoolError, UsageSpool};

/// Appends handled per lock and fsync.
const BATCH: usize = 4096;

/// Work for the spool writer.
#[derive(Debug)]
pub(crate) enum SpoolItem {
    /// An event from the request path that found the producer queue full. Boxed: the
    /// channel's slots are allocated (and touched) up front, so they are kept small.
    Event(Box<UsageEvent>),
    /// An encoded spool record (see the module docs) Kafka could not take.
    Record(Vec<u8>),
    /// Write what is queued, fsync and stop.
    Stop,
}

/// The Kafka key of an event: the tenant id as hyphenated lower-case text.
pub(crate) fn tenant_key(tenant: Option<TenantId>) -> Option<[u8; 36]> {
    tenant.map(|t| {
        let mut key = [0u8; 36];
        t.as_uuid().hyphenated().encode_lower(&mut key);
        key
    })
}

/// Appends the spool record of `key` and `value` to `out`.
pub(crate) fn encode_record(key: Option<&[u8]>, value: &[u8], out: &mut Vec<u8>) {
    // Keys longer than a length byte cannot be tenant ids; store them as no key.
    let key = key.filter(|k| !k.is_empty() && k.len() <= usize::from(u8::MAX));
    let key_len = key.map_or(0, <[u8]>::len);
    out.push(u8::try_from(key_len).unwrap_or(0));
    out.extend_from_slice(key.unwrap_or_default());
    out.extend_from_slice(value);
}

/// Splits a spool record into key and value; `None` if it is malformed.
pub(crate) fn decode_record(record: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (&key_len, rest) = record.split_first()?;
    let key_len = usize::from(key_len);
    if rest.len() < key_len {
        return None;
    }
    let (key, value) = rest.split_at(key_len);
    Some(((key_len > 0).then_some(key), value))
}

/// Locks the spool; a panic elsewhere does not make the data unusable.
pub(crate) fn lock(spool: &Mutex<UsageSpool>) -> MutexGuard<'_, UsageSpool> {
    spool.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the writer until it receives [`SpoolItem::Stop`] (or every sender is gone), then sets
/// `closed` and writes what is left.
pub(crate) fn spawn(
    items: Receiver<SpoolItem>,
    spool: Arc<Mutex<UsageSpool>>,
    metrics: UsageMetrics,
    closed: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("usage-spool".into())
        .spawn(move || {
            let mut writer = Writer {
                spool,
                metrics,
                record: Vec::with_capacity(1024),
            };
            let mut batch = Vec::with_capacity(BATCH);
            while let Ok(first) = items.recv() {
                batch.push(first);
                while batch.len() < BATCH {
                    match items.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                if writer.write(&mut batch) {
                    // Senders check `closed` first; whatever slipped in before is still written.
                    closed.store(true, Ordering::SeqCst);
                    batch.extend(items.try_iter());
                    writer.write(&mut batch);
                    return;
                }
            }
        })
}

struct Writer {
    spool: Arc<Mutex<UsageSpool>>,
    metrics: UsageMetrics,
    record: Vec<u8>,
}

impl Writer {
    /// Appends the batch and fsyncs once; true if it contained [`SpoolItem::Stop`].
    fn write(&mut self, batch: &mut Vec<SpoolItem>) -> bool {
        let mut stop = false;
        let (mut spooled, mut full, mut failed) = (0u64, 0u64, 0u64);
        let mut spool = lock(&self.spool);
        for item in batch.drain(..) {
            self.record.clear();
            let record = match item {
                SpoolItem::Event(event) => {
                    let key = tenant_key(event.tenant_id);
                    let mut value = Vec::with_capacity(512);
                    event.encode_into(&mut value);
                    encode_record(
                        key.as_ref().map(<[u8; 36]>::as_slice),
                        &value,
                        &mut self.record,
                    );
                    &self.record
                }
                SpoolItem::Record(ref record) => record,
                SpoolItem::Stop => {
                    stop = true;
                    continue;
                }
            };
            match spool.append(record) {
                Ok(()) => spooled += 1,
                Err(SpoolError::Full { .. }) => full += 1,
                Err(e) => {
                    if failed == 0 {
                        tracing::error!(error = %e, "Usage event could not be spooled; dropped.");
                    }
                    failed += 1;
                }
            }
        }
        if let Err(e) = spool.sync() {
            tracing::error!(error = %e, "Usage spool fsync failed; recent events may not survive a crash.");
        }
        self.metrics.spool_bytes.set(gauge_value(spool.bytes()));
        drop(spool);
        self.metrics.spooled.inc_by(spooled);
        if full > 0 {
            tracing::warn!(dropped = full, "Usage spool is full; events dropped.");
            self.metrics.drop_events(DropReason::SpoolFull, full);
        }
        if failed > 0 {
            self.metrics.drop_events(DropReason::SpoolError, failed);
        }
        stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_the_key_with_the_value() {
        let mut out = Vec::new();
        encode_record(Some(b"tenant"), b"{}", &mut out);
        assert_eq!(
            decode_record(&out),
            Some((Some(&b"tenant"[..]), &b"{}"[..]))
        );
        out.clear();
        encode_record(None, b"{}", &mut out);
        assert_eq!(decode_record(&out), Some((None, &b"{}"[..])));
        assert_eq!(decode_record(&[5, b'a']), None);
        assert_eq!(decode_record(&[]), None);
    }

    #[test]
    fn the_key_is_the_tenant_id_as_text() {
        let tenant = TenantId::new();
        let key = tenant_key(Some(tenant)).unwrap();
        assert_eq!(std::str::from_utf8(&key).unwrap(), tenant.to_string());
        assert!(tenant_key(None).is_none());
    }
}
