//! The storm: start a server, measure it at rest, storm it, let it settle, measure it again,
//! and judge.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::Signal;
use vlibapi::msgs::{memclnt, vlib_api, vpe};
use vlibsocket::client::{ClientOptions, SocketClient};

use crate::procfs::{self, Rss};
use crate::survivor::Tally;
use crate::victim::{EXIT_NO_SLOT, Killer, POINTS, Rng};

/// Resident memory the server may keep after the storm beyond what it had before: the
/// allocator keeps some of the memory freed by thousands of connections and channels
/// (fragmentation and its free lists), and the vectors indexed by connection and channel keep
/// the capacity the storm's peak gave them. Fds, segments and registrations get no slack.
///
/// The named segment is left out: it is mapped once for the server's life, so its pages stay
/// resident once touched (bounded by its size, which is reported); everything else must come
/// back.
const RSS_SLACK: u64 = 4 << 20;
/// The server's CPU use while idle after the storm may not exceed this share of one core.
const IDLE_CPU_SHARE: f64 = 0.1;
/// After the storm the probe may take at most this many times its median before the storm.
const PROBE_RATIO: f64 = 2.0;
/// Keepalive interval given to the server: a killed client attached by name is noticed by
/// silence (no socket tells), after two unanswered pings.
const KEEPALIVE: &str = "0.2";
/// Named slots: the storm's named clients, the survivors, and those killed and not yet reaped.
const NAMED_SLOTS: &str = "64";

/// `chaos run` options.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The api-server binary (default: `api-server` beside this program).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Storm clients alive at once.
    #[arg(long)]
    clients: Option<usize>,
    /// Length of the storm, in seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// A short run for CI (8 clients, 8 seconds, unless given).
    #[arg(long)]
    smoke: bool,
    /// Seed of the storm's choices (default: from the clock; printed, to replay a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the results as a Markdown block to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Only the kill points whose name starts with one of these (comma-separated prefixes,
    /// `sock`, `pivot`, `named` or whole names; default: all).
    #[arg(long, value_delimiter = ',')]
    points: Vec<String>,
}

/// The server under test.
struct ServerUnderTest {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    prefix: String,
    log: PathBuf,
}

impl ServerUnderTest {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server's state at rest.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    fds: usize,
    memfd_maps: usize,
    /// Rows of `show api clients`: connections, and shared-memory channels.
    listed: usize,
    /// Entries of `api_client_dump`: registrations.
    registrations: usize,
    rss: Rss,
}

/// Probe round trips, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    socket_p50: f64,
    socket_p99: f64,
    shm_p50: f64,
    shm_p99: f64,
}

/// The probe clients: one on the socket, one on a private segment. They live for the whole
/// run, so the baseline counts them.
struct Probes {
    socket: SocketClient,
    shm: SocketClient,
}

/// What happened to the victims of one kill point.
#[derive(Debug, Default, Clone, Copy)]
struct PointTally {
    spawned: u64,
    killed: u64,
    no_slot: u64,
    failed: u64,
    late: u64,
}

/// A victim still running.
struct Victim {
    child: Child,
    point: usize,
    started: Instant,
    kill_at: Option<Instant>,
    killed: bool,
}

/// Everything a run measured.
#[derive(Default)]
struct Results {
    seed: u64,
    clients: usize,
    seconds: f64,
    storm: Duration,
    points: Vec<PointTally>,
    before: Snapshot,
    after: Snapshot,
    probe_before: Probe,
    probe_after: Probe,
    settle: Duration,
    survivors: Vec<(String, String, Tally)>,
    reasons: BTreeMap<String, u64>,
    violations: Vec<String>,
    server_profile: String,
    /// Share of one core the server used while idle after the storm.
    idle_cpu: f64,
}

