//! A load balancer in front of several nodes: Debian's nginx, round robin, no stickiness,
//! bodies streamed both ways (no request or response buffering, no size limit), the
//! client's address passed in `X-Forwarded-For`. The configuration is the one the README's
//! "Running several nodes" recommends; stopped (SIGTERM, then SIGKILL) when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx.
pub struct TestBalancer {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

/// The `http` block's content for a balancer on `listen` in front of `nodes`, with its
/// temporary files under `dir`.
pub fn config(listen: &str, nodes: &[SocketAddr], dir: &Path) -> String {
    let servers: String = nodes
        .iter()
        .map(|n| format!("        server {n} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    let temp = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"daemon off;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};
    upstream berth {{
{servers}        keepalive 32;
    }}
    server {{
        listen {listen};
        # Layers are large and streamed: no size limit, no buffering either way.
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout 900s;
        proxy_send_timeout 900s;
        # A node that refuses connections (stopped, restarting) is skipped.
        proxy_next_upstream error timeout;
        location / {{
            proxy_pass http://berth;
        }}
    }}
}}
"#,
        pid = temp("nginx.pid"),
        error_log = temp("error.log"),
        body = temp("body"),
        proxy = temp("proxy"),
        fastcgi = temp("fastcgi"),
        uwsgi = temp("uwsgi"),
        scgi = temp("scgi"),
    )
}

impl TestBalancer {
    /// Starts nginx on a free loopback port in front of `nodes`; waits until it accepts
    /// connections.
    pub fn start(nodes: &[SocketAddr]) -> TestBalancer {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("nginx is not installed: `apt-get install -y nginx` (scripts/test.sh does)")
            });
        let dir = tempfile::Builder::new()
            .prefix("berth-nginx-")
            .tempdir()
            .expect("a temporary directory");
        let port = crate::free_port();
        let file = dir.path().join("nginx.conf");
        std::fs::write(
            &file,
            config(&format!("127.0.0.1:{port}"), nodes, dir.path()),
        )
        .expect("write nginx.conf");
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let balancer = TestBalancer { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start listening: {}",
                balancer.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        balancer
    }

    /// `127.0.0.1:<port>`, as clients name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// nginx's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for TestBalancer {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers and exits; SIGKILL if it does not.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
