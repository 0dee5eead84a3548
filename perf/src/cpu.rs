//! CPU time of this process and of the server under test, so every summary says whether the
//! load generator or the server was the busy one. Utilisation is CPU seconds over wall seconds
//! of the measured window: 100 % is one core fully busy.

use std::time::Instant;

/// User plus system CPU seconds used by this process (all threads).
pub fn own_cpu_s() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes a `rusage` into the pointer it is given, which points to a
    // zeroed, properly aligned `rusage` that lives for the duration of the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: `getrusage` returned 0, so it initialised the struct (and it was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// User plus system CPU seconds of another process, from `/proc/<pid>/stat`.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after its closing
    // parenthesis start at field 3 (state), so utime (14) and stime (15) are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: `sysconf` only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    Some((utime + stime) / ticks as f64)
}

/// A CPU-time reading of both processes at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    own: Option<f64>,
    server: Option<f64>,
}

impl Sample {
    pub fn take(server_pid: Option<u32>) -> Sample {
        Sample {
            at: Instant::now(),
            own: own_cpu_s(),
            server: server_pid.and_then(process_cpu_s),
        }
    }

    /// (client %, server %) from `self` to `later`.
    pub fn utilisation(&self, later: &Sample) -> (Option<f64>, Option<f64>) {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return (None, None);
        }
        let pct = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / wall * 100.0);
        (pct(self.own, later.own), pct(self.server, later.server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_shows_up_as_cpu_time_of_this_process_both_ways() {
        let before = Sample::take(Some(std::process::id()));
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = Sample::take(Some(std::process::id()));
        let (own, via_proc) = before.utilisation(&after);
        let own = own.expect("getrusage works on Linux");
        let via_proc = via_proc.expect("/proc/self/stat is readable");
        assert!(own > 50.0, "a spinning thread uses most of a core: {own}");
        // /proc counts in clock ticks (10 ms), so allow for rounding.
        assert!(via_proc > 30.0, "/proc agrees: {via_proc}");
    }
}
