//! `chaos`: crash storms against the API server, and the checks that it comes out of them as it
//! went in.
//!
//! `chaos run` starts an `api-server` (with a named shared-memory segment), measures it at rest
//! (probe round trips over the socket and over shared memory, open fds, mapped memfd segments,
//! registrations as `show api clients` and `api_client_dump` list them, resident memory), then
//! for the length of the storm keeps `--clients` client processes alive, each started at one
//! of the kill points of [`victim`] and killed there with SIGKILL: right after connecting,
//! mid-frame, with requests pipelined, mid-pivot, with ring slots written but not enqueued,
//! holding the server's replies, or at a random moment while it sends and receives over the
//! socket, a private segment or the named segment. Meanwhile surviving clients ([`survivor`])
//! on every transport send synchronous and pipelined requests and check that every reply
//! arrives exactly once. Afterwards the server must answer the probe as fast as before, and its
//! fds, segments and registrations must be exactly as before, its resident memory within a small
//! documented slack. It prints a summary (and, with `--markdown`, a block for RELIABILITY.md)
//! and exits non-zero on any violation.
//!
//! The same binary plays the storm's clients (`chaos victim`, `chaos survivor`): the driver
//! runs itself with those subcommands.
#![forbid(unsafe_code)]

mod driver;
mod procfs;
mod survivor;
mod victim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Crash storms against the API server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs a storm against a fresh server and checks it afterwards.
    Run(driver::RunArgs),
    /// One storm client: runs to its kill point (internal).
    #[command(hide = true)]
    Victim {
        /// The kill point.
        point: String,
        /// The server's socket.
        socket: PathBuf,
        /// The server's shared-memory prefix.
        prefix: String,
        /// Seed for the client's choices.
        seed: u64,
    },
    /// A client that lives through the storm and checks its replies (internal).
    #[command(hide = true)]
    Survivor {
        /// `socket`, `pivot` or `named`.
        transport: String,
        /// Its name.
        name: String,
        /// The server's socket.
        socket: PathBuf,
        /// The server's shared-memory prefix.
        prefix: String,
        /// How long to run, in seconds.
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.cmd {
        Cmd::Run(run) => driver::run(&run),
        Cmd::Victim {
            point,
            socket,
            prefix,
            seed,
        } => victim::run(&point, &socket, &prefix, seed),
        Cmd::Survivor {
            transport,
            name,
            socket,
            prefix,
            seconds,
        } => survivor::run(&transport, &name, &socket, &prefix, seconds),
    }
}