pub(crate) fn run(args: &RunArgs) -> ExitCode {
    match storm(args) {
        Ok(results) => {
            let text = report(&results);
            print!("{text}");
            if let Some(path) = &args.markdown {
                if let Err(e) = std::fs::write(path, markdown(&results)) {
                    eprintln!("chaos: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if results.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

fn storm(args: &RunArgs) -> Result<Results, String> {
    let clients = args
        .clients
        .unwrap_or(if args.smoke { 8 } else { 16 })
        .max(1);
    let seconds = args
        .seconds
        .unwrap_or(if args.smoke { 8.0 } else { 90.0 })
        .max(1.0);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let server_bin = args
        .server
        .clone()
        .unwrap_or_else(|| me.with_file_name("api-server"));
    let mut r = Results {
        seed,
        clients,
        seconds,
        points: vec![PointTally::default(); POINTS.len()],
        server_profile: server_bin
            .parent()
            .and_then(Path::file_name)
            .map_or_else(String::new, |p| p.to_string_lossy().into_owned()),
        ..Results::default()
    };
    eprintln!(
        "chaos: seed {seed}, {clients} clients at once for {seconds} s, server {}",
        server_bin.display()
    );
    let mut server = start_server(&server_bin)?;
    let mut probes = Probes {
        socket: connect(&server.socket, "chaos-probe")?,
        shm: {
            let mut c = connect(&server.socket, "chaos-probe-shm")?;
            c.pivot(1 << 20, None)
                .map_err(|e| format!("probe pivot: {e}"))?;
            c
        },
    };
    // The probe's reference is the fresh server's: whatever clients it has had since must not
    // slow it down for good.
    r.probe_before = probe(&mut probes)?;
    warm_up(&server, clients)?;
    r.before = snapshot(&server, &mut probes)?;
    eprintln!("chaos: before: {:?}, probe {:?}", r.before, r.probe_before);

    // Survivors first, so that they live through all of it.
    let survivors = start_survivors(&me, &server, seconds + 1.0, args.smoke)?;
    let victims_log = server.dir.join("victims.log");
    let log_file = std::fs::File::create(&victims_log).map_err(|e| format!("victims log: {e}"))?;
    let mut rng = Rng(seed | 1);
    let chosen: Vec<usize> = (0..POINTS.len())
        .filter(|&i| {
            args.points.is_empty() || args.points.iter().any(|p| POINTS[i].name.starts_with(p))
        })
        .collect();
    if chosen.is_empty() {
        return Err(format!("no kill point matches {:?}", args.points));
    }
    let mut running: Vec<Victim> = Vec::new();
    let start = Instant::now();
    let length = Duration::from_secs_f64(seconds);
    let mut last_note = start;
    while start.elapsed() < length || !running.is_empty() {
        while start.elapsed() < length && running.len() < clients {
            let point = chosen[rng.below(chosen.len() as u64) as usize];
            let child = Command::new(&me)
                .arg("victim")
                .arg(POINTS[point].name)
                .arg(&server.socket)
                .arg(&server.prefix)
                .arg(rng.next().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    log_file
                        .try_clone()
                        .map_err(|e| format!("victims log: {e}"))?,
                )
                .spawn()
                .map_err(|e| format!("cannot start a victim: {e}"))?;
            let now = Instant::now();
            let kill_at = (POINTS[point].killer == Killer::Driver)
                .then(|| now + Duration::from_micros(2_000 + rng.below(120_000)));
            r.points[point].spawned += 1;
            running.push(Victim {
                child,
                point,
                started: now,
                kill_at,
                killed: false,
            });
        }
        reap_victims(&mut running, &mut r.points);
        if !server.alive() {
            r.violations.push("the server died during the storm".into());
            break;
        }
        if last_note.elapsed() > Duration::from_secs(10) {
            last_note = Instant::now();
            let spawned: u64 = r.points.iter().map(|p| p.spawned).sum();
            eprintln!(
                "chaos: {:.0} s, {spawned} clients started",
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    r.storm = start.elapsed();
    collect_survivors(survivors, &mut r);
    if !server.alive() {
        r.violations
            .push("the server is not running after the storm".into());
        return Ok(r);
    }

    // Settle: killed clients attached by name are reaped by the keepalive scan, the others at
    // once; give it a bounded while, then judge.
    let settle_start = Instant::now();
    let deadline = Duration::from_secs(20);
    loop {
        let now = snapshot(&server, &mut probes)?;
        let settled = now.fds == r.before.fds
            && now.memfd_maps == r.before.memfd_maps
            && now.listed == r.before.listed
            && now.registrations == r.before.registrations;
        if settled || settle_start.elapsed() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    r.settle = settle_start.elapsed();
    r.after = snapshot(&server, &mut probes)?;
    // Idle now: it should be asleep, not spinning on something the storm left behind.
    let cpu0 = procfs::cpu_time(server.pid());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    r.idle_cpu = procfs::cpu_time(server.pid())
        .saturating_sub(cpu0)
        .as_secs_f64()
        / t0.elapsed().as_secs_f64();
    r.probe_after = probe(&mut probes)?;
    for attempt in 0..2 {
        // The machine is shared: measure again before calling a slow probe a violation.
        if within(&r.probe_after, &r.probe_before) {
            break;
        }
        eprintln!("chaos: probe slow after the storm ({attempt}); measuring again");
        std::thread::sleep(Duration::from_secs(1));
        r.probe_after = probe(&mut probes)?;
    }
    judge(&mut r);
    let log = server.log_text();
    r.reasons = reasons(&log);
    if log.contains("panicked") {
        r.violations.push("the server log shows a panic".into());
    }
    let failed_victims = std::fs::read_to_string(&victims_log).unwrap_or_default();
    for line in failed_victims.lines().take(5) {
        r.violations.push(format!("a storm client said: {line}"));
    }
    let _ = probes.socket.disconnect();
    let _ = probes.shm.disconnect();
    if !server.alive() {
        r.violations.push("the server died at the end".into());
    }
    Ok(r)
}

fn connect(socket: &Path, name: &str) -> Result<SocketClient, String> {
    let mut o = ClientOptions::new(name);
    o.timeout = Duration::from_secs(10);
    SocketClient::connect_with(socket, &o).map_err(|e| format!("{name}: {e}"))
}

fn start_server(bin: &Path) -> Result<ServerUnderTest, String> {
    let dir = std::env::temp_dir().join(format!("vlib-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let socket = dir.join("api.sock");
    let prefix = format!("chaos{}", std::process::id());
    let log = dir.join("server.log");
    let child = Command::new(bin)
        .arg("--socket")
        .arg(&socket)
        .args([
            "--shm-prefix",
            &prefix,
            "--shm-slots",
            NAMED_SLOTS,
            "--keepalive-interval",
            KEEPALIVE,
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| format!("server log: {e}"))?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let server = ServerUnderTest {
        child,
        dir,
        socket,
        prefix,
        log,
    };
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&server.socket).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("the server did not start:\n{}", server.log_text()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(server)
}

/// Touches what the storm will touch before the baseline is taken, so that it counts memory
/// the server keeps once used (the named segment's slots, its tables' first growth).
fn warm_up(server: &ServerUnderTest, clients: usize) -> Result<(), String> {
    let mut named = Vec::new();
    for i in 0..clients.min(48) + 4 {
        let o = ClientOptions::new(&format!("warm-named-{i}"));
        let mut c = SocketClient::attach_by_name(Some(&server.prefix), &o)
            .map_err(|e| format!("warm-up by name: {e}"))?;
        let _: memclnt::ControlPingReply = c
            .request(&memclnt::ControlPing::default())
            .map_err(|e| format!("warm-up ping: {e}"))?;
        named.push(c);
    }
    let mut pivoted = Vec::new();
    for i in 0..clients + 4 {
        let mut c = connect(&server.socket, &format!("warm-pivot-{i}"))?;
        c.pivot(1 << 20, None)
            .map_err(|e| format!("warm-up pivot: {e}"))?;
        let _: memclnt::GetApiJsonReply = c
            .request(&memclnt::GetApiJson::default())
            .map_err(|e| format!("warm-up: {e}"))?;
        pivoted.push(c);
    }
    for c in named.into_iter().chain(pivoted) {
        c.disconnect()
            .map_err(|e| format!("warm-up disconnect: {e}"))?;
    }
    // Wait until the server has let go of all of them.
    let mut look = connect(&server.socket, "chaos-look")?;
    let start = Instant::now();
    loop {
        let text = cli(&mut look, "show api clients")?;
        if !text.contains("warm-") {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("warm-up clients were not removed:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    look.disconnect().map_err(|e| format!("warm-up: {e}"))?;
    Ok(())
}

fn cli(c: &mut SocketClient, cmd: &str) -> Result<String, String> {
    let r: vpe::CliInbandReply = c
        .request(&vpe::CliInband {
            cmd: cmd.to_owned(),
            ..Default::default()
        })
        .map_err(|e| format!("cli `{cmd}`: {e}"))?;
    Ok(r.reply)
}

/// Rows of `show api clients`: one per connection and one per shared-memory channel.
fn listed_rows(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty()
                && t != "Socket clients"
                && t != "Shared memory clients"
                && t != "(none)"
                && !(t.starts_with("Name") && t.contains("Index"))
        })
        .count()
}

fn snapshot(server: &ServerUnderTest, probes: &mut Probes) -> Result<Snapshot, String> {
    let pid = server.pid();
    let listed = listed_rows(&cli(&mut probes.socket, "show api clients")?);
    let registrations = probes
        .socket
        .dump::<_, vlib_api::ApiClientDetails>(&vlib_api::ApiClientDump::default())
        .map_err(|e| format!("api_client_dump: {e}"))?
        .len();
    Ok(Snapshot {
        fds: procfs::fd_count(pid),
        memfd_maps: procfs::memfd_maps(pid),
        listed,
        registrations,
        rss: procfs::rss(pid, &format!("{}-vpe-api", server.prefix)),
    })
}

/// Median and 99th percentile of synchronous `control_ping` round trips on both probes,
/// alternating, after a short warm-up.
fn probe(p: &mut Probes) -> Result<Probe, String> {
    let n = 2000;
    let mut sock = Vec::with_capacity(n);
    let mut shm = Vec::with_capacity(n);
    for i in 0..n + 200 {
        for (c, v) in [(&mut p.socket, &mut sock), (&mut p.shm, &mut shm)] {
            let t = Instant::now();
            let _: memclnt::ControlPingReply = c
                .request(&memclnt::ControlPing::default())
                .map_err(|e| format!("probe: {e}"))?;
            if i >= 200 {
                v.push(t.elapsed());
            }
        }
    }
    let q = |v: &mut Vec<Duration>, q: f64| {
        v.sort_unstable();
        v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e6
    };
    Ok(Probe {
        socket_p50: q(&mut sock, 0.5),
        socket_p99: q(&mut sock, 0.99),
        shm_p50: q(&mut shm, 0.5),
        shm_p99: q(&mut shm, 0.99),
    })
}

fn within(after: &Probe, before: &Probe) -> bool {
    after.socket_p50 <= before.socket_p50 * PROBE_RATIO
        && after.shm_p50 <= before.shm_p50 * PROBE_RATIO
}

fn start_survivors(
    me: &Path,
    server: &ServerUnderTest,
    seconds: f64,
    smoke: bool,
) -> Result<Vec<Child>, String> {
    let per = if smoke { 1 } else { 2 };
    let mut out = Vec::new();
    for transport in ["socket", "pivot", "named"] {
        for i in 0..per {
            let child = Command::new(me)
                .arg("survivor")
                .arg(transport)
                .arg(format!("survivor-{transport}-{i}"))
                .arg(&server.socket)
                .arg(&server.prefix)
                .arg(seconds.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start a survivor: {e}"))?;
            out.push(child);
        }
    }
    Ok(out)
}

fn collect_survivors(survivors: Vec<Child>, r: &mut Results) {
    for mut child in survivors {
        let stdout = child.stdout.take();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let line = stdout.and_then(|out| {
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| Tally::parse(&l))
        });
        match (status, line) {
            (Some(s), Some((name, transport, tally))) => {
                if !s.success() || !tally.clean() {
                    r.violations.push(format!(
                        "survivor {name} ({transport}): {} requests, {} ok, {} duplicated, {} \
                         missing, {} wrong",
                        tally.requests, tally.ok, tally.dup, tally.missing, tally.wrong
                    ));
                }
                r.survivors.push((name, transport, tally));
            }
            (status, _) => r.violations.push(format!(
                "a survivor did not report (exit {status:?}): it could not finish its run"
            )),
        }
    }
}

fn reap_victims(running: &mut Vec<Victim>, points: &mut [PointTally]) {
    let now = Instant::now();
    running.retain_mut(|v| {
        match v.child.try_wait() {
            Ok(Some(status)) => {
                let t = &mut points[v.point];
                if status.signal() == Some(Signal::SIGKILL as i32) {
                    t.killed += 1;
                } else if status.code() == Some(i32::from(EXIT_NO_SLOT)) {
                    t.no_slot += 1;
                } else {
                    t.failed += 1;
                }
                return false;
            }
            Ok(None) => {}
            Err(_) => return false,
        }
        let due = v.kill_at.is_some_and(|t| now >= t);
        // A victim that should have died by its own hand long ago is stuck somewhere: kill
        // it, and count it.
        let late = v.kill_at.is_none() && now.duration_since(v.started) > Duration::from_secs(15);
        if (due || late) && !v.killed {
            if late {
                points[v.point].late += 1;
            }
            let _ = v.child.kill();
            v.killed = true;
        }
        true
    });
}

/// Counts the server log's reasons for dropping clients, by kind.
fn reasons(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let reason = if let Some((_, r)) = line.split_once(" reaped: ") {
            r
        } else if let Some((_, r)) = line.split_once(" removed: ") {
            r
        } else if let Some((_, r)) = line.split_once(" disconnected: ") {
            r
        } else {
            continue;
        };
        // Keep the kind, not the figures.
        let kind: String = reason
            .split(['(', ':', '['])
            .next()
            .unwrap_or(reason)
            .trim()
            .to_owned();
        *out.entry(kind).or_insert(0) += 1;
    }
    out
}

fn judge(r: &mut Results) {
    let (b, a) = (r.before, r.after);
    for (what, before, after) in [
        ("open fds", b.fds, a.fds),
        ("mapped memfd segments", b.memfd_maps, a.memfd_maps),
        ("`show api clients` rows", b.listed, a.listed),
        (
            "`api_client_dump` registrations",
            b.registrations,
            a.registrations,
        ),
    ] {
        if after != before {
            r.violations
                .push(format!("{what}: {after} after the storm, {before} before"));
        }
    }
    let allowed = rss_allowed(b.rss.without_named());
    if a.rss.without_named() > allowed {
        r.violations.push(format!(
            "resident memory but the named segment: {:.1} MiB after the storm, {:.1} MiB \
             before (allowed {:.1} MiB)",
            mib(a.rss.without_named()),
            mib(b.rss.without_named()),
            mib(allowed)
        ));
    }
    if !within(&r.probe_after, &r.probe_before) {
        r.violations.push(format!(
            "probe median after the storm (socket {:.0} us, shm {:.0} us) above {PROBE_RATIO}x \
             before (socket {:.0} us, shm {:.0} us)",
            r.probe_after.socket_p50,
            r.probe_after.shm_p50,
            r.probe_before.socket_p50,
            r.probe_before.shm_p50
        ));
    }
    if r.idle_cpu > IDLE_CPU_SHARE {
        r.violations.push(format!(
            "the server used {:.0}% of a core while idle after the storm",
            r.idle_cpu * 100.0
        ));
    }
    let failed: u64 = r.points.iter().map(|p| p.failed).sum();
    if failed > 0 {
        r.violations.push(format!(
            "{failed} storm clients failed before their kill point (the server refused or \
             dropped them; their first words follow)"
        ));
    }
    let killed: u64 = r.points.iter().map(|p| p.killed).sum();
    if killed == 0 {
        r.violations.push("no client was killed".into());
    }
}

fn rss_allowed(before: u64) -> u64 {
    before + RSS_SLACK
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

fn totals(r: &Results) -> PointTally {
    r.points.iter().fold(PointTally::default(), |mut t, p| {
        t.spawned += p.spawned;
        t.killed += p.killed;
        t.no_slot += p.no_slot;
        t.failed += p.failed;
        t.late += p.late;
        t
    })
}

fn report(r: &Results) -> String {
    let t = totals(r);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nchaos: {} client processes in {:.1} s ({} at once, seed {}): {} killed, {} found no \
         free named slot, {} failed, {} killed late",
        t.spawned,
        r.storm.as_secs_f64(),
        r.clients,
        r.seed,
        t.killed,
        t.no_slot,
        t.failed,
        t.late
    );
    for (p, c) in POINTS.iter().zip(&r.points) {
        let _ = writeln!(
            s,
            "  {:<20} {:>6} killed {:>4} no slot {:>3} failed  ({})",
            p.name, c.killed, c.no_slot, c.failed, p.what
        );
    }
    let _ = writeln!(
        s,
        "probe p50/p99 us: socket {:.0}/{:.0} -> {:.0}/{:.0}, shm {:.0}/{:.0} -> {:.0}/{:.0}",
        r.probe_before.socket_p50,
        r.probe_before.socket_p99,
        r.probe_after.socket_p50,
        r.probe_after.socket_p99,
        r.probe_before.shm_p50,
        r.probe_before.shm_p99,
        r.probe_after.shm_p50,
        r.probe_after.shm_p99
    );
    let _ = writeln!(
        s,
        "resources before -> after (settled in {:.1} s): fds {} -> {}, memfd maps {} -> {}, \
         listed {} -> {}, registrations {} -> {}, RSS but the named segment {:.1} -> {:.1} MiB \
         (allowed {:.1}; anon {:.1} -> {:.1}, named segment {:.1} -> {:.1})",
        r.settle.as_secs_f64(),
        r.before.fds,
        r.after.fds,
        r.before.memfd_maps,
        r.after.memfd_maps,
        r.before.listed,
        r.after.listed,
        r.before.registrations,
        r.after.registrations,
        mib(r.before.rss.without_named()),
        mib(r.after.rss.without_named()),
        mib(rss_allowed(r.before.rss.without_named())),
        mib(r.before.rss.anon),
        mib(r.after.rss.anon),
        mib(r.before.rss.named),
        mib(r.after.rss.named),
    );
    let _ = writeln!(
        s,
        "server CPU while idle after the storm: {:.1}% of a core",
        r.idle_cpu * 100.0
    );
    for (name, transport, t) in &r.survivors {
        let _ = writeln!(
            s,
            "survivor {name} ({transport}): {} requests, {} ok, {} dup, {} missing, {} wrong; \
             sync RTT p50 {} us, p99 {} us, max {} us",
            t.requests, t.ok, t.dup, t.missing, t.wrong, t.p50_us, t.p99_us, t.max_us
        );
    }
    let _ = writeln!(s, "server log, clients dropped by reason:");
    for (reason, n) in &r.reasons {
        let _ = writeln!(s, "  {n:>6}  {reason}");
    }
    if r.violations.is_empty() {
        let _ = writeln!(s, "chaos: PASS");
    } else {
        for v in &r.violations {
            let _ = writeln!(s, "VIOLATION: {v}");
        }
        let _ = writeln!(s, "chaos: FAIL ({} violations)", r.violations.len());
    }
    s
}

/// The results as the Markdown block RELIABILITY.md keeps.
fn markdown(r: &Results) -> String {
    let t = totals(r);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Run: {} s storm, {} clients at once, seed {}, server built `{}`; verdict **{}**.\n",
        r.seconds,
        r.clients,
        r.seed,
        r.server_profile,
        if r.violations.is_empty() {
            "PASS"
        } else {
            "FAIL"
        }
    );
    let _ = writeln!(
        s,
        "{} client processes started in {:.1} s: {} SIGKILLed at their kill point, {} found \
         every named slot taken (slots of the killed wait for the keepalive scan), {} failed \
         before their kill point, {} had to be killed late.\n",
        t.spawned,
        r.storm.as_secs_f64(),
        t.killed,
        t.no_slot,
        t.failed,
        t.late
    );
    let _ = writeln!(s, "| kill point | transport | killed by | where | killed |");
    let _ = writeln!(s, "|---|---|---|---|---:|");
    for (p, c) in POINTS.iter().zip(&r.points) {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            p.name,
            p.transport,
            match p.killer {
                Killer::Itself => "itself",
                Killer::Driver => "the driver, at random",
            },
            p.what,
            c.killed
        );
    }
    let _ = writeln!(
        s,
        "\n| probe (sync `control_ping`, 2000 each) | before p50 / p99 | after p50 / p99 |"
    );
    let _ = writeln!(s, "|---|---:|---:|");
    let _ = writeln!(
        s,
        "| socket | {:.0} / {:.0} us | {:.0} / {:.0} us |",
        r.probe_before.socket_p50,
        r.probe_before.socket_p99,
        r.probe_after.socket_p50,
        r.probe_after.socket_p99
    );
    let _ = writeln!(
        s,
        "| shared memory (pivot) | {:.0} / {:.0} us | {:.0} / {:.0} us |",
        r.probe_before.shm_p50,
        r.probe_before.shm_p99,
        r.probe_after.shm_p50,
        r.probe_after.shm_p99
    );
    let _ = writeln!(
        s,
        "\n| server resource | before | after (settled in {:.1} s) | allowed |",
        r.settle.as_secs_f64()
    );
    let _ = writeln!(s, "|---|---:|---:|---|");
    for (what, b, a) in [
        ("open fds", r.before.fds, r.after.fds),
        (
            "mapped memfd segments",
            r.before.memfd_maps,
            r.after.memfd_maps,
        ),
        ("`show api clients` rows", r.before.listed, r.after.listed),
        (
            "`api_client_dump` entries",
            r.before.registrations,
            r.after.registrations,
        ),
    ] {
        let _ = writeln!(s, "| {what} | {b} | {a} | equal |");
    }
    let _ = writeln!(
        s,
        "| resident memory, named segment aside | {:.1} MiB (anon {:.1}) | {:.1} MiB (anon \
         {:.1}) | up to {:.1} MiB |",
        mib(r.before.rss.without_named()),
        mib(r.before.rss.anon),
        mib(r.after.rss.without_named()),
        mib(r.after.rss.anon),
        mib(rss_allowed(r.before.rss.without_named()))
    );
    let _ = writeln!(
        s,
        "| named segment, resident (mapped for the server's life) | {:.1} MiB | {:.1} MiB | \
         its size |",
        mib(r.before.rss.named),
        mib(r.after.rss.named)
    );
    let _ = writeln!(
        s,
        "| CPU while idle afterwards | | {:.1}% of a core | up to {:.0}% |",
        r.idle_cpu * 100.0,
        IDLE_CPU_SHARE * 100.0
    );
    let _ = writeln!(
        s,
        "\n| surviving client | transport | requests | replies ok | duplicated | missing | \
         wrong | sync RTT p50 / p99 / max |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, transport, t) in &r.survivors {
        let _ = writeln!(
            s,
            "| {name} | {transport} | {} | {} | {} | {} | {} | {} / {} / {} us |",
            t.requests, t.ok, t.dup, t.missing, t.wrong, t.p50_us, t.p99_us, t.max_us
        );
    }
    let _ = writeln!(
        s,
        "\n| clients dropped, by the reason the server logged | count |"
    );
    let _ = writeln!(s, "|---|---:|");
    for (reason, n) in &r.reasons {
        let _ = writeln!(s, "| {reason} | {n} |");
    }
    if !r.violations.is_empty() {
        let _ = writeln!(s, "\nViolations:\n");
        for v in &r.violations {
            let _ = writeln!(s, "- {v}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_api_clients_rows_are_counted() {
        let text = "Socket clients\n   Name      Index  Fd   Pid  Uid  Rx msgs  Queued\n  \
                    probe 0x81000002  12  100  1000       5       0\n\n\
                    Shared memory clients\n  (none)\n";
        assert_eq!(listed_rows(text), 1);
    }

    #[test]
    fn log_reasons_are_tallied_by_kind() {
        let log = "[ 1.0] api-server warn: shared-memory client 'v' (0x1, Named { slot: 3 }) \
                   reaped: it stopped answering pings and its pid is gone\n\
                   [ 1.1] api-server warn: client 'v' (pid 9, index 0x81000001) disconnected: \
                   framing error: truncated\n\
                   [ 1.2] api-server warn: shared-memory client 'w' (0x2, Named { slot: 4 }) \
                   reaped: it stopped answering pings and its pid is gone\n";
        let r = reasons(log);
        assert_eq!(r["it stopped answering pings and its pid is gone"], 2);
        assert_eq!(r["framing error"], 1);
    }

    #[test]
    fn the_memory_allowance_is_documented_slack() {
        assert_eq!(rss_allowed(40 << 20), (44 << 20));
    }
}
