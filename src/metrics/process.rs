//! The `process_*` metrics Prometheus users expect (client_rust has no
//! process collector): resident memory, CPU seconds, open and maximum file
//! descriptors, start time — read from /proc at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads /proc/self on every scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// A snapshot of this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().map(|t| t as f64).unwrap_or(100.0)
}

/// Reads the snapshot; fields that cannot be read are zero or absent.
pub fn read() -> ProcessStats {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let resident_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces and parentheses).
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let hz = ticks_per_second();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the name.
    let cpu_seconds = (field(11).unwrap_or(0) + field(12).unwrap_or(0)) as f64 / hz;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()));
    let start_time_seconds = match (boot_time, field(19)) {
        (Some(boot), Some(start_ticks)) => Some(boot as f64 + start_ticks as f64 / hz),
        _ => None,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
        l.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
    });
    ProcessStats { resident_bytes, cpu_seconds, open_fds, max_fds, start_time_seconds }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = read();
        let gauge = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64| -> Result<(), std::fmt::Error> {
            ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
        };
        gauge(&mut encoder, "process_resident_memory_bytes", "Resident memory size in bytes", s.resident_bytes as f64)?;
        ConstCounter::new(s.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        gauge(&mut encoder, "process_open_fds", "Number of open file descriptors", s.open_fds as f64)?;
        if let Some(max) = s.max_fds {
            gauge(&mut encoder, "process_max_fds", "Maximum number of open file descriptors", max as f64)?;
        }
        if let Some(start) = s.start_time_seconds {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                start,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::read();
        assert!(s.resident_bytes > 0);
        assert!(s.open_fds >= 3, "stdin, stdout, stderr at least: {s:?}");
        assert!(s.max_fds.is_some_and(|m| m >= s.open_fds));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0, "start {start} now {now}");
    }
}
