//! Who may reach the server: the socket file's mode and group (`--socket-mode`,
//! `--socket-group`), the SO_PEERCRED allow-list (`--allow-uid`, `--allow-gid`) against a client
//! of another uid, sealed private segments, and the mode of the named segment and its doorbell
//! (`--shm-mode`).
//!
//! The other-uid cases need root (the test re-runs itself as a child that drops to uid/gid
//! 65534 before connecting); without root they print why they are skipped.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag};
use support::{ServerProc, cli};
use vlibapi::msgs::memclnt;
use vlibsocket::client::{ClientOptions, SocketClient};
use vppinfra::testing;

/// The unprivileged identity children switch to.
const NOBODY: u32 = 65534;

fn prefix(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

fn named_files(prefix: &str) -> (PathBuf, PathBuf) {
    let seg = vlibmemory::server::named_segment_name(Some(prefix))
        .expect("valid prefix")
        .path();
    let bell = PathBuf::from(format!(
        "{}{}",
        seg.display(),
        vlibmemory::server::DOORBELL_SUFFIX
    ));
    (seg, bell)
}

/// Child: becomes uid/gid 65534 (no supplementary groups), then tries what the role says and
/// prints `result: served` or `result: refused: <error>`.
fn child_main(role: &str, arg: &str) {
    nix::unistd::setgroups(&[]).expect("setgroups");
    nix::unistd::setgid(nix::unistd::Gid::from_raw(NOBODY)).expect("setgid");
    nix::unistd::setuid(nix::unistd::Uid::from_raw(NOBODY)).expect("setuid");
    assert_eq!(nix::unistd::geteuid().as_raw(), NOBODY);
    let mut opts = ClientOptions::new("nobody");
    opts.timeout = Duration::from_secs(10);
    let client = match role {
        "connect" => SocketClient::connect_with(arg, &opts),
        "attach" => SocketClient::attach_by_name(Some(arg), &opts),
        other => panic!("unknown role {other}"),
    };
    let outcome = client.and_then(|mut c| {
        c.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default())
    });
    match outcome {
        Ok(_) => println!("result: served"),
        Err(e) => println!("result: refused: {e:?}"),
    }
}

/// Runs `role` as uid 65534 and returns what it printed after `result: `.
fn as_nobody(test: &str, role: &str, arg: &str) -> String {
    let mut b = testing::spawn_self(test, role, arg);
    b.command().stdout(Stdio::piped());
    let mut child = b.spawn();
    let out = child.inner().stdout.take().expect("piped stdout");
    let line = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split("result: ").nth(1).map(str::to_owned))
        .unwrap_or_default();
    child.expect_success(Duration::from_secs(30));
    line
}

#[test]
fn mp_socket_mode_and_group_are_applied() {
    let server = ServerProc::start(
        "mp_perm_mode",
        &[
            "--socket-mode",
            "660",
            "--socket-group",
            &NOBODY.to_string(),
        ],
    );
    let meta = std::fs::metadata(&server.path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode_of(&server.path), 0o660);
    if is_root() {
        assert_eq!(meta.gid(), NOBODY, "socket group not applied");
    } else {
        // Only root may give a file to a group it is not in; the server reports and goes on.
        eprintln!("not root: the socket's group is not checked");
    }
    let default = ServerProc::start("mp_perm_default", &[]);
    assert_eq!(mode_of(&default.path), 0o600, "default socket mode");
    let mut c = server.client("owner");
    c.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default())
        .unwrap();
}

#[test]
fn mp_other_uids_are_kept_out_by_file_mode_and_allow_list() {
    const TEST: &str = "mp_other_uids_are_kept_out_by_file_mode_and_allow_list";
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child_main(&role, &testing::child_arg()));
    }
    if !is_root() {
        eprintln!("skipped: needs root to run a client as uid {NOBODY}");
        return;
    }
    // The file mode alone: 0600 keeps uid 65534 out at connect().
    let private = ServerProc::start("mp_perm_private", &[]);
    let r = as_nobody(TEST, "connect", private.path.to_str().unwrap());
    assert!(
        r.starts_with("refused") && r.contains("PermissionDenied"),
        "{r}"
    );

    // An open file mode but an allow-list of root only: refused by SO_PEERCRED, and counted.
    let listed = ServerProc::start(
        "mp_perm_allow",
        &[
            "--socket-mode",
            "666",
            "--allow-uid",
            "0",
            "--log-level",
            "warn",
        ],
    );
    let r = as_nobody(TEST, "connect", listed.path.to_str().unwrap());
    assert!(r.starts_with("refused"), "uid {NOBODY} was served: {r}");
    let mut root = listed.client("root");
    let counters = cli(&mut root, "show api counters");
    assert!(
        counters
            .lines()
            .any(|l| l.contains("socket refused (creds)") && l.trim().ends_with(" 1")),
        "{counters}"
    );
    assert!(
        listed
            .log_text()
            .contains(&format!("uid {NOBODY} gid {NOBODY}: not on the allow-list")),
        "{}",
        listed.log_text()
    );

    // Its gid on the list lets it in.
    let by_gid = ServerProc::start(
        "mp_perm_gid",
        &[
            "--socket-mode",
            "666",
            "--allow-uid",
            "0",
            "--allow-gid",
            &NOBODY.to_string(),
        ],
    );
    let r = as_nobody(TEST, "connect", by_gid.path.to_str().unwrap());
    assert_eq!(r, "served");
    // So does its uid.
    let by_uid = ServerProc::start(
        "mp_perm_uid",
        &["--socket-mode", "666", "--allow-uid", &NOBODY.to_string()],
    );
    let r = as_nobody(TEST, "connect", by_uid.path.to_str().unwrap());
    assert_eq!(r, "served");
}

