//! Slow and stuck clients against the real server binary: clients that ask and never take the
//! answers. The server's memory stays bounded while they sit there, it does not spin on them,
//! the other clients are served as before, and each stuck client is dropped after a documented
//! bound, with the reason in the log:
//!
//! - a socket client that never reads: its output is paused at half `--max-output` and it is
//!   dropped once its output has not moved for `--stall-timeout`;
//! - a shared-memory client that never drains its reply queue, asking for many small replies,
//!   and for many dumps of a few thousand details each: it is no longer read once its backlog passes 64 KiB, and is dropped
//!   once none of its waiting replies has been delivered for `--stall-timeout`.
//!
//! The memory bound checked is the growth of the server's resident set while the client is
//! stuck, against what the client asked for: far more reply bytes than the bound.

mod support;

use std::time::{Duration, Instant};

use example_plugin::msgs as ex;
use support::{ServerProc, cli};
use vlibapi::msgs::{memclnt, vlib_api};
use vlibapi::wire::Message;
use vlibsocket::client::SocketClient;
use vppinfra::testing;

fn ping(c: &mut SocketClient) -> memclnt::ControlPingReply {
    c.request(&memclnt::ControlPing::default())
        .expect("control_ping")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

fn registrations(c: &mut SocketClient) -> usize {
    c.dump::<_, vlib_api::ApiClientDetails>(&vlib_api::ApiClientDump::default())
        .unwrap()
        .len()
}

/// Median round trip of `n` synchronous pings.
fn median_rtt(c: &mut SocketClient, n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            ping(c);
            t.elapsed()
        })
        .collect();
    v.sort_unstable();
    v[n / 2]
}

