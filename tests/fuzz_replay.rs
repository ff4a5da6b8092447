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
