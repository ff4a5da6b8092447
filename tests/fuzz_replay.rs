//! Replays the fuzz corpus and every input that once crashed a fuzz
//! target, through the very harnesses the fuzzer runs (`fuzz/harness/`),
//! as ordinary tests: `fuzz/corpus/TARGET/*` (the seeds and what the
//! fuzzer kept) and `fuzz/regressions/TARGET/*` (crash inputs, each named
//! after the bug it found).

#[allow(dead_code)]
#[path = "../fuzz/harness/frames.rs"]
mod frames;
#[path = "../fuzz/harness/http.rs"]
mod http;
#[path = "../fuzz/harness/parsers.rs"]
mod parsers;

use std::path::Path;

/// Runs `f` on every file under fuzz/{corpus,regressions}/`target`;
/// returns how many there were.
fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files {
            let data = std::fs::read(&p).unwrap();
            eprintln!("replaying {}", p.display());
            f(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn frames_corpus_and_regressions() {
    assert!(
        replay("frames", frames::run) >= 5,
        "the seed corpus is there"
    );
}

#[test]
fn http_corpus_and_regressions() {
    assert!(replay("http", http::run) >= 5, "the seed corpus is there");
}

#[test]
fn parsers_corpus_and_regressions() {
    assert!(
        replay("parsers", parsers::run) >= 5,
        "the seed corpus is there"
    );
}

/// The IPv6 seeds of the frames corpus reach what their names say: a SYN
/// (plain, and behind extension headers) opens a handshake, a neighbour
/// solicitation and an echo request are answered, a fragment is counted.
#[test]
fn frames_ipv6_seeds_reach_the_stack() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frames");
    // Frames the server sends for the input, less what it sends in the
    // same steps with nothing injected (the live connections' own).
    let sent_for = |data: &[u8], inject: bool| {
        let mut rig = frames::Rig::new();
        let st = rig.server.stack().stats().clone();
        let tx0 = st.tx_packets.get();
        for (frame, step) in frames::records(data) {
            if inject {
                rig.inject(frame);
            }
            rig.step(step);
        }
        rig.step(100);
        (rig, st.tx_packets.get() - tx0)
    };
    let run = |name: &str| {
        let data = std::fs::read(root.join(name)).unwrap();
        let (_, quiet) = sent_for(&data, false);
        let (rig, sent) = sent_for(&data, true);
        let conns = rig.server.stack().conn_count();
        (rig, sent - quiet, conns)
    };
    for syn in ["v6_syn", "v6_ext_chain"] {
        let (rig, sent, conns) = run(syn);
        assert_eq!(
            conns, 3,
            "{syn}: a handshake beside the two live connections"
        );
        assert!(sent >= 1, "{syn}: SYN-ACK");
        assert_eq!(rig.server.stack().stats().drops(), 0, "{syn}");
    }
    for answered in ["v6_ns", "v6_icmp_echo"] {
        let (rig, sent, _) = run(answered);
        assert_eq!(sent, 1, "{answered}: one answer");
        assert_eq!(rig.server.stack().stats().drops(), 0, "{answered}");
    }
    let (rig, _, _) = run("v6_fragment");
    assert_eq!(rig.server.stack().stats().drop_fragment.get(), 1);
    let (rig, _, _) = run("v6_udp");
    assert_eq!(rig.server.stack().stats().udp_no_port.get(), 1);
}
