//! A fault-injecting front on loopback for KMS tests: it answers the next requests with the
//! faults queued ([`Fault`]), and relays every other request byte for byte (its `Host` header
//! included, so SigV4 signatures still verify) to the real KMS emulator behind it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to answer instead of relaying.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// 400 `ThrottlingException` (JSON 1.1, code in `X-Amzn-ErrorType` too).
    Throttle,
    /// 503 with an HTML body, as a load balancer in trouble answers.
    Unavailable,
}

/// A running front.
pub struct FaultFront {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    seen: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultFront {
    /// Starts a front relaying to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let faults = Arc::new(Mutex::new(VecDeque::new()));
        let seen = Arc::new(AtomicU32::new(0));
        let (f, s) = (faults.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (f, s, up) = (f.clone(), s.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, f, s, up).await;
                });
            }
        });
        Self {
            url,
            faults,
            seen,
            task,
        }
    }

    /// Queues faults for the next requests.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.lock().unwrap().extend(faults);
    }

    /// Requests received so far.
    pub fn seen(&self) -> u32 {
        self.seen.load(Ordering::SeqCst)
    }
}

impl Drop for FaultFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes of body).
async fn read_request(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // One request per connection: ask the upstream to close after answering.
    let (head, body) = buf.split_at(header_end);
    let head = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    let mut req = out.into_bytes();
    req.extend_from_slice(body);
    Ok(req)
}

async fn serve(
    mut conn: TcpStream,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    seen: Arc<AtomicU32>,
    upstream: String,
) -> std::io::Result<()> {
    let req = read_request(&mut conn).await?;
    seen.fetch_add(1, Ordering::SeqCst);
    let fault = faults.lock().unwrap().pop_front();
    let answer = match fault {
        Some(Fault::Throttle) => {
            let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-errortype: ThrottlingException\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Some(Fault::Unavailable) => {
            let body = "<html><body>503 Service Unavailable</body></html>";
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        None => {
            let mut up = TcpStream::connect(&upstream).await?;
            up.write_all(&req).await?;
            let mut resp = Vec::new();
            up.read_to_end(&mut resp).await?;
            resp
        }
    };
    conn.write_all(&answer).await?;
    conn.shutdown().await
}
