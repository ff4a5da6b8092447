//! `bypass demo`: the userspace stack serving real kernel clients.
//!
//! In a private network namespace (made with `unshare`, gone when the
//! process exits) it creates a TAP, serves HTTP from the userspace stack on
//! one core, checks it once with `curl`, then drives it with `wrk` (many
//! concurrent keep-alive connections from the kernel's TCP stack) for a
//! bounded time, with live stats, and ends with a summary.

use std::process::{Child, Command, Stdio};

use clap::Args;

use bypass::port::sys;
use bypass::port::tap::{TapConfig, TapPort};
use bypass::runtime::Stop;
use bypass::{Error, Result};

use super::http::http_counters;
use super::serve::{self, NetArgs, Serve};
use super::Common;

/// `bypass demo` flags.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seconds of load.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Concurrent keep-alive connections from the kernel clients.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Core for the userspace stack.
    #[arg(long, default_value = "0")]
    cores: String,
    /// Print a JSON summary last on stdout.
    #[arg(long)]
    json: bool,
    /// The TCP engine: bypass or smoltcp.
    #[arg(long = "tcp", value_name = "ENGINE", default_value_t = bypass::stack::TcpEngine::default())]
    engine: bypass::stack::TcpEngine,
    /// Open the TAP with virtio-net headers (checksum offload: the kernel
    /// leaves the checksums of what it sends us unfinished, and the stack
    /// does not verify them again).
    #[arg(long)]
    vnet: bool,
    /// Also TSO on transmit (implies --vnet): the bypass engine sends runs
    /// of full-MSS segments as one large frame that the kernel takes whole.
    #[arg(long)]
    tso: bool,
}

fn tool(name: &str) -> Result<()> {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "the demo's kernel-side client `{name}` is missing: run `sudo scripts/install-deps.sh` (or apt-get install {name})"
        )))
    }
}

fn sh(cmd: &str) -> Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| Error::io(format!("run `{cmd}`"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub fn run(a: DemoArgs) -> Result<()> {
    if !sys::is_root() {
        return Err(Error::Privilege {
            what: "bypass demo (it creates a private network namespace and a TAP device)".into(),
            caps: "CAP_NET_ADMIN and CAP_SYS_ADMIN",
        });
    }
    if !(2.0..=3600.0).contains(&a.duration) {
        return Err(Error::Config("--duration must be 2 to 3600 seconds".into()));
    }
    tool("wrk")?;
    tool("curl")?;
    tool("ip")?;
    let stop = Stop::with_signals()?;
    // Everything from here on lives in a namespace of our own: the TAP, the
    // addresses, curl and wrk. Nothing touches the host's network.
    sys::unshare_netns()?;
    // IPv4 only: no IPv6 autoconfiguration chatter on the new TAP.
    sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")?;
    // The port spec a user would write, opened the way `--port` opens it
    // (so its defaults, such as the TSO pool size, are the port's own).
    let spec = match (a.vnet, a.tso) {
        (_, true) => "tap:bp0,vnet,tso",
        (true, false) => "tap:bp0,vnet",
        (false, false) => "tap:bp0",
    };
    let port = TapPort::open(&TapConfig::from_spec(&mut spec.parse()?, 1)?)?;
    sh("ip addr add 10.88.0.1/24 dev bp0")?;
    let common = Common {
        ports: vec![spec.into()],
        cores: a.cores.clone(),
        duration: Some(a.duration + 1.5),
        stats_interval: 1.0,
        json: a.json,
        pcap: None,
        pcap_max: 0,
        idle_sleep_us: 0,
        eal: String::new(),
    };
    let net = NetArgs {
        ip: vec!["10.88.0.2/24".into()],
        gateway: None,
        gateway6: None,
        listen: Some(80),
        backlog: 4096,
        backlog_full: None,
        engine: a.engine,
        rx_buf: None,
        tx_buf: None,
        cc: "cubic".into(),
        rto_min_ms: 5.0,
        keepalive: None,
        idle_timeout: None,
        max_conns: 1 << 20,
    };
    let say = |l: &str| super::say(a.json, l);
    say("demo: private network namespace; kernel at 10.88.0.1 on TAP bp0, bypass's userspace stack at 10.88.0.2:80");
    let (per, cols) = http_counters(1);
    let mut wrk: Option<Child> = None;
    let mut wrk_err = None;
    let load_secs = a.duration.round().max(1.0) as u64;
    let conns = a.connections.max(2);
    let mut tick = |t: f64| {
        if t < 1.5 && wrk.is_none() && wrk_err.is_none() {
            // One request with curl, shown, then the load.
            match Command::new("curl")
                .args(["-s", "-i", "--max-time", "3", "http://10.88.0.2/plaintext"])
                .output()
            {
                Ok(o) if o.status.success() => {
                    let text = String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n   ");
                    say(&format!(
                        "curl http://10.88.0.2/plaintext ->\n   {}",
                        text.trim_end()
                    ));
                }
                Ok(o) => {
                    wrk_err = Some(format!(
                        "curl failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ))
                }
                Err(e) => wrk_err = Some(format!("curl: {e}")),
            }
            say(&format!("wrk: {conns} keep-alive connections for {load_secs}s on http://10.88.0.2/plaintext"));
            match Command::new("wrk")
                .args([
                    "-t",
                    "1",
                    "-c",
                    &conns.to_string(),
                    "-d",
                    &format!("{load_secs}s"),
                    "--latency",
                ])
                .arg("http://10.88.0.2/plaintext")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            {
                Ok(c) => wrk = Some(c),
                Err(e) => wrk_err = Some(format!("wrk: {e}")),
            }
        }
    };
    let res = port_serve(&common, &net, port, per, cols, &stop, &mut tick);
    // Stop the client (by PID) whatever happened.
    if let Some(mut c) = wrk {
        if res.is_err() || stop.is_set() {
            let _ = c.kill();
        }
        if let Ok(out) = c.wait_with_output() {
            let text = String::from_utf8_lossy(&out.stdout);
            if !text.trim().is_empty() {
                say("--- wrk (kernel clients) says:");
                for l in text.lines() {
                    say(&format!("   {l}"));
                }
            }
        }
    }
    if let Some(e) = wrk_err {
        say(&format!("demo: {e}"));
    }
    res
}

fn port_serve(
    common: &Common,
    net: &NetArgs,
    port: TapPort,
    per: Vec<std::sync::Arc<bypass::app::http::HttpCounters>>,
    cols: [serve::AppCounter; 2],
    stop: &Stop,
    tick: &mut dyn FnMut(f64),
) -> Result<()> {
    serve::serve(
        Serve {
            command: "demo",
            common,
            net,
            app_counters: &cols,
            stop,
            tick,
            udp: None,
        },
        vec![port],
        |core| bypass::app::http::HttpApp::techempower(per[core].clone()),
    )
}
