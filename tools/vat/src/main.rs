//! `vat`: the API test tool. See the crate docs (`vat::`) and `vat --help`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vat::runner::{DEFAULT_SHM_SIZE, Outcome, Printer, Runner};
use vat::session::Session;
use vat::transport::Target;

/// Exit status when a command failed.
const EXIT_FAILED: u8 = 1;
/// Exit status when vat could not connect, lost the server, or was misused.
const EXIT_CONNECTION: u8 = 2;

const AFTER_HELP: &str = "\
Modes:
  vat                       interactive (line editing, history, TAB completion) on a terminal;
                            otherwise commands are read from stdin, one per line
  vat --exec FILE           run the commands in FILE (`#` starts a comment)
  vat COMMAND...            run one command: `vat control_ping`, `vat exec show version`

Commands are built-ins (`help` lists them) or a message name with `field value` pairs:
  sw_thing_add_del name foo count 4 enable

Transports (`exec show api clients` lists them as socket, socket+shm, shm):
  vat [--socket PATH]       the API socket
  vat --pivot               the socket, then a private shared-memory segment (sock_init_shm);
                            the socket stays open to notice a server that goes away
  vat --shm [PREFIX]        the segment the server publishes as /dev/shm/[PREFIX-]vpe-api
                            (api-server --shm-named, or --shm-prefix PREFIX); no socket, so
                            a server that dies shows only as replies that time out
  In a session, `sock_init_shm [size N]` or `memfd_segment_create [size N]` moves a socket
  connection to shared memory; a connection moves once.

Exit status (one-shot and scripts): 0 if every command succeeded, 1 if any failed (a non-zero
retval, an unknown message, a parse error, a timeout), 2 if vat could not connect (no server,
or its API could not be loaded) or the server went away. Interactive sessions exit 0 unless the server went away.";

/// The API test tool: send any message the server publishes, script it, time it.
#[derive(Debug, Parser)]
#[command(name = "vat", version, about, after_help = AFTER_HELP)]
struct Args {
    /// The server's socket (default, as the server's: $XDG_RUNTIME_DIR/vpp/api.sock, else
    /// /run/vpp/api.sock for root and /tmp/vpp-UID/api.sock for others).
    #[arg(long, short = 's', value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Attach by name to the shared-memory segment the server publishes
    /// (/dev/shm/[PREFIX-]vpe-api), with no socket. The word after --shm is the prefix: for
    /// the default segment and a one-shot command, write `--shm -- COMMAND...`.
    #[arg(long, value_name = "PREFIX", num_args = 0..=1, default_missing_value = "",
          conflicts_with_all = ["socket", "pivot"])]
    shm: Option<String>,
    /// Connect over the socket, then move to a private shared-memory segment of the server's
    /// default size (sock_init_shm).
    #[arg(long)]
    pivot: bool,
    /// Run the commands in this file, then exit.
    #[arg(long = "exec", short = 'f', value_name = "FILE")]
    exec_file: Option<PathBuf>,
    /// Print replies, details, events and built-in results as JSON, one object per line
    /// (errors stay text, on stderr).
    #[arg(long)]
    json: bool,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    timeout: f64,
    /// The name this client registers with.
    #[arg(long, default_value = "vat")]
    name: String,
    /// Stop at the first failed command (scripts and stdin).
    #[arg(long, short = 'e')]
    stop_on_error: bool,
    /// History file for interactive mode (default: $XDG_STATE_HOME/vat/history).
    #[arg(long, value_name = "FILE", conflicts_with = "no_history")]
    history: Option<PathBuf>,
    /// Keep no history.
    #[arg(long)]
    no_history: bool,
    /// One command to run instead of a session.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// Joins one-shot arguments into a command line, quoting those the shell unquoted.
