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

    /// Both readings must see a busy loop's CPU time. The loop runs until getrusage has seen
    /// 200 ms of CPU (not 200 ms of wall time: on a loaded machine a thread may get a small
    /// share of a core), so the check holds however busy the machine is.
    #[test]
    fn a_busy_loop_shows_up_as_cpu_time_of_this_process_both_ways() {
        let before = Sample::take(Some(std::process::id()));
        let own_before = before.own.expect("getrusage works on Linux");
        let started = Instant::now();
        let mut x = 0u64;
        loop {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            let spent = own_cpu_s().expect("getrusage works on Linux") - own_before;
            if spent >= 0.2 {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 120,
                "200 ms of CPU within two minutes"
            );
        }
        std::hint::black_box(x);
        let after = Sample::take(Some(std::process::id()));
        let own = after.own.expect("getrusage works on Linux") - own_before;
        let via_proc = after.server.expect("/proc/self/stat is readable")
            - before.server.expect("/proc/self/stat is readable");
        assert!(own >= 0.2, "getrusage saw the loop: {own}");
        // /proc counts in clock ticks (10 ms), so allow for rounding.
        assert!(via_proc >= 0.15, "/proc agrees: {via_proc}");
        let (own_pct, proc_pct) = before.utilisation(&after);
        assert!(own_pct.is_some_and(|p| p > 0.0));
        assert!(proc_pct.is_some_and(|p| p > 0.0));
    }
}
