//! `bench http`: `GET /plaintext`, pipelined: our HTTP server against
//! nginx (one worker), both driven by our load generator.

use bypass::Result;

use super::kernel::{Baseline, ServerProc};
use super::ours::ServerKind;
use super::report::{emit, machine, plot, print_points, Point};
use super::rr::ours_side;
use super::{load_args, run_baselines, run_ours_at, TcpBenchArgs};
use crate::cli::loadgen::ModeArg;

pub fn http(a: TcpBenchArgs) -> Result<()> {
    a.only_ipv4("http")?;
    let tcp = a.tcp_opts(4096)?;
    let pipeline = a.pipeline.unwrap_or(16);
    a.say(&format!(
        "http: GET /plaintext, pipeline {pipeline}, same load generator (bypass loadgen --mode http) for both; machine: {}.\n\
         ours: `bypass http`'s server (HttpApp) on the userspace stack (core {}) <- loadgen on the userspace stack (core {}), mem wire, one process.\n\
         nginx: nginx-light, 1 worker process (master_process off), pinned to core {}, 127.0.0.1, `return 200 \"Hello, World!\"` <- \
         the same loadgen over kernel sockets (core {}), a separate process, under each client baseline ({}).",
        machine(), a.server_core, a.client_core, a.server_core, a.client_core,
        a.baselines.iter().map(|b| b.label()).collect::<Vec<_>>().join(", ")
    ));
    let mut pts = Vec::new();
    for n in a.points(&[64])? {
        let la = load_args(ModeArg::Http, n, a.size, pipeline);
        let ours = run_ours_at(&a, None, ServerKind::Http, &la, tcp)?;
        let (baselines, not_run) = run_baselines(
            &a,
            n,
            &la,
            |_| ServerProc::nginx(a.server_core),
            nginx_label,
        )?;
        pts.push(Point::new(n, ours_side(ours), baselines, not_run));
    }
    print_points(
        &a,
        "HTTP requests per second (ours vs nginx)",
        "req/s",
        &pts,
    );
    if let Some(p) = pts.iter().find(|p| p.connections == 64).or(pts.last()) {
        a.say(&match p.vs_best_kernel {
            Some(r) => format!(
                "target http pipelined >= 10x nginx (best client: {}): {r:.2}x ({})",
                p.best_kernel.as_deref().unwrap_or("-"),
                if r >= 10.0 { "met" } else { "MISSED" }
            ),
            None => "target http pipelined >= 10x nginx: no valid ratio".into(),
        });
    }
    plot(
        &a,
        "http: requests/s (GET /plaintext, pipelined)",
        "requests/s",
        &pts,
    )?;
    emit(
        &a,
        "http",
        serde_json::json!({ "points": pts, "pipeline": pipeline }),
    );
    Ok(())
}

/// The kernel side of `http`: nginx, loaded by our client under `b`.
fn nginx_label(b: Baseline) -> String {
    format!("nginx<-{}", b.label())
}
