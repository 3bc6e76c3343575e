//! The balancer spreads requests over its nodes (round robin, no stickiness) and skips a
//! node that is down.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use berth_testkit::nginx::TestBalancer;

/// A node that answers every request with its `name`.
fn node(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, name));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, name: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            request.drain(..end + 4);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                name.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// `GET /` through the balancer at `host`; the body of the answer.
fn get(host: &str) -> String {
    let mut stream = TcpStream::connect(host).unwrap();
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    body.to_owned()
}

#[test]
fn requests_go_round_robin_and_skip_a_node_that_is_down() {
    let down = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let balancer = TestBalancer::start(&[node("a"), node("b"), down]);
    let answers: Vec<String> = (0..12).map(|_| get(&balancer.host())).collect();
    let a = answers.iter().filter(|n| *n == "a").count();
    let b = answers.iter().filter(|n| *n == "b").count();
    assert_eq!(
        a + b,
        12,
        "every request answered, the node that is down skipped: {answers:?}"
    );
    assert!(a >= 4 && b >= 4, "no stickiness: {answers:?}");
}
