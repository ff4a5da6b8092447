//! hyper's HTTP/1 client, unmodified, on bypass's async runtime: fetches
//! `URL` (`http://IP:PORT/PATH`) from a server on the far side of the port
//! and prints the body to stdout. Exits 1 on failure.
//!
//! ```text
//! # a kernel server: sudo ip addr add 10.99.0.1/24 dev bp0; python3 -m http.server -b 10.99.0.1 8000
//! sudo cargo run --example hyper_client --features tokio -- tap:bp0 10.99.0.2/24 http://10.99.0.1:8000/
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bypass::rt::{spawn_local, Runtime, TcpStream};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;

async fn fetch(url: &hyper::Uri) -> Result<Vec<u8>, String> {
    let host = url.host().ok_or("the URL has no host")?;
    let addr: SocketAddr = format!("{host}:{}", url.port_u16().unwrap_or(80))
        .parse()
        .map_err(|_| format!("`{host}` is not an IPv4 address (no DNS here)"))?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    spawn_local(async move {
        if let Err(e) = conn.await {
            eprintln!("connection: {e}");
        }
    });
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    eprintln!("{}", resp.status());
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(body.to_bytes().to_vec())
}

fn main() -> bypass::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(ip), Some(url)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: hyper_client PORTSPEC ADDR/PREFIX http://IP:PORT/PATH");
        std::process::exit(2);
    };
    let url: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("`{url}`: {e}");
            std::process::exit(2);
        }
    };
    let result = Arc::new(Mutex::new(Err("not run".to_string())));
    Runtime::builder().port(port).ip(ip).run(|_core| {
        let (url, result) = (url.clone(), result.clone());
        async move {
            let r = fetch(&url).await;
            *result.lock().unwrap_or_else(|e| e.into_inner()) = r;
        }
    })?;
    let r = std::mem::replace(
        &mut *result.lock().unwrap_or_else(|e| e.into_inner()),
        Err(String::new()),
    );
    match r {
        Ok(body) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&body);
            Ok(())
        }
        Err(e) => {
            eprintln!("hyper_client: {e}");
            std::process::exit(1);
        }
    }
}
