//! The in-memory wire, its fault injector, and l2fwd between two mem ports
//! on two threads.

use std::time::Duration;

use bypass::app::Wire;
use bypass::buf::{Burst, PacketBuf, PoolBuf};
use bypass::port::mem::{Faults, MemConfig, MemPort, MemQueue};
use bypass::port::{Port, PortQueue};
use bypass::runtime::{self, ForwardWorker, RunConfig, Stats, Stop};

fn frame(q: &mut MemQueue, seq: u32, len: usize) -> PoolBuf {
    let mut b = q.alloc().expect("pool has room");
    let room = b.room_mut();
    room[..14].copy_from_slice(&[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5,
    ]);
    room[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, x) in room[18..len].iter_mut().enumerate() {
        *x = (seq as usize + i) as u8;
    }
    b.set_len(len);
    b
}

fn seq_of(b: &PoolBuf) -> u32 {
    u32::from_be_bytes(b.data()[14..18].try_into().unwrap())
}

fn intact(b: &PoolBuf) -> bool {
    let s = seq_of(b) as usize;
    b.data()[18..]
        .iter()
        .enumerate()
        .all(|(i, x)| *x == (s + i) as u8)
}

fn pair(faults: Faults) -> (MemQueue, MemQueue) {
    let (mut a, mut b) = MemPort::pair(&MemConfig {
        faults_ab: faults,
        pool_frames: 512,
        ..Default::default()
    })
    .unwrap();
    (
        a.take_queues().pop().unwrap(),
        b.take_queues().pop().unwrap(),
    )
}

/// Sends `n` frames from a to b in bursts, receiving as it goes; returns
/// the received frames' sequence numbers (all intact-checked).
fn pump(a: &mut MemQueue, b: &mut MemQueue, n: u32) -> Vec<u32> {
    let mut got = vec![];
    let mut seq = 0;
    let mut idle = 0;
    while idle < 50 {
        let mut tx = Burst::new();
        while seq < n && !tx.is_full() {
            tx.push(frame(a, seq, 64 + (seq as usize % 200)));
            seq += 1;
        }
        a.tx_burst(&mut tx);
        assert!(tx.is_empty(), "ring of 1024 never fills here");
        if seq == n {
            a.release_held();
        }
        let mut rx = Burst::new();
        if b.rx_burst(&mut rx) == 0 && seq == n {
            idle += 1;
        }
        for f in rx {
            got.push(seq_of(&f));
            assert!(
                intact(&f) || f.len() < 18,
                "payload damaged without a corrupt fault"
            );
        }
    }
    got
}

#[test]
fn clean_wire_is_fifo_zero_copy_and_returns_buffers() {
    let (mut a, mut b) = pair(Faults::default());
    let got = pump(&mut a, &mut b, 1000);
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(
        a.pool_stats().in_use,
        0,
        "received frames returned to the sender's pool"
    );
    assert_eq!(b.pool_stats().in_use, 0);
}

#[test]
fn full_ring_leaves_frames_with_the_caller() {
    let (mut pa, mut pb) = MemPort::pair(&MemConfig {
        ring_size: 40,
        ..Default::default()
    })
    .unwrap();
    let mut a = pa.take_queues().pop().unwrap();
    let mut b = pb.take_queues().pop().unwrap();
    let mut tx = Burst::new();
    for i in 0..32 {
        tx.push(frame(&mut a, i, 60));
    }
    assert_eq!(a.tx_burst(&mut tx), 32);
    for i in 32..64 {
        tx.push(frame(&mut a, i, 60));
    }
    assert_eq!(a.tx_burst(&mut tx), 8, "only 8 slots left");
    assert_eq!(tx.len(), 24);
    assert_eq!(seq_of(&tx[0]), 40, "unsent frames stay in order");
    let mut rx = Burst::new();
    b.rx_burst(&mut rx);
    assert_eq!(rx.len(), 32);
    drop(rx);
    assert_eq!(a.tx_burst(&mut tx), 24);
    assert_eq!(pa.link_stats().tx_packets, 64);
}

