//! Per-thread CPU time, the measure of "CPU per side".
//!
//! Both sessions of a run execute on the harness thread one call at a time, so
//! the thread's CPU clock read around each call charges exactly that call.

use std::time::Duration;

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux kernel this project runs on; the call writes
    // only into `ts`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Run `f`, returning its result with the thread CPU time and wall time it took.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let wall = std::time::Instant::now();
    let c0 = thread_cpu();
    let r = f();
    let cpu = thread_cpu().saturating_sub(c0);
    (r, cpu, wall.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_clock_advances_under_work() {
        let (x, cpu, wall) = measure(|| (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_add(b * b)));
        assert!(x > 0);
        assert!(cpu > Duration::ZERO);
        assert!(wall >= Duration::ZERO);
    }
}
