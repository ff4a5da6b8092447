//! `--pcap FILE`: a bounded capture of what the ports receive and send.
//!
//! Cores copy frames into a bounded channel (a copy and a small allocation
//! per frame, only while capturing); one writer thread writes them in pcap
//! format (Ethernet link type) with the `pcap-file` crate. When the channel
//! is full or the packet limit is reached, frames are counted as not
//! captured instead of slowing the cores down.

use std::fs::File;
use std::io::BufWriter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapPacket, PcapWriter};

use crate::error::{Error, Result};

/// Bytes kept of each frame.
const SNAPLEN: usize = 2048;

type Rec = (Duration, u32, Vec<u8>);

/// What a capture wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CaptureSummary {
    /// Frames written to the file.
    pub written: u64,
    /// Frames not captured (limit reached or the writer behind).
    pub missed: u64,
}

/// A running capture.
pub struct Capture {
    tx: SyncSender<Rec>,
    full: Arc<AtomicBool>,
    missed: Arc<AtomicU64>,
    /// The writer's result: frames written, and frames that reached it
    /// after the limit (sent before the sinks saw `full`).
    thread: JoinHandle<Result<(u64, u64)>>,
}

/// A core's handle to write into a capture.
#[derive(Clone)]
pub struct CaptureSink {
    tx: SyncSender<Rec>,
    full: Arc<AtomicBool>,
    missed: Arc<AtomicU64>,
}

impl Capture {
    /// Starts a capture into `path`, stopping after `max_packets` frames.
    pub fn create(path: &str, max_packets: u64) -> Result<Capture> {
        let f = File::create(path).map_err(|e| Error::io(format!("create pcap file {path}"), e))?;
        let w = PcapWriter::new(BufWriter::new(f))
            .map_err(|e| Error::Config(format!("pcap header for {path}: {e}")))?;
        let (tx, rx) = sync_channel::<Rec>(8192);
        let full = Arc::new(AtomicBool::new(max_packets == 0));
        let full2 = full.clone();
        let thread = std::thread::Builder::new()
            .name("bypass-pcap".into())
            .spawn(move || write_loop(w, rx, max_packets, full2))
            .map_err(|e| Error::io("spawn pcap writer", e))?;
        Ok(Capture {
            tx,
            full,
            missed: Arc::new(AtomicU64::new(0)),
            thread,
        })
    }

    /// A handle for one core.
    pub fn sink(&self) -> CaptureSink {
        CaptureSink {
            tx: self.tx.clone(),
            full: self.full.clone(),
            missed: self.missed.clone(),
        }
    }

    /// Waits for the writer (every sink must be dropped first) and closes
    /// the file.
    pub fn finish(self) -> Result<CaptureSummary> {
        drop(self.tx);
        let (written, late) = self
            .thread
            .join()
            .map_err(|_| Error::Config("pcap writer panicked".into()))??;
        Ok(CaptureSummary {
            written,
            missed: self.missed.load(Ordering::Relaxed) + late,
        })
    }
}

fn write_loop(
    mut w: PcapWriter<BufWriter<File>>,
    rx: Receiver<Rec>,
    max: u64,
    full: Arc<AtomicBool>,
) -> Result<(u64, u64)> {
    let (mut n, mut late) = (0, 0);
    for (ts, orig, data) in rx {
        if n >= max {
            // Sent before the sink saw `full`: not captured either.
            late += 1;
            continue;
        }
        w.write_packet(&PcapPacket::new(ts, orig, &data))
            .map_err(|e| Error::Config(format!("writing pcap: {e}")))?;
        n += 1;
        if n >= max {
            full.store(true, Ordering::Relaxed);
        }
    }
    Ok((n, late))
}

impl CaptureSink {
    /// Records one frame (a copy of at most 2048 bytes).
    pub fn record(&self, frame: &[u8]) {
        if self.full.load(Ordering::Relaxed) {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let keep = &frame[..frame.len().min(SNAPLEN)];
        match self.tx.try_send((ts, frame.len() as u32, keep.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.missed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A port queue whose received and sent frames are also captured: wrap any
/// backend's queue in it to capture what it carries. (Frames are recorded
/// as offered to `tx_burst`, including any the port then refuses.)
pub struct Captured<Q: crate::port::PortQueue> {
    inner: Q,
    sink: CaptureSink,
}

impl<Q: crate::port::PortQueue> Captured<Q> {
    /// Wraps `inner`.
    pub fn new(inner: Q, sink: CaptureSink) -> Self {
        Captured { inner, sink }
    }
}

impl<Q: crate::port::PortQueue> crate::port::PortQueue for Captured<Q> {
    type Buf = Q::Buf;

    fn rx_burst(&mut self, burst: &mut crate::buf::Burst<Q::Buf>) -> usize {
        use crate::buf::PacketBuf;
        let start = burst.len();
        let n = self.inner.rx_burst(burst);
        for b in &burst[start..] {
            self.sink.record(b.data());
        }
        n
    }

    fn tx_burst(&mut self, burst: &mut crate::buf::Burst<Q::Buf>) -> usize {
        use crate::buf::PacketBuf;
        for b in burst.iter() {
            self.sink.record(b.data());
        }
        self.inner.tx_burst(burst)
    }

    fn alloc(&mut self) -> Option<Q::Buf> {
        self.inner.alloc()
    }

    fn queue_id(&self) -> u16 {
        self.inner.queue_id()
    }

    fn pool_stats(&self) -> crate::buf::PoolStats {
        self.inner.pool_stats()
    }

    fn flush(&mut self) {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_bounded_readable_pcap() {
        let path = std::env::temp_dir().join(format!("bypass-cap-{}.pcap", std::process::id()));
        let p = path.to_str().unwrap();
        let cap = Capture::create(p, 3).unwrap();
        let sink = cap.sink();
        for i in 0..5u8 {
            sink.record(&[i; 60]);
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(sink);
        let s = cap.finish().unwrap();
        assert_eq!(s.written, 3);
        assert_eq!(s.written + s.missed, 5);
        let mut r = pcap_file::pcap::PcapReader::new(File::open(&path).unwrap()).unwrap();
        let mut got = vec![];
        while let Some(pkt) = r.next_packet() {
            got.push(pkt.unwrap().data[0]);
        }
        assert_eq!(got, vec![0, 1, 2]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn frames_past_the_limit_are_counted_even_when_the_writer_lags() {
        // Sent back to back: most reach the writer before the sink sees
        // the limit, and the writer counts those.
        let path = std::env::temp_dir().join(format!("bypass-cap2-{}.pcap", std::process::id()));
        let cap = Capture::create(path.to_str().unwrap(), 3).unwrap();
        let sink = cap.sink();
        for i in 0..1000u32 {
            sink.record(&i.to_be_bytes().repeat(15));
        }
        drop(sink);
        let s = cap.finish().unwrap();
        assert_eq!(s.written, 3);
        assert_eq!(s.written + s.missed, 1000);
        std::fs::remove_file(path).unwrap();
    }
}
