//! Connection limits over real TCP connections: a header trickled slowly is cut at the header
//! timeout, an idle connection at the idle timeout, connections past the bound wait while the
//! open ones are served, and shutdown does not wait for connections that owe nothing.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Reads one HTTP/1.1 response (a header and a `Content-Length` body) and returns it whole.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
                .map_or(0, |value| value.trim().parse::<usize>().unwrap());
            if received.len() >= end + 4 + length {
                return text;
            }
        }
        let read = stream.read(&mut chunk).await.expect("read a response");
        assert!(read > 0, "the connection closed before a whole response: {text:?}");
        received.extend_from_slice(&chunk[..read]);
    }
}

async fn get_healthz(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: minipay\r\n\r\n").await.unwrap();
    let response = read_response(stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// Whether the server closed `stream` (end of file or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected data from the server"),
        Err(_) => false,
    }
}

const TIMEOUTS: [(&str, &str); 2] = [("MINIPAY_HEADER_READ_TIMEOUT_MS", "600"), ("MINIPAY_IDLE_TIMEOUT_MS", "1200")];

#[tokio::test]
async fn a_header_sent_a_line_at_a_time_is_cut_at_the_header_timeout() {
    let app = spawn_app().await;
    let server = spawn_server_process_with(&app, &TIMEOUTS).await;
    let mut stream = TcpStream::connect(address(&server.base)).await.unwrap();
    let started = Instant::now();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // A line every 100 ms keeps bytes coming, but the header never ends.
    let closed_after = loop {
        assert!(started.elapsed() < Duration::from_secs(5), "the slow header was never cut");
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err()
            || closed_within(&mut stream, Duration::from_millis(100)).await
        {
            break started.elapsed();
        }
    };
    assert!(closed_after >= Duration::from_millis(550), "cut too early: {closed_after:?}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_idle_timeout_before_and_between_requests() {
    let app = spawn_app().await;
    let server = spawn_server_process_with(&app, &TIMEOUTS).await;
    // Never a byte.
    let mut silent = TcpStream::connect(address(&server.base)).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await, "a silent connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(1_100),
        "closed before the idle timeout: {:?}",
        started.elapsed()
    );
    // Kept alive after a request, then nothing.
    let mut kept = TcpStream::connect(address(&server.base)).await.unwrap();
    get_healthz(&mut kept).await;
    let answered = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(5)).await, "an idle kept-alive connection stayed open");
    assert!(
        answered.elapsed() >= Duration::from_millis(1_100),
        "closed before the idle timeout: {:?}",
        answered.elapsed()
    );
}

#[tokio::test]
async fn connections_past_the_bound_wait_while_the_open_ones_are_served() {
    let app = spawn_app().await;
    let server = spawn_server_process_with(&app, &[("MINIPAY_MAX_CONNECTIONS", "3")]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(address(&server.base)).await.unwrap();
        get_healthz(&mut stream).await;
        open.push(stream);
    }
    // A fourth gets through TCP (the listen backlog) but is not served ...
    let mut waiting = TcpStream::connect(address(&server.base)).await.unwrap();
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nHost: minipay\r\n\r\n").await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), read_response(&mut waiting)).await;
    assert!(early.is_err(), "a connection past the bound was served: {early:?}");
    // ... while the open ones are.
    for stream in &mut open {
        get_healthz(stream).await;
    }
    // One closes: the fourth is served.
    drop(open.pop());
    let response = tokio::time::timeout(Duration::from_secs(5), read_response(&mut waiting))
        .await
        .expect("the waiting connection was served once another closed");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_connections_that_never_sent_a_request() {
    let app = spawn_app().await;
    let address = address(&app.base);
    let mut idle = TcpStream::connect(&address).await.unwrap();
    let mut half = TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut served = TcpStream::connect(&address).await.unwrap();
    get_healthz(&mut served).await;
    tokio::time::timeout(Duration::from_secs(5), app.stop()).await.expect("the server stopped");
    for stream in [&mut idle, &mut half, &mut served] {
        assert!(closed_within(stream, Duration::from_secs(1)).await, "a connection outlived the server");
    }
}
