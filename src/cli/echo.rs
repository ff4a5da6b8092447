//! `bypass echo`: a TCP (and optionally UDP) echo server on the userspace
//! stack.

use std::net::SocketAddrV4;
use std::sync::Arc;

use clap::Args;

use bypass::app::tcp::{Conn, Ctx, TcpApp};
use bypass::counter::Counter;
use bypass::port::Port;
use bypass::runtime::Stop;
use bypass::stack::UdpId;
use bypass::Result;

use super::ports::{self, WithPorts};
use super::serve::{self, AppCounter, NetArgs, Serve};
use super::Common;

/// `bypass echo` flags.
#[derive(Args, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    net: NetArgs,
    /// Also echo UDP datagrams on this port.
    #[arg(long, value_name = "PORT")]
    udp: Option<u16>,
}

/// Echoes TCP bytes and UDP datagrams; counts echoed bytes.
pub struct Echo {
    bytes: Arc<Counter>,
}

impl Echo {
    /// An echo app counting echoed bytes into `bytes`.
    pub fn new(bytes: Arc<Counter>) -> Echo {
        Echo { bytes }
    }
}

impl TcpApp for Echo {
    type Conn = ();
    fn on_open(&mut self, _conn: &mut Conn<'_>) {}
    fn on_data(&mut self, _: &mut (), conn: &mut Conn<'_>, data: &[u8]) -> usize {
        let n = conn.send(data);
        self.bytes.add(n as u64);
        n
    }
    fn on_datagram(&mut self, ctx: &mut Ctx<'_>, sock: UdpId, data: &[u8], from: SocketAddrV4) {
        if ctx.udp_send(sock, from, data) {
            self.bytes.add(data.len() as u64);
        }
    }
}

struct Run<'a>(&'a EchoArgs, Stop);

impl WithPorts for Run<'_> {
    fn run<P: Port>(self, ports: Vec<P>) -> Result<()> {
        let a = self.0;
        let counters: Vec<Arc<Counter>> = a
            .common
            .run_config()?
            .cores
            .iter()
            .map(|_| Arc::default())
            .collect();
        let c2 = counters.clone();
        let udp = a.udp;
        let app_counters = [AppCounter::sum("echo-bytes", counters)];
        serve::serve(
            Serve {
                command: "echo",
                common: &a.common,
                net: &a.net,
                app_counters: &app_counters,
                stop: &self.1,
                tick: &mut |_| {},
                udp,
            },
            ports,
            |core| Echo {
                bytes: c2[core].clone(),
            },
        )
    }
}

pub fn run(a: EchoArgs) -> Result<()> {
    if a.net.listen.is_none() && a.udp.is_none() {
        return Err(bypass::Error::Config(
            "give --listen PORT (TCP) and/or --udp PORT".into(),
        ));
    }
    let stop = Stop::with_signals()?;
    let cores = a.common.run_config()?.cores.len() as u16;
    ports::open_with_eal(&a.common.ports, cores, &a.common.eal)?.run(Run(&a, stop))
}
