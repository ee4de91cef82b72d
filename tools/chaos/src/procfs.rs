//! What `/proc` says about the server: open fds, mapped memfd segments, resident memory.

/// Open file descriptors of process `pid`.
pub(crate) fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Mappings of memfd segments (`/memfd:` in `/proc/<pid>/maps`) of process `pid`.
pub(crate) fn memfd_maps(pid: u32) -> usize {
    memfd_lines(&std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default())
}

fn memfd_lines(maps: &str) -> usize {
    maps.lines().filter(|l| l.contains("/memfd:")).count()
}

/// Resident memory of process `pid`, in bytes: total, anonymous, shared-memory pages, and the
/// pages of mappings whose path contains a given name (the named segment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    pub(crate) total: u64,
    pub(crate) anon: u64,
    pub(crate) shmem: u64,
    pub(crate) named: u64,
}

impl Rss {
    /// Everything but the named segment: what must return to where it was.
    pub(crate) fn without_named(&self) -> u64 {
        self.total.saturating_sub(self.named)
    }
}

/// The resident memory of process `pid`; `named` picks the mappings counted as `named`.
pub(crate) fn rss(pid: u32, named: &str) -> Rss {
    let mut r =
        parse_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default());
    r.named = smaps_rss_of(
        &std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default(),
        named,
    );
    r
}

/// Sum of the `Rss:` of the mappings in `smaps` whose path contains `name`.
fn smaps_rss_of(smaps: &str, name: &str) -> u64 {
    let mut total = 0;
    let mut counting = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            // A mapping's header: range, perms, offset, dev, inode, path.
            counting = line.contains(name);
        } else if counting && first == "Rss:" {
            total += words
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024);
        }
    }
    total
}

fn parse_rss(status: &str) -> Rss {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Rss {
        total: field("VmRSS"),
        anon: field("RssAnon"),
        shmem: field("RssShmem"),
        named: 0,
    }
}

/// CPU time (user and system) process `pid` has used so far.
pub(crate) fn cpu_time(pid: u32) -> std::time::Duration {
    let ticks =
        stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default());
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t.max(1) as u64);
    std::time::Duration::from_millis(ticks * 1000 / per_second)
}

/// `utime + stime` of a `/proc/<pid>/stat` line (the fields after the parenthesised name).
fn stat_ticks(stat: &str) -> u64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_maps_are_read() {
        let status = "Name:\tapi-server\nVmRSS:\t    6000 kB\nRssAnon:\t    2000 kB\n\
                      RssFile:\t    3000 kB\nRssShmem:\t    1000 kB\n";
        assert_eq!(
            parse_rss(status),
            Rss {
                total: 6000 * 1024,
                anon: 2000 * 1024,
                shmem: 1000 * 1024,
                named: 0,
            }
        );
        let maps = "7f00-7f10 rw-s 00000000 00:01 12 /memfd:vlib api client 0x81000001 (deleted)\n\
                    7f20-7f30 rw-s 00000000 00:01 13 /dev/shm/x-vpe-api\n\
                    7f40-7f50 r-xp 00000000 00:01 14 /usr/lib/libc.so.6\n";
        assert_eq!(memfd_lines(maps), 1);
        let smaps = "7f20-7f30 rw-s 00000000 00:01 13 /dev/shm/x-vpe-api\nSize: 64 kB\n\
                     Rss: 12 kB\n7f40-7f50 r-xp 00000000 00:01 14 /usr/lib/libc.so.6\n\
                     Rss: 100 kB\n";
        assert_eq!(smaps_rss_of(smaps, "x-vpe-api"), 12 * 1024);
        let stat = "42 (api server) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(stat_ticks(stat), 12);
        let me = std::process::id();
        assert!(fd_count(me) >= 3);
        assert!(rss(me, "no such mapping").total > 0);
    }
}
