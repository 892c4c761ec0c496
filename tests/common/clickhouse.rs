//! A real ClickHouse server for the forwarding tests: started in the foreground from a config
//! written into a temporary directory (free ports, every path under that directory, Debian's
//! 18.16 XML format, `<yandex>`), waited on through `/ping` with a deadline, and stopped by pid
//! (SIGTERM, then SIGKILL). A test can also SIGKILL it mid-stream and start it again on the
//! same ports and data, which is what "the sink crashed" means.
//!
//! Two users: `default` (no password, for the test's own queries) and `writer` (password
//! [`PASSWORD`]), so a wrong password can be tried against a user that has one.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for};

/// The password of the `writer` user.
pub const PASSWORD: &str = "w-s3cret";

/// How long ClickHouse may take to answer `/ping` after it was started (18.16 loads its
/// dictionaries and system tables first; a busy 2-core machine makes it seconds).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running `clickhouse-server`.
pub struct ClickHouse {
    child: Option<Child>,
    dir: PathBuf,
    http_port: u16,
}

impl ClickHouse {
    /// Writes the config into `dir` and starts the server; returns once `/ping` answers.
    pub fn start(program: &Path, dir: &Path) -> ClickHouse {
        let http_port = free_port();
        let tcp_port = free_port();
        write_config(dir, http_port, tcp_port);
        let mut ch = ClickHouse {
            child: None,
            dir: dir.to_path_buf(),
            http_port,
        };
        ch.spawn(program);
        ch
    }

    fn spawn(&mut self, program: &Path) {
        let log = std::fs::File::create(self.dir.join("server.out")).expect("server.out");
        let child = Command::new(program)
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("cannot start clickhouse-server");
        self.child = Some(child);
        wait_for("clickhouse /ping", START_DEADLINE, || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let out = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
                panic!("clickhouse-server exited ({status}):\n{out}");
            }
            self.get("/ping").filter(|(code, _)| *code == 200).map(drop)
        });
    }

    /// `host:port` of the HTTP interface.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// SIGKILL (a crash), then waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            child.wait().expect("wait for clickhouse-server");
        }
    }

    /// Starts it again on the same ports and data (after [`ClickHouse::kill`]).
    pub fn restart(&mut self, program: &Path) {
        self.kill();
        self.spawn(program);
    }

    /// SIGTERM, then SIGKILL if it has not exited within the deadline.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, "TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::park_timeout(Duration::from_millis(50));
                }
                _ => break,
            }
        }
        signal(&child, "KILL");
        if let Err(e) = child.wait() {
            eprintln!("could not wait for clickhouse-server: {e}");
        }
    }

    /// Runs `sql` as the `default` user; the body, or a panic with ClickHouse's message.
    pub fn query(&self, sql: &str) -> String {
        match self.post(sql) {
            Some((200, body)) => body,
            other => panic!("clickhouse query {sql:?} failed: {other:?}"),
        }
    }

    /// Runs `sql`; `(status, body)`, or `None` when the server cannot be reached.
    pub fn post(&self, sql: &str) -> Option<(u16, String)> {
        request(&self.http_addr(), "POST", "/", sql.as_bytes())
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        request(&self.http_addr(), "GET", path, b"")
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("kill -{name} {} failed", child.id());
    }
}

/// One HTTP/1.0 request (the server closes after answering, so the body ends at EOF).
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn write_config(dir: &Path, http_port: u16, tcp_port: u16) {
    let d = dir.display();
    let config = format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
</yandex>
"#
    );
    let users = format!(
        r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>
    <writer><password>{PASSWORD}</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></writer>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#
    );
    std::fs::write(dir.join("config.xml"), config).expect("write config.xml");
    std::fs::write(dir.join("users.xml"), users).expect("write users.xml");
}
