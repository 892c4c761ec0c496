//! What a run costs the machine: CPU time of this process and of a spawned server, read from
//! `/proc/<pid>/stat` when the clock starts and stops ([`Usage`]), and a server's resident
//! memory from `/proc/<pid>/status`. The text of those files is parsed by pure functions.

use std::fs;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::args::{BenchArgs, Proto};
use super::report::{CpuTime, Latency, LoadReport, ServerUsage};
use super::spawn::SpawnedServer;

/// CPU time of this process and of a spawned server when the clock starts, to take the
/// difference when it stops.
pub struct Usage {
    client: Option<CpuTime>,
    server: Option<CpuTime>,
}

impl Usage {
    pub fn before(server: Option<&SpawnedServer>) -> Usage {
        Usage {
            server: server.and_then(|s| cpu_time(&s.pid())),
            client: cpu_time("self"),
        }
    }

    /// The report of the load run `args` asked for, which took `elapsed`: with this process's
    /// CPU time since [`Usage::before`], the server's CPU time and memory, and the latency of
    /// the `latencies` samples (sorted only once the CPU times are read, so not counted).
    pub fn report(
        &self,
        server: Option<&SpawnedServer>,
        args: &BenchArgs,
        elapsed: Duration,
        latencies: Option<&mut [Duration]>,
    ) -> LoadReport {
        let client_cpu = self
            .client
            .zip(cpu_time("self"))
            .map(|(before, after)| after.since(before).total());
        let server = server.and_then(|s| {
            let cpu = self.server.zip(cpu_time(&s.pid()))?;
            let memory = memory(s)?;
            Some(ServerUsage {
                cpu: cpu.1.since(cpu.0),
                rss_kib: memory.rss_kib,
                hwm_kib: memory.hwm_kib,
            })
        });
        LoadReport {
            proto: args.proto,
            grpc_mode: (args.proto == Proto::Grpc).then_some(args.grpc_mode),
            connections: args.connections as usize,
            records: args.records,
            size: args.size as usize,
            batch: args.batch as usize,
            // Only native sends within a window: the other protocols have no acks to wait for.
            window: if args.proto == Proto::Native {
                args.window
            } else {
                0
            },
            elapsed,
            latency: latencies.map(Latency::from_samples),
            client_cpu,
            server,
            slowloris: None,
            handshakes: None,
        }
    }
}

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// The resident memory of a server bench started.
pub fn memory(server: &SpawnedServer) -> Option<Memory> {
    let status = fs::read_to_string(format!("/proc/{}/status", server.pid())).ok()?;
    Some(Memory {
        rss_kib: parse_status_kib(&status, "VmRSS")?,
        hwm_kib: parse_status_kib(&status, "VmHWM")?,
    })
}

/// CPU time of process `pid` (or `self`), user and system.
fn cpu_time(pid: &str) -> Option<CpuTime> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, system) = parse_stat_ticks(&stat)?;
    let seconds = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
    Some(CpuTime {
        user: seconds(user),
        system: seconds(system),
    })
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times: `getconf CLK_TCK`, asked once
/// (reading it directly would need `sysconf`, that is unsafe code), else Linux's usual 100.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// utime and stime (fields 14 and 15, in clock ticks) from the text of `/proc/<pid>/stat`. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`.
fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3, so field 14 is the 12th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// A `kB` value such as `VmRSS:   12345 kB` from the text of `/proc/<pid>/status`.
fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_cpu_ticks() {
        // The command name holds a space and a parenthesis; utime = 150, stime = 25.
        let stat = "4242 (log mill) S 1 4242 4242 0 -1 4194560 2100 0 0 0 150 25 0 0 20 0 5 0 \
                    123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 \
                    0 0 0 0 0";
        assert_eq!(parse_stat_ticks(stat), Some((150, 25)));
        assert_eq!(parse_stat_ticks("4242 (x) S 1"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn proc_status_values() {
        let status = "Name:\tlogmill\nVmHWM:\t   60000 kB\nVmRSS:\t   45000 kB\nThreads:\t4\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(45000));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(60000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        if cfg!(target_os = "linux") {
            assert!(cpu_time("self").is_some());
        }
    }
}
