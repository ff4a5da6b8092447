//! HTTPS with tokio-rustls (ring provider), unmodified, on bypass's async
//! runtime. A certificate for `ADDR` is generated at start with rcgen and
//! written (PEM) to `CERT_FILE`, so a client can check it:
//! `curl --cacert CERT_FILE https://ADDR/plaintext`. Port 443.
//!
//! ```text
//! sudo cargo run --example https_server --features tokio -- tap:bp0 10.99.0.2/24 /tmp/bp.pem
//! # another shell: sudo ip addr add 10.99.0.1/24 dev bp0 && ip link set bp0 up
//! #                curl --cacert /tmp/bp.pem https://10.99.0.2/plaintext
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bypass::rt::{spawn_local, Runtime, TcpListener};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

/// A self-signed certificate naming `ip`, written to `path`; the TLS
/// server settings that present it.
fn tls_config(ip: &str, path: &str) -> Result<rustls::ServerConfig, String> {
    let ck = rcgen::generate_simple_self_signed(vec![ip.to_string()])
        .map_err(|e| format!("certificate: {e}"))?;
    std::fs::write(path, ck.cert.pem()).map_err(|e| format!("write {path}: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn main() -> bypass::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(ip), Some(cert)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: https_server PORTSPEC ADDR/PREFIX CERT_FILE");
        std::process::exit(2);
    };
    let addr = ip.split('/').next().unwrap_or(ip);
    let cfg = match tls_config(addr, cert) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    Runtime::builder().port(port).ip(ip).run(|core| {
        let acceptor = TlsAcceptor::from(cfg.clone());
        async move {
            let listener = match TcpListener::bind(([0, 0, 0, 0], 443)).await {
                Ok(l) => l,
                Err(e) => return eprintln!("bind: {e}"),
            };
            println!("core {}: listening on {}:443", core.index, core.ip);
            loop {
                let Ok((stream, _peer)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                spawn_local(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(t) => t,
                        Err(e) => return eprintln!("TLS handshake: {e}"),
                    };
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service_fn(hello));
                    if let Err(e) = conn.await {
                        eprintln!("connection: {e}");
                    }
                });
            }
        }
    })
}
