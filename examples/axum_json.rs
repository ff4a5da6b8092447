//! An axum router with a JSON route, unmodified, on bypass's async
//! runtime: `GET /json` answers `{"message":"Hello, World!"}`. Port 80.
//!
//! ```text
//! sudo cargo run --example axum_json --features tokio -- tap:bp0 10.99.0.2/24
//! # another shell: sudo ip addr add 10.99.0.1/24 dev bp0 && ip link set bp0 up
//! #                curl http://10.99.0.2/json
//! ```

use axum::routing::get;
use axum::{Json, Router};
use bypass::rt::{spawn_local, Runtime, TcpListener};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

fn router() -> Router {
    Router::new()
        .route(
            "/json",
            get(|| async {
                Json(Message {
                    message: "Hello, World!",
                })
            }),
        )
        .route("/plaintext", get(|| async { "Hello, World!" }))
}

fn main() -> bypass::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(ip)) = (args.first(), args.get(1)) else {
        eprintln!("usage: axum_json PORTSPEC ADDR/PREFIX");
        std::process::exit(2);
    };
    Runtime::builder().port(port).ip(ip).run(|core| async move {
        let listener = match TcpListener::bind(([0, 0, 0, 0], 80)).await {
            Ok(l) => l,
            Err(e) => return eprintln!("bind: {e}"),
        };
        println!("core {}: listening on {}:80", core.index, core.ip);
        let app = router();
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                continue;
            };
            let svc = TowerToHyperService::new(app.clone());
            spawn_local(async move {
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    eprintln!("connection: {e}");
                }
            });
        }
    })
}
