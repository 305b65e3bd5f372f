//! Memory (VmRSS) and CPU time (utime + stime, and stime alone: the
//! kernel's share) of processes, from /proc.

use serde::Serialize;

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    pub rss_kib: u64,
    pub cpu_secs: f64,
    /// The part of `cpu_secs` spent in the kernel (stime): on loopback a
    /// socket write also runs the receiving side's TCP stack.
    pub system_cpu_secs: f64,
}

/// RSS and CPU of `pid`, or `None` when it is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, system) = cpu_of_stat(&stat)?;
    Some(Sample {
        rss_kib,
        cpu_secs: user + system,
        system_cpu_secs: system,
    })
}

/// (user, system) CPU seconds.
fn cpu_of_stat(stat: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / TICKS_PER_SEC, stime / TICKS_PER_SEC))
}

/// The sum over `pids` (those still alive).
pub fn total(pids: &[u32]) -> Sample {
    pids.iter()
        .filter_map(|&pid| sample(pid))
        .fold(Sample::default(), |a, s| Sample {
            rss_kib: a.rss_kib + s.rss_kib,
            cpu_secs: a.cpu_secs + s.cpu_secs,
            system_cpu_secs: a.system_cpu_secs + s.system_cpu_secs,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let s = sample(std::process::id()).expect("own /proc");
        assert!(s.rss_kib > 0);
        assert!(s.cpu_secs >= s.system_cpu_secs && s.system_cpu_secs >= 0.0);
    }

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let stat = "1 (a b) S 0 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_of_stat(stat), Some((2.5, 0.5)));
    }
}
