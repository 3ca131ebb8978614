//! Per-thread CPU time, the measure of "CPU per side", and the regions the
//! instruction counts are taken over.
//!
//! Both sessions of a run execute on the harness thread one call at a time, so
//! the thread's CPU clock read around each call charges exactly that call.
//!
//! Under callgrind (`e2elab compare` runs its instruction worker with
//! `--toggle-collect`, `--zero-before` and `--dump-after` on
//! [`e2elab_counted_region`]), every [`measure`] of an instrumented thread
//! runs inside that one function, so callgrind counts exactly the measured
//! code and writes one dump per measure, numbered in order: [`last_region`]
//! names the dump of the latest one.

use std::cell::Cell;
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

thread_local! {
    /// Regions counted so far on this thread, when instrumented.
    static REGIONS: Cell<Option<u64>> = const { Cell::new(None) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Turn region counting on for this thread (the instruction worker).
pub fn instrument() {
    REGIONS.with(|r| r.set(Some(0)));
}

/// The number of the latest region of this thread (1-based, the callgrind
/// dump it went to), when instrumented.
pub fn last_region() -> Option<u64> {
    REGIONS.with(|r| r.get()).filter(|n| *n > 0)
}

/// The function callgrind counts: whatever runs inside it is one region.
#[allow(unsafe_code)]
#[no_mangle]
#[inline(never)]
pub fn e2elab_counted_region(f: &mut dyn FnMut()) {
    f();
    // Keep the call from being folded into its caller.
    std::hint::black_box(());
}

/// Run `f`, returning its result with the thread CPU time and wall time it took.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let instrumented = REGIONS.with(|r| r.get()).is_some() && DEPTH.with(|d| d.get()) == 0;
    let wall = std::time::Instant::now();
    let c0 = thread_cpu();
    let r = if instrumented {
        let mut f = Some(f);
        let mut out = None;
        DEPTH.with(|d| d.set(1));
        e2elab_counted_region(&mut || {
            if let Some(f) = f.take() {
                out = Some(f());
            }
        });
        DEPTH.with(|d| d.set(0));
        REGIONS.with(|r| r.set(r.get().map(|n| n + 1)));
        out
    } else {
        Some(f())
    };
    let cpu = thread_cpu().saturating_sub(c0);
    match r {
        Some(r) => (r, cpu, wall.elapsed()),
        // The region always runs its closure once.
        None => unreachable_region(),
    }
}

#[cold]
fn unreachable_region() -> ! {
    std::process::abort()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_clock_advances_under_work() {
        let (x, cpu, wall) = measure(|| (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_add(b * b)));
        assert!(x > 0);
        assert!(cpu > Duration::ZERO);
        assert!(wall >= Duration::ZERO);
        assert_eq!(last_region(), None);
    }

    #[test]
    fn regions_are_numbered_when_instrumented() {
        std::thread::spawn(|| {
            instrument();
            assert_eq!(last_region(), None);
            let (v, _, _) = measure(|| 41 + 1);
            assert_eq!(v, 42);
            assert_eq!(last_region(), Some(1));
            // A measure inside a measure is part of the outer region.
            measure(|| measure(|| ()));
            assert_eq!(last_region(), Some(2));
        })
        .join()
        .unwrap();
    }
}
