//! An HTTP/1.1 server with a route of its own, on the userspace stack.
//!
//! ```text
//! sudo cargo run --release --example http_server -- tap:bp0 10.99.0.2/24
//! # another shell: sudo ip addr add 10.99.0.1/24 dev bp0
//! #                curl http://10.99.0.2/hello ; curl http://10.99.0.2/plaintext
//! ```

use std::sync::Arc;

use bypass::app::http::{
    Handler, HttpApp, HttpCounters, Request, ResponseWriter, StatusCode, TechEmpower,
};
use bypass::port::tap::{TapConfig, TapPort};
use bypass::port::Port;
use bypass::runtime::{self, parse_cidr, RunConfig, Stop, TcpWorker};
use bypass::stack::{ListenOpts, Stack, StackConfig};
use bypass::time::{Clock, MonotonicClock};

/// `/hello` is ours; everything else falls through to the TechEmpower
/// routes (`/plaintext`, `/json`, 404s). Handlers are sans-I/O: a request
/// in, a response written, no socket in sight.
struct Hello;

impl Handler for Hello {
    fn handle(&mut self, req: &Request<'_>, resp: &mut ResponseWriter<'_>) {
        if req.path() == "/hello" {
            resp.status(StatusCode::OK);
            resp.body_static(b"hello from userspace TCP\n");
        } else {
            TechEmpower.handle(req, resp);
        }
    }
}

fn main() -> bypass::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, ip] = &args[..] else {
        eprintln!("usage: http_server tap:NAME ADDR/PREFIX");
        std::process::exit(2);
    };
    let (addr, prefix) = parse_cidr(ip)?;
    let mut tap = TapPort::open(&TapConfig::new(port.strip_prefix("tap:").unwrap_or(port)))?;
    let mut stack = Stack::new(
        tap.take_queues().remove(0),
        tap.info(),
        StackConfig::new(addr, prefix),
        MonotonicClock::new().now(),
    )?;
    stack.listen(80, ListenOpts::default())?;

    let counters = Arc::new(HttpCounters::default());
    let app = HttpApp::new(|| Hello, counters.clone());
    println!("http on {addr}:80; Ctrl-C stops");
    let cfg = RunConfig {
        cores: vec![0],
        ..Default::default()
    };
    runtime::run(
        &cfg,
        vec![TcpWorker::new(stack, app)],
        &Stop::with_signals()?,
        |_| {},
    )?;
    println!("{} requests served", counters.requests.get());
    Ok(())
}