/// The resident set's largest value while `busy` runs, sampled every few milliseconds.
fn peak_rss_during(pid: u32, busy: impl FnOnce()) -> u64 {
    let stop = vppinfra::sync::AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !stop.load(vppinfra::sync::Ordering::Relaxed) {
                peak = peak.max(status_bytes(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        busy();
        stop.store(true, vppinfra::sync::Ordering::Relaxed);
        sampler.join().unwrap()
    })
}

/// What a stuck-client scenario measured.
struct Figures {
    rss_before: u64,
    rss_peak: u64,
    asked_bytes: u64,
    cpu_while_stuck: Duration,
    cpu_window: Duration,
    rtt_before: Duration,
    rtt_stuck: Duration,
    dropped_after: Duration,
}

impl Figures {
    fn print(&self, what: &str) {
        eprintln!(
            "{what}: asked for {:.1} MiB of replies; server RSS {:.1} MiB -> peak {:.1} MiB \
             (+{:.1} MiB); server CPU {:?} in {:?} while it was stuck; good client median RTT \
             {:?} before, {:?} while stuck; dropped {:?} after it got stuck",
            mib(self.asked_bytes),
            mib(self.rss_before),
            mib(self.rss_peak),
            mib(self.rss_peak.saturating_sub(self.rss_before)),
            self.cpu_while_stuck,
            self.cpu_window,
            self.rtt_before,
            self.rtt_stuck,
            self.dropped_after,
        );
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// The part common to every scenario: a good client measures before and while `stuck` runs
/// (it must leave a client stuck and return what it asked for, in reply bytes), the server's
/// CPU and memory are watched, and the stuck client must be dropped with `reason` in the log.
fn stuck_scenario(
    server: &ServerProc,
    name: &str,
    reason: &str,
    stuck: impl FnOnce() -> (u64, Box<dyn std::any::Any>),
    while_stuck: impl FnOnce(&mut SocketClient),
) -> Figures {
    let pid = server.pid();
    let mut good = server.client("good");
    let rtt_before = median_rtt(&mut good, 500);
    let regs_before = registrations(&mut good);
    let maps_before = support::memfd_maps(pid);
    let fds_before = support::fd_count(pid);
    let rss_before = status_bytes(pid, "VmRSS");
    let mut figures = None;
    let rss_peak = peak_rss_during(pid, || {
        let stuck_at = Instant::now();
        let (asked_bytes, keep) = stuck();
        // Let the server take what it will, then watch it idle with a stuck client.
        std::thread::sleep(Duration::from_millis(200));
        let cpu0 = cpu_time(pid);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let cpu_while_stuck = cpu_time(pid).saturating_sub(cpu0);
        let cpu_window = t0.elapsed();
        let rtt_stuck = median_rtt(&mut good, 500);
        while_stuck(&mut good);
        let dropped = testing::wait_until(Duration::from_secs(15), || {
            server
                .log_text()
                .lines()
                .any(|l| l.contains(name) && l.contains(reason))
        });
        let dropped_after = stuck_at.elapsed();
        assert!(
            dropped,
            "{name} was not dropped for `{reason}`:\n{}",
            server.log_text()
        );
        drop(keep);
        figures = Some(Figures {
            rss_before,
            rss_peak: 0,
            asked_bytes,
            cpu_while_stuck,
            cpu_window,
            rtt_before,
            rtt_stuck,
            dropped_after,
        });
    });
    let mut figures = figures.expect("the scenario ran");
    figures.rss_peak = rss_peak.max(status_bytes(pid, "VmRSS"));
    // Still correct, and nothing of the stuck client is left once it is gone.
    assert_eq!(ping(&mut good).vpe_pid, pid);
    let settled = testing::wait_until(Duration::from_secs(5), || {
        registrations(&mut good) == regs_before
            && support::memfd_maps(pid) == maps_before
            && support::fd_count(pid) <= fds_before
    });
    assert!(
        settled,
        "left behind: {} registrations (before {regs_before}), {} memfd maps (before \
         {maps_before}), {} fds (before {fds_before}):\n{}",
        registrations(&mut good),
        support::memfd_maps(pid),
        support::fd_count(pid),
        cli(&mut good, "show api clients")
    );
    figures
}

/// Every check on what a scenario measured. `allowance` is the memory growth allowed: the
/// transport's bound for one client plus the allocator's slack; with `many_bytes`, the client
/// must have asked for far more than that.
fn check(figures: &Figures, what: &str, allowance: u64, many_bytes: bool) {
    figures.print(what);
    let grown = figures.rss_peak.saturating_sub(figures.rss_before);
    assert!(
        grown <= allowance,
        "{what}: the server grew by {:.1} MiB (allowed {:.1} MiB) for a client that asked for \
         {:.1} MiB",
        mib(grown),
        mib(allowance),
        mib(figures.asked_bytes)
    );
    assert!(
        !many_bytes || figures.asked_bytes > 4 * allowance,
        "{what}: the stuck client must ask for far more than the bound"
    );
    // A spinning loop would use the whole window; a waiting one, a few percent of it.
    assert!(
        figures.cpu_while_stuck * 4 < figures.cpu_window,
        "{what}: the server used {:?} of CPU in {:?} with nothing to do but wait",
        figures.cpu_while_stuck,
        figures.cpu_window
    );
    // Not interleaved (a stuck client cannot be unstuck and stuck again), so the machine's load
    // may differ between the two medians; the allowance absorbs that, while a server that
    // waited on the stuck client in any way would add milliseconds.
    assert!(
        figures.rtt_stuck <= figures.rtt_before * 2 + Duration::from_micros(200),
        "{what}: the good client's median round trip went from {:?} to {:?}",
        figures.rtt_before,
        figures.rtt_stuck
    );
}

/// Bytes of one `get_api_json_reply` (the whole API as JSON).
fn api_json_len(c: &mut SocketClient) -> u64 {
    let r: memclnt::GetApiJsonReply = c.request(&memclnt::GetApiJson::default()).unwrap();
    r.json.len() as u64
}

#[test]
fn mp_stuck_socket_client_that_never_reads() {
    let server = ServerProc::start(
        "mp_stuck_socket",
        &[
            "--max-output",
            "1m",
            "--stall-timeout",
            "1",
            "--log-level",
            "warn",
        ],
    );
    let per_reply = api_json_len(&mut server.client("measure"));
    let n = 20_000u64;
    let figures = stuck_scenario(
        &server,
        "stuck-socket",
        "stopped reading",
        || {
            let mut stuck = server.client("stuck-socket");
            for _ in 0..n {
                stuck.send(&memclnt::GetApiJson::default()).unwrap();
            }
            // The server stops reading it, so this write blocks until the client is dropped.
            let writer = std::thread::spawn(move || {
                let _ = stuck.flush();
                stuck
            });
            (n * per_reply, Box::new(writer))
        },
        |_| {},
    );
    // The output bound, the input it stopped reading, and the allocator's slack.
    check(&figures, "socket client that never reads", 8 << 20, true);
}

#[test]
fn mp_stuck_shm_client_that_never_drains_small_replies() {
    let server = ServerProc::start(
        "mp_stuck_shm_small",
        &["--stall-timeout", "1", "--log-level", "warn"],
    );
    let figures = stuck_scenario(
        &server,
        "stuck-shm-small",
        "kept the server waiting",
        || {
            let mut stuck = server.client("stuck-shm-small");
            stuck.pivot(1 << 20, None).unwrap();
            // More than its reply queue, the batch held back and the backlog's pause threshold
            // take together, but no more than its request queue can hold on top: every send
            // is handed over at once, none is answered.
            let n = 3500u64;
            for _ in 0..n {
                stuck.send(&memclnt::ControlPing::default()).unwrap();
            }
            (n * 20, Box::new(stuck))
        },
        |good| {
            // The replies it was sent are bounded in number: those in its queue, those held
            // back, and a backlog that stopped at the pause threshold.
            let text = cli(good, "show api clients");
            let line = text
                .lines()
                .find(|l| l.contains("stuck-shm-small"))
                .unwrap_or_else(|| panic!("not listed:\n{text}"));
            let cols: Vec<&str> = line.split_whitespace().collect();
            let backlog: usize = cols[cols.len() - 2].parse().expect("backlog column");
            let most = vlibmemory::server::BACKLOG_PAUSE
                / (20 + vlibmemory::server::BACKLOG_ENTRY_COST)
                + 1;
            assert!(backlog <= most, "{backlog} replies in the backlog:\n{text}");
        },
    );
    // Replies are tiny: the bound that matters is on their number, checked above.
    check(
        &figures,
        "shared-memory client that never drains (small replies)",
        4 << 20,
        false,
    )
}

#[test]
fn mp_stuck_shm_client_that_never_drains_large_replies() {
    let server = ServerProc::start(
        "mp_stuck_shm_large",
        &["--stall-timeout", "1", "--log-level", "warn"],
    );
    // Things to dump: each dump request is answered with this many details.
    let things = 2000u64;
    let mut setup = server.client("setup");
    for i in 0..things {
        let _: ex::SwThingAddDelReply = setup
            .request(&ex::SwThingAddDel {
                is_add: true,
                name: format!("{i:063}"),
                count: 1,
                ..Default::default()
            })
            .unwrap();
    }
    let details = ex::SwThingDetails {
        name: format!("{:063}", 0),
        ..Default::default()
    };
    let per_dump = things * details.encoded_len() as u64;
    let figures = stuck_scenario(
        &server,
        "stuck-shm-large",
        "kept the server waiting",
        || {
            let mut stuck = server.client("stuck-shm-large");
            stuck.pivot(1 << 20, None).unwrap();
            // As many dumps as its request queue takes at once: far more reply bytes than
            // the server would hold for anyone.
            let n = 1000u64;
            for _ in 0..n {
                stuck.send(&ex::SwThingDump::default()).unwrap();
            }
            (n * per_dump, Box::new(stuck))
        },
        |_| {},
    );
    // Its segment's pages the server wrote replies into, the backlog past the pause threshold
    // (one dump's worth), and the allocator's slack.
    check(
        &figures,
        "shared-memory client that never drains (dumps)",
        8 << 20,
        true,
    );
}
