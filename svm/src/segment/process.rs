//! Is the process that created a segment still alive? `kill(pid, 0)` plus `/proc` checks for
//! zombies and recycled pids.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// The start time of `pid` in clock ticks after boot (field 22 of `/proc/<pid>/stat`), and
/// whether it is a zombie or dead (state `Z` or `X`).
fn stat(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses, so parse from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    // After the state (field 3), the start time is field 22: 18 fields further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((start_time, matches!(state, "Z" | "X")))
}

/// This process's start time, to record beside its pid.
pub(crate) fn own_start_time() -> u64 {
    stat(std::process::id()).map_or(0, |(t, _)| t)
}

/// True unless `pid` is certainly gone: no such process, a zombie, or a different process that
/// recycled the pid (its start time differs from `start_time`, when that was recorded).
pub(crate) fn is_alive(pid: u32, start_time: u64) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    match stat(pid) {
        Some((_, true)) => false,
        Some((started, false)) => start_time == 0 || started == start_time,
        // Exists but /proc is not readable here: trust kill().
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        let me = std::process::id();
        let start = own_start_time();
        assert!(start > 0);
        assert!(is_alive(me, start));
        assert!(is_alive(me, 0));
        assert!(
            !is_alive(me, start + 1),
            "a recycled pid is not the creator"
        );
    }

    #[test]
    fn impossible_pids_are_dead() {
        assert!(!is_alive(0, 0));
        assert!(!is_alive(u32::MAX, 0));
        // Above the kernel's pid_max (at most 2^22).
        assert!(!is_alive(1 << 23, 0));
    }

    #[test]
    fn a_reaped_child_is_dead_and_a_zombie_too() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Until reaped the child is a zombie: kill(pid, 0) succeeds, but it is not alive.
        assert!(vppinfra::testing::wait_until(
            std::time::Duration::from_secs(5),
            || !is_alive(pid, 0)
        ));
        child.wait().unwrap();
        assert!(!is_alive(pid, 0));
    }
}