#[test]
fn loss_is_seeded_and_counted() {
    let f = Faults {
        seed: 7,
        loss: 0.1,
        ..Default::default()
    };
    let (mut a, mut b) = pair(f);
    let got = pump(&mut a, &mut b, 5000);
    let lost = a.fault_stats().lost;
    assert_eq!(got.len() as u64 + lost, 5000);
    assert!((350..650).contains(&lost), "10% of 5000, got {lost}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "loss alone keeps order"
    );
    // Same seed, same losses.
    let (mut a2, mut b2) = pair(f);
    assert_eq!(pump(&mut a2, &mut b2, 5000), got);
}

#[test]
fn duplication_reordering_and_delay() {
    let (mut a, mut b) = pair(Faults {
        seed: 3,
        duplicate: 0.05,
        reorder: 0.05,
        delay_polls: 3,
        ..Default::default()
    });
    let got = pump(&mut a, &mut b, 3000);
    let fs = a.fault_stats();
    assert!(fs.duplicated > 50 && fs.reordered > 50, "{fs:?}");
    assert_eq!(got.len() as u64, 3000 + fs.duplicated);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, (0..3000).collect::<Vec<_>>(), "every frame arrives");
    assert!(
        got.windows(2).any(|w| w[0] > w[1]),
        "some arrive out of order"
    );
    drop(got);
    assert_eq!(a.pool_stats().in_use, 0);
}

#[test]
fn corruption_flips_bytes_after_the_ethernet_header() {
    let (mut a, mut b) = pair(Faults {
        seed: 11,
        corrupt: 0.2,
        ..Default::default()
    });
    let mut damaged = 0;
    let mut tx = Burst::new();
    for i in 0..30 {
        tx.push(frame(&mut a, i, 200));
    }
    a.tx_burst(&mut tx);
    let mut rx = Burst::new();
    b.rx_burst(&mut rx);
    for f in &rx {
        assert_eq!(
            &f.data()[..14],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5]
        );
        if seq_of(f) >= 30 || !intact(f) {
            damaged += 1;
        }
    }
    assert_eq!(damaged, a.fault_stats().corrupted);
    assert!(damaged > 0);
}

/// l2fwd between two mem ports: a generator on this thread feeds wire 1,
/// the forwarder runs pinned on its own core thread and passes frames to
/// wire 2, where this thread checks them.
#[test]
fn l2fwd_between_two_mem_ports_on_two_threads() {
    let cfg = MemConfig {
        pool_frames: 2048,
        ..Default::default()
    };
    let (mut gen, mut fwd_in) = MemPort::pair(&MemConfig {
        name: "in".into(),
        ..cfg.clone()
    })
    .unwrap();
    let (mut fwd_out, mut sink) = MemPort::pair(&MemConfig {
        name: "out".into(),
        ..cfg
    })
    .unwrap();
    let mut g = gen.take_queues().pop().unwrap();
    let mut s = sink.take_queues().pop().unwrap();
    let stats = Stats::new(&[0], &["in".into(), "out".into()]);
    let worker = ForwardWorker::new(
        vec![
            fwd_in.take_queues().pop().unwrap(),
            fwd_out.take_queues().pop().unwrap(),
        ],
        Wire,
        stats.core(0),
    );
    let stop = Stop::new();
    let cores = runtime::available_cores();
    let run_cfg = RunConfig {
        cores: vec![cores[0]],
        idle_sleep: Duration::from_micros(20),
        ..Default::default()
    };
    const N: u32 = 20_000;
    // Stops the forwarder even if an assertion below panics, so the scope
    // can end.
    struct StopOnDrop(Stop);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.set();
        }
    }
    let (workers, got) = std::thread::scope(|sc| {
        let stop2 = stop.clone();
        let _guard = StopOnDrop(stop.clone());
        let h = sc.spawn(move || runtime::run(&run_cfg, vec![worker], &stop2, |_| {}).unwrap());
        let mut got = 0u32;
        let mut next = 0u32;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got < N && std::time::Instant::now() < deadline {
            let mut tx = Burst::new();
            // At most 512 frames in flight: the 1024-frame rings never
            // fill, so the forwarder has no reason to drop.
            while next < N && next - got < 512 && !tx.is_full() {
                tx.push(frame(&mut g, next, 64));
                next += 1;
            }
            g.tx_burst(&mut tx);
            next -= tx.len() as u32; // ring full: build those again next round
            let mut rx = Burst::new();
            s.rx_burst(&mut rx);
            for f in rx {
                assert_eq!(seq_of(&f), got, "in order, none lost");
                assert!(intact(&f));
                got += 1;
            }
        }
        stop.set();
        (h.join().unwrap(), got)
    });
    assert_eq!(got, N);
    let snap = stats.snapshot();
    assert_eq!(snap.ports[0].rx_packets, N as u64);
    assert_eq!(snap.ports[1].tx_packets, N as u64);
    assert_eq!(snap.ports[1].tx_bytes, 64 * N as u64);
    assert_eq!(snap.ports[0].drops + snap.ports[1].drops, 0);
    let qs = workers.into_iter().next().unwrap().into_queues();
    for q in qs.iter().chain([&g, &s]) {
        assert_eq!(q.pool_stats().in_use, 0, "every buffer back in its pool");
    }
}