#[test]
fn mp_private_segments_are_sealed() {
    let server = ServerProc::start("mp_perm_sealed", &[]);
    let mut c = server.client("sealer");
    let memfd = c.request_segment(1 << 20).unwrap().memfd;
    let size = std::fs::File::from(memfd.try_clone().unwrap())
        .metadata()
        .unwrap()
        .len() as i64;
    assert!(size >= 1 << 20);
    let seals = SealFlag::from_bits_truncate(
        nix::fcntl::fcntl(&memfd, FcntlArg::F_GET_SEALS).expect("F_GET_SEALS"),
    );
    for s in [
        SealFlag::F_SEAL_SHRINK,
        SealFlag::F_SEAL_GROW,
        SealFlag::F_SEAL_SEAL,
    ] {
        assert!(seals.contains(s), "{s:?} missing from {seals:?}");
    }
    assert_eq!(nix::unistd::ftruncate(&memfd, size * 2), Err(Errno::EPERM));
    assert_eq!(nix::unistd::ftruncate(&memfd, size / 2), Err(Errno::EPERM));
    assert_eq!(nix::unistd::ftruncate(&memfd, 0), Err(Errno::EPERM));
    // Adding seals (or removing the seal on seals) is refused as well.
    assert_eq!(
        nix::fcntl::fcntl(&memfd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)),
        Err(Errno::EPERM)
    );
    // The server is unharmed.
    c.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default())
        .unwrap();
}

#[test]
fn mp_named_segment_and_doorbell_take_the_configured_mode() {
    const TEST: &str = "mp_named_segment_and_doorbell_take_the_configured_mode";
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child_main(&role, &testing::child_arg()));
    }
    let p = prefix("mode640");
    let server = ServerProc::start("mp_perm_shm", &["--shm-prefix", &p, "--shm-mode", "640"]);
    let (seg, bell) = named_files(&p);
    assert_eq!(mode_of(&seg), 0o640, "{}", seg.display());
    assert_eq!(mode_of(&bell), 0o640, "{}", bell.display());
    assert!(std::fs::metadata(&bell).unwrap().file_type().is_fifo());
    let mut a = SocketClient::attach_by_name(Some(&p), &ClientOptions::new("owner")).unwrap();
    a.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default())
        .unwrap();
    drop(server);

    let q = prefix("mode600");
    let private = ServerProc::start("mp_perm_shm_default", &["--shm-prefix", &q]);
    let (seg, bell) = named_files(&q);
    assert_eq!(mode_of(&seg), 0o600, "default --shm-mode");
    assert_eq!(mode_of(&bell), 0o600);
    let o = prefix("mode666");
    let open = ServerProc::start(
        "mp_perm_shm_open",
        &["--shm-prefix", &o, "--shm-mode", "666"],
    );
    if !is_root() {
        eprintln!("skipped the other-uid half: needs root to run a client as uid {NOBODY}");
        return;
    }
    let r = as_nobody(TEST, "attach", &q);
    assert!(
        r.starts_with("refused") && (r.contains("EACCES") || r.contains("PermissionDenied")),
        "uid {NOBODY} attached to a 0600 segment: {r}"
    );
    let r = as_nobody(TEST, "attach", &o);
    assert_eq!(r, "served", "uid {NOBODY} kept out of a 0666 segment");
    drop(private);
    drop(open);
    // A group: the segment and its doorbell belong to it, so its members get in at 0660.
    let g = prefix("group");
    let grouped = ServerProc::start(
        "mp_perm_shm_group",
        &[
            "--shm-prefix",
            &g,
            "--shm-mode",
            "660",
            "--shm-group",
            &NOBODY.to_string(),
        ],
    );
    let (seg, bell) = named_files(&g);
    for f in [&seg, &bell] {
        let meta = std::fs::metadata(f).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.gid()),
            (0o660, NOBODY),
            "{}",
            f.display()
        );
    }
    let r = as_nobody(TEST, "attach", &g);
    assert_eq!(r, "served", "a member of the segment's group was kept out");
    drop(grouped);
}
