//! `bypass l3fwd`: IPv4 longest-prefix-match forwarding between ports.

use std::sync::Arc;

use clap::Args;

use bypass::app::l3fwd::{parse_routes, L3Fwd, Table};
use bypass::port::{MacAddr, Port};
use bypass::runtime::Stop;
use bypass::{Error, Result};

use super::ports::{self, WithPorts};
use super::{say, Common};

/// `bypass l3fwd` flags.
#[derive(Args, Debug)]
pub struct L3fwdArgs {
    #[command(flatten)]
    common: Common,
    /// The routes: one `PREFIX/LEN PORT NEXT-HOP-MAC` per line (`PORT` is
    /// the index of a --port, from 0); `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    routes: String,
}

pub fn run(a: L3fwdArgs) -> Result<()> {
    let cfg = a.common.run_config()?;
    let n = a.common.ports.len();
    if !(1..=bypass::runtime::stats::MAX_PORTS).contains(&n) {
        return Err(ports::count_error(
            n,
            &format!("1 to {} ports", bypass::runtime::stats::MAX_PORTS),
        ));
    }
    // The routes are read and checked before anything starts.
    let text = std::fs::read_to_string(&a.routes)
        .map_err(|e| Error::Config(format!("cannot read the routes file {}: {e}", a.routes)))?;
    let routes = parse_routes(&text, n)
        .map_err(|e| Error::Config(format!("routes file {}: {e}", a.routes)))?;
    let table = Table::new(&routes, n)
        .map_err(|e| Error::Config(format!("routes file {}: {e}", a.routes)))?;
    let stop = Stop::with_signals()?;
    let opened = ports::open_with_eal(&a.common.ports, cfg.cores.len() as u16, &a.common.eal)?;
    say(
        a.common.json,
        &format!("l3fwd: {} routes from {}", table.routes(), a.routes),
    );
    opened.run(Run {
        common: &a.common,
        cfg,
        table,
        stop: &stop,
    })
}

struct Run<'a> {
    common: &'a Common,
    cfg: bypass::runtime::RunConfig,
    table: Table,
    stop: &'a Stop,
}

impl WithPorts for Run<'_> {
    fn run<P: Port>(self, ports: Vec<P>) -> Result<()> {
        let macs: Vec<MacAddr> = ports.iter().map(|p| p.info().mac).collect();
        let mut table = self.table;
        table.set_port_macs(&macs);
        let table = Arc::new(table);
        super::l2fwd::drive(
            "l3fwd",
            self.common,
            self.cfg,
            ports,
            || L3Fwd::new(table.clone()),
            self.stop,
        )
    }
}