/// Sends `frame` from queue `from` of B; returns the A queue it lands on.
fn landing(a: &mut [MemQueue], b: &mut [MemQueue], from: usize, frame: &[u8]) -> usize {
    let mut buf = b[from].alloc().expect("pool has room");
    buf.room_mut()[..frame.len()].copy_from_slice(frame);
    buf.set_len(frame.len());
    let mut tx = Burst::new();
    tx.push(buf);
    assert_eq!(b[from].tx_burst(&mut tx), 1);
    let mut hits = vec![];
    for (i, q) in a.iter_mut().enumerate() {
        let mut rx = Burst::new();
        if q.rx_burst(&mut rx) > 0 {
            hits.push(i);
        }
    }
    assert_eq!(hits.len(), 1, "one copy, on one queue: {hits:?}");
    hits[0]
}

#[test]
fn rss_spreads_flows_over_the_receivers_queues_as_a_nic_does() {
    use bypass::flow::{FiveTuple, Rss};
    use bypass::testing::{emit_arp_request, syn, tcp_vec, Ends};
    let (mut pa, mut pb) = MemPort::pair(&MemConfig {
        queues: 4,
        ..Default::default()
    })
    .unwrap();
    assert!(pa.info().caps.rss);
    let mut a = pa.take_queues();
    let mut b = pb.take_queues();
    let e = Ends {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        src_ip: "10.0.0.2".parse().unwrap(),
        dst_ip: "10.0.0.1".parse().unwrap(),
    };
    // Not configured: queue i of B reaches queue i of A, whatever the flow.
    for q in 0..4 {
        assert_eq!(
            landing(&mut a, &mut b, q, &tcp_vec(&e, &syn(1000, 80, 1))),
            q
        );
    }
    // A table naming more queues than A has is refused.
    assert!(!pa.configure_rss(&Rss::symmetric(8).unwrap()).unwrap());
    let rss = Rss::symmetric(4).unwrap();
    assert!(pa.configure_rss(&rss).unwrap());
    assert!(
        pa.configure_rss(&rss).unwrap(),
        "the same table again: fine"
    );
    assert!(!pa.configure_rss(&Rss::symmetric(2).unwrap()).unwrap());
    let mut seen = [false; 4];
    for port in 1000..1064u16 {
        let f = tcp_vec(&e, &syn(port, 80, 1));
        let want = rss.core(&FiveTuple::of_frame(&f).unwrap());
        // From any sending queue, the flow lands on the queue RSS names.
        for from in [0, 3] {
            assert_eq!(landing(&mut a, &mut b, from, &f), want, "port {port}");
        }
        seen[want] = true;
    }
    assert_eq!(seen, [true; 4], "64 flows reach every queue");
    // No IPv4 flow (ARP): queue 0.
    let mut room = [0u8; 64];
    let n = emit_arp_request(&mut room, e.src_mac, e.src_ip, e.dst_ip);
    assert_eq!(landing(&mut a, &mut b, 2, &room[..n]), 0);
}
