//! A TCP echo server on the userspace stack, in a page.
//!
//! ```text
//! sudo ip tuntap add mode tap multi_queue name bp0   # or let bypass create it
//! sudo cargo run --release --example tcp_echo -- tap:bp0 10.99.0.2/24 7
//! # in another shell: sudo ip addr add 10.99.0.1/24 dev bp0; nc 10.99.0.2 7
//! ```
//! Ctrl-C stops it.

use bypass::app::tcp::{Conn, TcpApp};
use bypass::port::tap::{TapConfig, TapPort};
use bypass::port::Port;
use bypass::runtime::{self, parse_cidr, RunConfig, Stop, TcpWorker};
use bypass::stack::{ListenOpts, Stack, StackConfig};
use bypass::time::{Clock, MonotonicClock};

/// The whole application: echo what arrives (back-pressure comes free:
/// what does not fit in the send buffer stays unread).
struct Echo;

impl TcpApp for Echo {
    type Conn = ();
    fn on_open(&mut self, _conn: &mut Conn<'_>) {}
    fn on_data(&mut self, _: &mut (), conn: &mut Conn<'_>, data: &[u8]) -> usize {
        conn.send(data)
    }
}

fn main() -> bypass::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, ip, listen] = &args[..] else {
        eprintln!("usage: tcp_echo tap:NAME ADDR/PREFIX PORT");
        std::process::exit(2);
    };
    let name = port.strip_prefix("tap:").unwrap_or(port);
    let (addr, prefix) = parse_cidr(ip)?;
    let listen: u16 = listen
        .parse()
        .map_err(|_| bypass::Error::Config("bad port".into()))?;

    let mut tap = TapPort::open(&TapConfig::new(name))?;
    let queue = tap.take_queues().remove(0);
    let mut stack = Stack::new(
        queue,
        tap.info(),
        StackConfig::new(addr, prefix),
        MonotonicClock::new().now(),
    )?;
    stack.listen(listen, ListenOpts::default())?;
    println!("echo on {addr}:{listen} via tap {name}; Ctrl-C stops");

    let cfg = RunConfig {
        cores: vec![0],
        ..Default::default()
    };
    let done = runtime::run(
        &cfg,
        vec![TcpWorker::new(stack, Echo)],
        &Stop::with_signals()?,
        |_| {},
    )?;
    let stats = done[0].stack().stats();
    println!(
        "accepted {} connections, {} frames in, {} out",
        stats.accepted.get(),
        stats.rx_packets.get(),
        stats.tx_packets.get()
    );
    Ok(())
}
