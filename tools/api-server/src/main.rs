//! `api-server`: the API server with its default modules.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vlib_server::log::Level;
use vlib_server::server::{Server, ServerConfig, ShmWait};
use vlibmemory::server::{NamedConfig, ShmConfig};
use vlibsocket::server::{SocketConfig, default_socket_path};

/// Serves the binary API over a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Socket path (default: $XDG_RUNTIME_DIR/vpp/api.sock, /run/vpp/api.sock for root).
    #[arg(long, short = 's')]
    socket: Option<PathBuf>,
    /// Socket file mode, octal.
    #[arg(long, default_value = "600", value_parser = parse_octal)]
    socket_mode: u32,
    /// Group owning the socket file (numeric gid).
    #[arg(long)]
    socket_group: Option<u32>,
    /// Only these uids may connect (repeatable; default: whoever the file mode lets in).
    #[arg(long = "allow-uid")]
    allow_uids: Vec<u32>,
    /// Only these gids may connect, besides --allow-uid (repeatable).
    #[arg(long = "allow-gid")]
    allow_gids: Vec<u32>,
    /// Longest message accepted from a client, in bytes (k, m suffixes allowed).
    #[arg(long, default_value = "8m", value_parser = parse_size)]
    max_msg_size: u64,
    /// Bytes queued for a client that does not read before it is disconnected.
    #[arg(long, default_value = "64m", value_parser = parse_size)]
    max_output: u64,
    /// Seconds a client's queued replies may stay unread before it is disconnected (socket and
    /// shared memory; a shared-memory client whose segment heap lock stays held that long
    /// while a request of its waits is disconnected too).
    #[arg(long, default_value_t = 5.0)]
    stall_timeout: f64,
    /// How the server waits for shared-memory clients: park, poll, or spin:MICROSECONDS.
    #[arg(long, default_value = "spin:50")]
    shm_wait: ShmWait,
    /// Publish the named shared-memory segment (`/dev/shm/vpe-api`) for clients that attach by
    /// name.
    #[arg(long)]
    shm_named: bool,
    /// Like --shm-named, under a prefix (`/dev/shm/<prefix>-vpe-api`), to run several servers.
    #[arg(long)]
    shm_prefix: Option<String>,
    /// Client slots of the named segment.
    #[arg(long, default_value_t = 16)]
    shm_slots: u32,
    /// Mode of the named segment and its doorbell, octal.
    #[arg(long, default_value = "600", value_parser = parse_octal)]
    shm_mode: u32,
    /// Group owning the named segment and its doorbell (numeric gid; use with --shm-mode 660).
    #[arg(long)]
    shm_group: Option<u32>,
    /// Size of a private segment when a client asks for 0 bytes.
    #[arg(long, default_value = "4m", value_parser = parse_size)]
    shm_segment_size: u64,
    /// Seconds of silence before a shared-memory client is pinged (it is reaped after two
    /// unanswered pings once its pid is gone).
    #[arg(long, default_value_t = 10.0)]
    keepalive_interval: f64,
    /// Log level: off, error, warn, info, debug.
    #[arg(long, default_value = "info")]
    log_level: Level,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("not an octal mode: {e}"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let mut input = vppinfra::unformat::Input::new(s);
    let n = input.memory_size().map_err(|e| e.to_string())?;
    input.end().map_err(|e| e.to_string())?;
    Ok(n)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut socket = SocketConfig::new(args.socket.unwrap_or_else(default_socket_path));
    socket.mode = args.socket_mode;
    socket.group = args.socket_group;
    socket.allow_uids = args.allow_uids;
    socket.allow_gids = args.allow_gids;
    socket.max_message_len = u32::try_from(args.max_msg_size).unwrap_or(u32::MAX);
    socket.max_output_bytes = usize::try_from(args.max_output).unwrap_or(usize::MAX);
    socket.stall_timeout = std::time::Duration::from_secs_f64(args.stall_timeout.max(0.0));
    let named = (args.shm_named || args.shm_prefix.is_some()).then(|| NamedConfig {
        prefix: args.shm_prefix.clone(),
        slots: args.shm_slots,
        mode: args.shm_mode,
        gid: args.shm_group,
        ..NamedConfig::default()
    });
    let shm = ShmConfig {
        named,
        default_segment_size: usize::try_from(args.shm_segment_size).unwrap_or(usize::MAX),
        keepalive_interval: std::time::Duration::from_secs_f64(args.keepalive_interval.max(0.001)),
        stall_timeout: socket.stall_timeout,
        ..ShmConfig::default()
    };
    let config = ServerConfig {
        socket,
        log_level: args.log_level,
        shm,
        shm_wait: args.shm_wait,
        ..ServerConfig::default()
    };
    let built = Server::builder()
        .config(config)
        .plugin(example_plugin::ExamplePlugin::new())
        .handle_signals(true)
        .build();
    let mut server = match built {
        Ok(s) => s,
        Err(e) => {
            eprintln!("api-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("api-server listening on {}", server.socket_path().display());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-server: {e}");
            ExitCode::FAILURE
        }
    }
}
