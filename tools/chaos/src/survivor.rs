//! A client that lives through the storm: synchronous requests, pipelined bursts, large replies
//! and dumps, over its transport, for the storm's length. Every request has its own context;
//! every reply must arrive exactly once, for its context, and say what it should. It prints
//! one summary line, `survivor key=value ...`, and exits 0 when all was well.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vlibapi::msgs::{memclnt, vlib_api};
use vlibsocket::client::{ClientOptions, SocketClient};

use crate::victim::Rng;

/// What a survivor counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Requests sent.
    pub(crate) requests: u64,
    /// Replies received for their context and correct.
    pub(crate) ok: u64,
    /// Replies that arrived again, or for no request in flight.
    pub(crate) dup: u64,
    /// Requests whose reply never came.
    pub(crate) missing: u64,
    /// Replies with the wrong content (another client's index, another server's pid, an error).
    pub(crate) wrong: u64,
    /// Round-trip percentiles of the synchronous requests, in microseconds.
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
}

impl Tally {
    /// The summary line.
    pub(crate) fn line(&self, name: &str, transport: &str) -> String {
        format!(
            "survivor name={name} transport={transport} requests={} ok={} dup={} missing={} \
             wrong={} p50_us={} p99_us={} max_us={}",
            self.requests,
            self.ok,
            self.dup,
            self.missing,
            self.wrong,
            self.p50_us,
            self.p99_us,
            self.max_us
        )
    }

    /// Reads a summary line back: (name, transport, tally).
    pub(crate) fn parse(line: &str) -> Option<(String, String, Tally)> {
        let rest = line.trim().strip_prefix("survivor ")?;
        let mut t = Tally::default();
        let (mut name, mut transport) = (None, None);
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let n = || v.parse::<u64>().ok();
            match k {
                "name" => name = Some(v.to_owned()),
                "transport" => transport = Some(v.to_owned()),
                "requests" => t.requests = n()?,
                "ok" => t.ok = n()?,
                "dup" => t.dup = n()?,
                "missing" => t.missing = n()?,
                "wrong" => t.wrong = n()?,
                "p50_us" => t.p50_us = n()?,
                "p99_us" => t.p99_us = n()?,
                "max_us" => t.max_us = n()?,
                _ => {}
            }
        }
        Some((name?, transport?, t))
    }

    /// True when every request got exactly its reply.
    pub(crate) fn clean(&self) -> bool {
        self.dup == 0 && self.missing == 0 && self.wrong == 0 && self.ok == self.requests
    }
}

/// Runs a survivor for `seconds`.
pub(crate) fn run(
    transport: &str,
    name: &str,
    socket: &Path,
    prefix: &str,
    seconds: f64,
) -> ExitCode {
    let mut opts = ClientOptions::new(name);
    opts.timeout = Duration::from_secs(10);
    let connected = match transport {
        "socket" => SocketClient::connect_with(socket, &opts),
        "pivot" => SocketClient::connect_with(socket, &opts).and_then(|mut c| {
            c.pivot(1 << 20, None)?;
            Ok(c)
        }),
        "named" => SocketClient::attach_by_name(Some(prefix), &opts),
        other => {
            eprintln!("survivor: unknown transport {other}");
            return ExitCode::FAILURE;
        }
    };
    let mut c = match connected {
        Ok(c) => c,
        Err(e) => {
            eprintln!("survivor {name}: cannot connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tally = work(&mut c, Duration::from_secs_f64(seconds));
    if let Err(e) = c.disconnect() {
        eprintln!("survivor {name}: disconnect: {e}");
    }
    println!("{}", tally.line(name, transport));
    if tally.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn work(c: &mut SocketClient, length: Duration) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(u64::from(std::process::id()) << 17 | 0x5eed);
    let me = c.client_index();
    let mut server_pid = None;
    let mut rtts: Vec<Duration> = Vec::new();
    let ping_reply_id = c.id_of::<memclnt::ControlPingReply>().ok();
    let mut check_ping = |t: &mut Tally, r: Result<memclnt::ControlPingReply, _>| match r {
        Ok(r) => {
            let pid = *server_pid.get_or_insert(r.vpe_pid);
            if r.client_index == me && r.vpe_pid == pid && r.retval == 0 {
                t.ok += 1;
            } else {
                t.wrong += 1;
            }
        }
        Err(vlibsocket::client::ClientError::Timeout { .. }) => t.missing += 1,
        Err(_) => t.wrong += 1,
    };
    let start = Instant::now();
    while start.elapsed() < length {
        match rng.below(20) {
            0 => {
                // A reply larger than any ring slot: the segment heap on shared memory.
                t.requests += 1;
                match c.request::<_, memclnt::GetApiJsonReply>(&memclnt::GetApiJson::default()) {
                    Ok(r) if !r.json.is_empty() => t.ok += 1,
                    Ok(_) => t.wrong += 1,
                    Err(vlibsocket::client::ClientError::Timeout { .. }) => t.missing += 1,
                    Err(_) => t.wrong += 1,
                }
            }
            1 => {
                t.requests += 1;
                match c.dump::<_, vlib_api::ApiClientDetails>(&vlib_api::ApiClientDump::default()) {
                    Ok(list) if list.iter().any(|d| d.index == me) => t.ok += 1,
                    Ok(_) => t.wrong += 1,
                    Err(vlibsocket::client::ClientError::Timeout { .. }) => t.missing += 1,
                    Err(_) => t.wrong += 1,
                }
            }
            2..=5 => {
                let n = 1 + rng.below(64);
                let mut ctxs = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    match c.send(&memclnt::ControlPing::default()) {
                        Ok(ctx) => {
                            t.requests += 1;
                            ctxs.push(ctx);
                        }
                        Err(_) => t.wrong += 1,
                    }
                }
                if c.flush().is_err() {
                    t.wrong += 1;
                }
                for ctx in ctxs {
                    let r = c.wait_reply::<memclnt::ControlPingReply>(ctx);
                    check_ping(&mut t, r);
                }
            }
            _ => {
                t.requests += 1;
                let at = Instant::now();
                let r = c.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default());
                rtts.push(at.elapsed());
                check_ping(&mut t, r);
            }
        }
        // Anything that arrives unasked is a reply delivered twice, or to the wrong client.
        while let Ok(Some(e)) = c.next_event(Duration::ZERO) {
            if Some(e.id) == ping_reply_id
                || e.name_crc.as_deref().is_some_and(|n| n.contains("_reply"))
            {
                t.dup += 1;
            }
        }
    }
    while let Ok(Some(e)) = c.next_event(Duration::from_millis(50)) {
        if Some(e.id) == ping_reply_id
            || e.name_crc.as_deref().is_some_and(|n| n.contains("_reply"))
        {
            t.dup += 1;
        }
    }
    rtts.sort_unstable();
    let at = |q: f64| {
        rtts.get(((rtts.len() as f64 * q) as usize).min(rtts.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros() as u64)
    };
    t.p50_us = at(0.5);
    t.p99_us = at(0.99);
    t.max_us = rtts.last().map_or(0, |d| d.as_micros() as u64);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_reads_back() {
        let t = Tally {
            requests: 10,
            ok: 9,
            dup: 1,
            missing: 0,
            wrong: 1,
            p50_us: 40,
            p99_us: 400,
            max_us: 4000,
        };
        let line = t.line("s1", "named");
        assert_eq!(
            Tally::parse(&line),
            Some(("s1".to_owned(), "named".to_owned(), t.clone()))
        );
        assert!(!t.clean());
        assert!(Tally::parse("test x ... survivor").is_none());
    }
}
