//! hyper 1.x, unmodified, on bypass's async runtime: `GET /plaintext`
//! answers `Hello, World!`. Listens on port 80 of `ADDR`.
//!
//! ```text
//! sudo cargo run --example hyper_server --features tokio -- tap:bp0 10.99.0.2/24 [CORES]
//! # another shell: sudo ip addr add 10.99.0.1/24 dev bp0 && ip link set bp0 up
//! #                curl http://10.99.0.2/plaintext
//! ```

use std::convert::Infallible;

use bypass::rt::{spawn_local, Runtime, TcpListener};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

async fn plaintext(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = if req.uri().path() == "/plaintext" {
        Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"Hello, World!")))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found\n")))
    };
    Ok(resp.expect("a valid static response"))
}

fn main() -> bypass::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(ip)) = (args.first(), args.get(1)) else {
        eprintln!("usage: hyper_server PORTSPEC ADDR/PREFIX [CORES]");
        std::process::exit(2);
    };
    let cores = match args.get(2) {
        Some(c) => bypass::runtime::parse_core_list(c)?,
        None => vec![bypass::runtime::available_cores()[0]],
    };
    Runtime::builder()
        .port(port)
        .ip(ip)
        .cores(&cores)
        .run(|core| async move {
            let listener = match TcpListener::bind(([0, 0, 0, 0], 80)).await {
                Ok(l) => l,
                Err(e) => return eprintln!("core {}: bind: {e}", core.index),
            };
            println!("core {}: listening on {}:80", core.index, core.ip);
            loop {
                let Ok((stream, _peer)) = listener.accept().await else {
                    continue;
                };
                spawn_local(async move {
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(plaintext));
                    if let Err(e) = conn.await {
                        eprintln!("connection: {e}");
                    }
                });
            }
        })
}
