//! HTTP server for /metrics and the landing page (hyper 1.x, HTTP/1.1 only).

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use slog::{debug, warn, Logger};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::{encode_text, TEXT_CONTENT_TYPE};

/// Maximum number of connections served at once; further connections wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// Maximum size of hyper's read buffer, which bounds the request head (hyper's minimum is 8 KiB).
const MAX_REQUEST_BUFFER_BYTES: usize = 16 * 1024;

/// Time a client has to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Maximum lifetime of one connection, so that idle keep-alive clients release their slot.
const CONNECTION_MAX_LIFETIME: Duration = Duration::from_secs(120);

/// Settings and state the request handler needs.
pub struct Site {
    pub telemetry_path: String,
    pub registry: Registry,
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, site: Arc<Site>, log: Logger) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                // Typically EMFILE; waiting lets other connections close.
                warn!(log, "failed to accept a connection"; "error" => %error);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let site = site.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, peer, site, log).await;
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    site: Arc<Site>,
    log: Logger,
) {
    let service = service_fn(move |request| {
        let site = site.clone();
        async move { Ok::<_, Infallible>(handle(&site, &request)) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BUFFER_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_MAX_LIFETIME, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => debug!(log, "HTTP connection failed"; "peer" => %peer, "error" => %error),
        Err(_) => debug!(log, "closed HTTP connection at its maximum lifetime"; "peer" => %peer),
    }
}

/// Builds the response for one request.
pub fn handle<B>(site: &Site, request: &Request<B>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let method = request.method();
    let is_known_path = path == "/" || path == site.telemetry_path;
    if !is_known_path {
        return plain_response(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response =
            plain_response(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let response = if path == "/" {
        landing_page(&site.telemetry_path)
    } else {
        metrics_response(&site.registry, accepts_gzip(request))
    };
    if method == Method::HEAD {
        return without_body(response);
    }
    response
}

fn metrics_response(registry: &Registry, gzip: bool) -> Response<Full<Bytes>> {
    let text = encode_text(registry);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)
        .header(header::VARY, "Accept-Encoding");
    let body = match gzip.then(|| gzip_bytes(&text)).flatten() {
        Some(compressed) => {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            compressed
        }
        None => text,
    };
    builder
        .header(header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| {
            plain_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 response build failed\n",
            )
        })
}

fn gzip_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::fast());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

/// Returns whether the Accept-Encoding headers list gzip with a non-zero q value.
fn accepts_gzip<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(is_gzip_accepted)
}

fn is_gzip_accepted(item: &str) -> bool {
    let mut parts = item.split(';');
    let coding = parts.next().unwrap_or("").trim();
    if !coding.eq_ignore_ascii_case("gzip") {
        return false;
    }
    for parameter in parts {
        if let Some((name, value)) = parameter.split_once('=') {
            if name.trim().eq_ignore_ascii_case("q") {
                return value.trim().parse::<f32>().is_ok_and(|q| q > 0.0);
            }
        }
    }
    true
}

fn landing_page(telemetry_path: &str) -> Response<Full<Bytes>> {
    let path = escape_html(telemetry_path);
    let html = format!(
        "<!DOCTYPE html>\n<html>\n<head><title>MXRC Monitor</title></head>\n<body>\n\
         <h1>MXRC Monitor</h1>\n<p>Prometheus exporter for the MXRC systemd units.</p>\n\
         <p><a href=\"{path}\">Metrics</a></p>\n</body>\n</html>\n"
    );
    let length = html.len();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_LENGTH, length)
        .body(Full::new(Bytes::from(html)))
        .unwrap_or_else(|_| {
            plain_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 response build failed\n",
            )
        })
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn plain_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

/// Keeps status and headers, including Content-Length, and drops the body for HEAD.
fn without_body(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (parts, _body) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_encoding(value: &str) -> Request<()> {
        Request::builder()
            .header(header::ACCEPT_ENCODING, value)
            .body(())
            .unwrap()
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&request_with_encoding("gzip")));
        assert!(accepts_gzip(&request_with_encoding("deflate, GZIP;q=0.5")));
        assert!(!accepts_gzip(&request_with_encoding("gzip;q=0")));
        assert!(!accepts_gzip(&request_with_encoding("identity")));
        assert!(!accepts_gzip(&request_with_encoding("x-gzip2")));
    }

    #[test]
    fn landing_page_escapes_path() {
        assert_eq!(escape_html("/m\"<x>"), "/m&quot;&lt;x&gt;");
    }
}
