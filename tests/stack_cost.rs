//! Cost measurements, run by hand under callgrind (instruction counts
//! repeat exactly where wall-clock rates swing): two stacks over the
//! in-memory wire on a manual clock. `scripts/test.sh` skips them.
//!
//! `BYPASS_TCP_ENGINE=E valgrind --tool=callgrind
//! target/release/deps/stack_cost-* --ignored --exact NAME`

use std::net::{IpAddr, SocketAddr};

use bypass::app::tcp::{Conn, Ctx, TcpApp};
use bypass::stack::{ListenOpts, TcpOpts};

mod common;
use common::mem_net::{manual_run, Cps, SERVER, SERVER6};

/// Request/response on `conns` connections until `total` transactions:
/// each connection sends 64 bytes and waits for them back.
struct Rr {
    conns: usize,
    opened: usize,
    total: usize,
    done: usize,
    server: IpAddr,
}

impl TcpApp for Rr {
    type Conn = usize;
    fn on_open(&mut self, c: &mut Conn<'_>) -> usize {
        c.send(&[7; 64]);
        0
    }
    fn on_data(&mut self, got: &mut usize, c: &mut Conn<'_>, d: &[u8]) -> usize {
        *got += d.len();
        while *got >= 64 {
            *got -= 64;
            self.done += 1;
            if self.done < self.total {
                c.send(&[7; 64]);
            }
        }
        d.len()
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        while self.opened < self.conns {
            ctx.connect(SocketAddr::new(self.server, 7)).unwrap();
            self.opened += 1;
            n += 1;
        }
        n
    }
}

/// A cost measurement, run by hand: `BYPASS_TCP_ENGINE=E valgrind
/// --tool=callgrind target/release/deps/stack_cost-* --ignored
/// rr_cost_on_a_manual_clock` gives the instructions per transaction of an
/// engine (the clock is manual, so timers and instruction counts repeat).
#[test]
#[ignore = "a cost measurement, run by hand"]
fn rr_cost_on_a_manual_clock() {
    rr_cost(SERVER.into());
}

/// [`rr_cost_on_a_manual_clock`] over IPv6: the same workload, so the two
/// instruction counts compare the families.
#[test]
#[ignore = "a cost measurement, run by hand"]
fn rr_cost_on_a_manual_clock_ipv6() {
    rr_cost(SERVER6.into());
}

fn rr_cost(server: IpAddr) {
    // RR_CONNS=16384 gives the cost at scale (the clock then also moves
    // past timers a real run would see).
    let conns = std::env::var("RR_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let total = std::env::var("RR_TOTAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let app = Rr {
        conns,
        opened: 0,
        total,
        done: 0,
        server,
    };
    let o = TcpOpts {
        rx_buf: 16 * 1024,
        tx_buf: 16 * 1024,
        ..TcpOpts::default()
    };
    let lopts = ListenOpts {
        tcp: o,
        ..Default::default()
    };
    let n = manual_run(app, lopts, o, |a: &Rr| a.done >= total);
    let (ss, cs) = (n.server.stack().stats(), n.client.stack().stats());
    let done = n.client.app().done as f64;
    eprintln!(
        "{} transactions in {} µs of manual time, engine {}: frames per transaction {:.2} (server) {:.2} (client), timer fires {} / {}",
        n.client.app().done,
        n.now,
        o.engine,
        ss.tx_packets.get() as f64 / done,
        cs.tx_packets.get() as f64 / done,
        ss.timer_fires.get(),
        cs.timer_fires.get(),
    );
    assert!(n.client.app().done >= total);
}

/// A cost measurement, run by hand like `rr_cost_on_a_manual_clock`:
/// instructions per connection (open, one 64-byte exchange, close) with 64
/// in flight.
#[test]
#[ignore = "a cost measurement, run by hand"]
fn cps_cost_on_a_manual_clock() {
    cps_cost(SERVER.into());
}

/// [`cps_cost_on_a_manual_clock`] over IPv6.
#[test]
#[ignore = "a cost measurement, run by hand"]
fn cps_cost_on_a_manual_clock_ipv6() {
    cps_cost(SERVER6.into());
}

fn cps_cost(server: IpAddr) {
    let total = 20_000;
    // CPS_CONNS=1: one connection at a time, so manual time per connection
    // counts the poll rounds each one takes.
    let conns = std::env::var("CPS_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let app = Cps::new(conns, total, server);
    let o = TcpOpts::default();
    let lopts = ListenOpts {
        tcp: o,
        ..Default::default()
    };
    let n = manual_run(app, lopts, o, |a: &Cps| a.closed >= total);
    let (ss, cs) = (n.server.stack().stats(), n.client.stack().stats());
    let done = n.client.app().closed as f64;
    eprintln!(
        "{} connections in {} µs of manual time, engine {}: frames per connection {:.2} (server) {:.2} (client), {} reset",
        n.client.app().closed,
        n.now,
        o.engine,
        ss.tx_packets.get() as f64 / done,
        cs.tx_packets.get() as f64 / done,
        ss.reset.get() + cs.reset.get(),
    );
    assert!(n.client.app().closed >= total);
}