fn join_args(args: &[String]) -> String {
    let quote = |a: &String| {
        if a.is_empty() || a.contains(char::is_whitespace) || a.contains('"') {
            let escaped = a.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\"")
        } else {
            a.clone()
        }
    };
    // The CLI text of `exec` is passed as it is.
    match args.split_first() {
        Some((first, rest)) if first == "exec" || first == "exec_inband" => {
            format!("{first} {}", rest.join(" "))
        }
        _ => args.iter().map(quote).collect::<Vec<_>>().join(" "),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match (&args.shm, args.pivot) {
        (Some(prefix), _) => Target::Shm {
            prefix: Some(prefix.clone()).filter(|p| !p.is_empty()),
        },
        (None, pivot) => {
            let path = args
                .socket
                .clone()
                .unwrap_or_else(vlibsocket::server::default_socket_path);
            if pivot {
                Target::SocketThenShm {
                    path,
                    size: DEFAULT_SHM_SIZE,
                }
            } else {
                Target::Socket(path)
            }
        }
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        eprintln!("vat: --timeout must be a positive number of seconds");
        return ExitCode::from(EXIT_CONNECTION);
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let session = match Session::open(&target, &args.name, timeout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vat: {e}");
            return ExitCode::from(EXIT_CONNECTION);
        }
    };
    let printer = Printer::new(
        Box::new(std::io::stdout()),
        Box::new(std::io::stderr()),
        args.json,
    );
    let mut runner = Runner::new(session, printer, std::io::stderr().is_terminal());

    let result = if !args.command.is_empty() {
        let outcome = runner.run_line(&join_args(&args.command));
        finish(outcome, runner)
    } else if let Some(file) = &args.exec_file {
        match std::fs::File::open(file) {
            Ok(f) => {
                let name = file.display().to_string();
                run_script(
                    runner,
                    std::io::BufReader::new(f),
                    &name,
                    args.stop_on_error,
                )
            }
            Err(e) => {
                eprintln!("vat: cannot read {}: {e}", file.display());
                return ExitCode::from(EXIT_CONNECTION);
            }
        }
    } else if std::io::stdin().is_terminal() {
        let history = if args.no_history {
            None
        } else {
            args.history
                .clone()
                .or_else(vat::repl::default_history_path)
        };
        println!(
            "vat: connected to {} as client index {:#010x}; `help` lists the commands",
            runner.session.link.describe(),
            runner.session.link.client_index()
        );
        match vat::repl::run(&mut runner, history) {
            // Failures were shown as they happened; only a lost server changes the status.
            Ok(Outcome::Fatal) => finish(Outcome::Fatal, runner),
            Ok(_) => finish(Outcome::Ok, runner),
            Err(e) => {
                eprintln!("vat: terminal error: {e}");
                finish(Outcome::Failed, runner)
            }
        }
    } else {
        run_script(runner, std::io::stdin().lock(), "stdin", args.stop_on_error)
    };
    ExitCode::from(result)
}

/// Runs commands line by line; returns the exit status.
fn run_script(mut runner: Runner, input: impl BufRead, name: &str, stop_on_error: bool) -> u8 {
    let mut outcome = Outcome::Ok;
    for (n, line) in input.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("vat: cannot read {name}: {e}");
                return EXIT_CONNECTION;
            }
        };
        runner.set_location(Some(format!("{name}:{}", n + 1)));
        match runner.run_line(&line) {
            Outcome::Ok => {}
            Outcome::Failed => {
                outcome = Outcome::Failed;
                if stop_on_error {
                    break;
                }
            }
            Outcome::Quit => break,
            Outcome::Fatal => return EXIT_CONNECTION,
        }
    }
    runner.set_location(None);
    finish(outcome, runner)
}

/// Disconnects and picks the exit status from how the session went. A session that lost the
/// server (already reported) does not try to say goodbye.
fn finish(outcome: Outcome, mut runner: Runner) -> u8 {
    match outcome {
        Outcome::Fatal => return EXIT_CONNECTION,
        Outcome::Ok | Outcome::Quit | Outcome::Failed => {}
    }
    if runner.poll_events() == Outcome::Fatal {
        return EXIT_CONNECTION;
    }
    if let Err(e) = runner.session.link.close() {
        eprintln!("vat: {e}");
        return EXIT_CONNECTION;
    }
    if outcome == Outcome::Failed {
        EXIT_FAILED
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(args: &[&str]) -> String {
        join_args(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn shm_takes_the_next_word_as_its_prefix_unless_told_otherwise() {
        let parse = |args: &[&str]| {
            let a = Args::try_parse_from(std::iter::once("vat").chain(args.iter().copied()))
                .expect("parses");
            (a.shm, a.command)
        };
        assert_eq!(
            parse(&["--shm", "vpp1", "control_ping"]),
            (Some("vpp1".to_owned()), vec!["control_ping".to_owned()])
        );
        assert_eq!(
            parse(&["--shm", "--", "control_ping"]),
            (Some(String::new()), vec!["control_ping".to_owned()])
        );
        assert_eq!(parse(&["--shm"]), (Some(String::new()), vec![]));
        assert!(Args::try_parse_from(["vat", "--shm", "p", "--pivot"]).is_err());
        assert!(Args::try_parse_from(["vat", "--shm", "--socket", "/x"]).is_err());
    }

    #[test]
    fn one_shot_arguments_keep_their_words() {
        assert_eq!(join(&["control_ping"]), "control_ping");
        assert_eq!(
            join(&["sw_thing_add_del", "name", "two words", "count", "4"]),
            "sw_thing_add_del name \"two words\" count 4"
        );
        assert_eq!(
            join(&["x", "name", "a\"b", "s", ""]),
            r#"x name "a\"b" s """#
        );
        // The CLI text of exec passes through unquoted.
        assert_eq!(
            join(&["exec", "show", "api clients"]),
            "exec show api clients"
        );
    }
}
