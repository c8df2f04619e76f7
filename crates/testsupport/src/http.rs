//! A tiny HTTP server on 127.0.0.1 for tests that download (kernel
//! catalogs, image bundles): one thread, one connection at a time, every
//! answer `Connection: close`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub struct Response {
    /// The `Content-Length` it declares (may differ from the body's length).
    pub content_length: u64,
    /// The bytes it sends after the headers.
    pub body: Vec<u8>,
}

impl Response {
    /// `200 OK` with `body`, its length declared truly.
    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        let body = body.into();
        Response {
            content_length: body.len() as u64,
            body,
        }
    }

    /// `200 OK` declaring `content_length` bytes, then sending `body` (a
    /// server that lies about its length).
    pub fn declaring(content_length: u64, body: impl Into<Vec<u8>>) -> Response {
        Response {
            content_length,
            body: body.into(),
        }
    }
}

/// Serve on 127.0.0.1 (a free port) until the test process ends: each
/// request's path goes to `answer`; `None` is a `404 Not Found`.
pub fn serve(answer: impl Fn(&str) -> Option<Response> + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let Ok(read_half) = s.try_clone() else {
                continue;
            };
            let mut r = BufReader::new(read_half);
            let mut request = String::new();
            let _ = r.read_line(&mut request);
            loop {
                let mut header = String::new();
                if r.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let _ = match answer(path) {
                Some(resp) => write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    resp.content_length
                )
                .and_then(|()| s.write_all(&resp.body)),
                None => s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    addr
}

/// [`serve`] a fixed set of files (path → body); any other path is a 404.
pub fn serve_files(files: Vec<(&'static str, Vec<u8>)>) -> SocketAddr {
    serve(move |path| {
        files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, body)| Response::ok(body.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_files_404s_the_rest_and_can_lie_about_length() {
        let addr = serve_files(vec![("/a", b"hello".to_vec())]);
        let a = get(addr, "/a");
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("Content-Length: 5\r\n"), "{a}");
        assert!(a.ends_with("\r\n\r\nhello"), "{a}");
        assert!(get(addr, "/b").starts_with("HTTP/1.1 404 Not Found\r\n"));

        let liar = serve(|_| Some(Response::declaring(1 << 30, "xx")));
        let l = get(liar, "/any");
        assert!(l.contains("Content-Length: 1073741824\r\n"), "{l}");
        assert!(l.ends_with("\r\n\r\nxx"), "{l}");
    }
}
