//! `bypass http`: an HTTP/1.1 server (TechEmpower routes) on the userspace
//! stack.

use std::sync::Arc;

use clap::Args;

use bypass::app::http::{HttpApp, HttpCounters};
use bypass::port::Port;
use bypass::runtime::Stop;
use bypass::Result;

use super::ports::{self, WithPorts};
use super::serve::{self, AppCounter, NetArgs, Serve};
use super::Common;

/// `bypass http` flags.
#[derive(Args, Debug)]
pub struct HttpArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Counters of each core's HTTP app, and the live-table columns over them.
pub fn http_counters(cores: usize) -> (Vec<Arc<HttpCounters>>, [AppCounter; 2]) {
    let per: Vec<Arc<HttpCounters>> = (0..cores).map(|_| Arc::default()).collect();
    let (p1, p2) = (per.clone(), per.clone());
    let cols = [
        AppCounter {
            name: "req",
            total: Box::new(move || p1.iter().map(|c| c.requests.get()).sum()),
        },
        AppCounter {
            name: "bad_req",
            total: Box::new(move || p2.iter().map(|c| c.bad_requests.get()).sum()),
        },
    ];
    (per, cols)
}

struct Run<'a>(&'a HttpArgs, Stop);

impl WithPorts for Run<'_> {
    fn run<P: Port>(self, ports: Vec<P>) -> Result<()> {
        let a = self.0;
        let cores = a.common.run_config()?.cores.len();
        let (per, view) = http_counters(cores);
        serve::serve(
            Serve {
                command: "http",
                common: &a.common,
                net: &a.net,
                app_counters: &view,
                stop: &self.1,
                tick: &mut |_| {},
                udp: None,
            },
            ports,
            |core| HttpApp::techempower(per[core].clone()),
        )
    }
}

pub fn run(mut a: HttpArgs) -> Result<()> {
    if a.net.listen.is_none() {
        a.net.listen = Some(80);
    }
    let stop = Stop::with_signals()?;
    let cores = a.common.run_config()?.cores.len() as u16;
    ports::open_with_eal(&a.common.ports, cores, &a.common.eal)?.run(Run(&a, stop))
}
