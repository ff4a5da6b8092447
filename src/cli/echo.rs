//! `bypass echo`: a TCP (and optionally UDP) echo server on the userspace
//! stack.

use std::sync::Arc;

use clap::Args;

use bypass::app::tcp::Echo;
use bypass::counter::Counter;
use bypass::port::Port;
use bypass::runtime::Stop;
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
            |core| Echo::counting(c2[core].clone()),
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
