//! Runs command lines: the built-ins and message commands, printing what comes back.
//!
//! [`Runner::run_line`] takes one line and returns an [`Outcome`]; it prints results on the
//! output writer and problems on the error writer, so the same code serves the interactive,
//! script and one-shot modes. Events (messages nobody waited for) are printed after each
//! command.

use std::io::Write;
use std::time::{Duration, Instant};

use vlibapi::json::{Json, Number};
use vlibapi::value::Value;
use vppinfra::unformat::{Input, ParseError};

use crate::api::{Api, MsgInfo, ReplyKind};
use crate::command::{self, CommandParseError};
use crate::session::{Answer, Session, SessionError};
use crate::stats::{self, Latency, Progress};
use crate::suggest;
use crate::transport::{self, PivotRequest};

/// A built-in command: its name, usage and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The command word.
    pub name: &'static str,
    /// Its arguments.
    pub usage: &'static str,
    /// One line of description.
    pub about: &'static str,
}

/// The built-in commands, in `help` order.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "help",
        usage: "help [<name> | syntax]",
        about: "list commands, a message's fields, or value syntax",
    },
    Builtin {
        name: "exec",
        usage: "exec <cli command>",
        about: "run a CLI command (cli_inband), print its output",
    },
    Builtin {
        name: "exec_inband",
        usage: "exec_inband <cli command>",
        about: "the same as exec",
    },
    Builtin {
        name: "dump_msg_api_table",
        usage: "dump_msg_api_table",
        about: "the server's message table (id, name_crc)",
    },
    Builtin {
        name: "get_msg_id",
        usage: "get_msg_id <name_crc | name>",
        about: "a message's id in the server's table",
    },
    Builtin {
        name: "api_versions",
        usage: "api_versions",
        about: "the server's modules and their versions",
    },
    Builtin {
        name: "ping",
        usage: "ping [count <n>] [interval <seconds>]",
        about: "control_ping round trips (5), latency statistics",
    },
    Builtin {
        name: "time",
        usage: "time <command>",
        about: "run a command, print how long it took",
    },
    Builtin {
        name: "repeat",
        usage: "repeat <n> [window <w>] <command>",
        about: "n requests, w in flight (32), print the rate",
    },
    Builtin {
        name: "events",
        usage: "events [count <n>] [timeout <seconds>]",
        about: "wait for n events (1) and print them",
    },
    Builtin {
        name: "sock_init_shm",
        usage: "sock_init_shm [size <bytes>]",
        about: "move to a private shared-memory segment (size 0: the server's default)",
    },
    Builtin {
        name: "memfd_segment_create",
        usage: "memfd_segment_create [size <bytes>]",
        about: "the same through the older request (64-bit size)",
    },
    Builtin {
        name: "quit",
        usage: "quit",
        about: "leave vat (also `exit`, or end of input)",
    },
    Builtin {
        name: "exit",
        usage: "exit",
        about: "leave vat",
    },
];

/// Size of the private segment a pivot asks for unless told: 0, which the server reads as
/// its own default (api-server's `--shm-segment-size`).
pub const DEFAULT_SHM_SIZE: u64 = 0;

/// How a line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Ok,
    /// It failed (already reported); the session goes on.
    Failed,
    /// `quit` or `exit`.
    Quit,
    /// The connection is unusable (already reported); stop.
    Fatal,
}

/// Why a command failed; each becomes a message on the error writer.
#[derive(Debug)]
enum Failure {
    /// The line does not parse.
    Parse(CommandParseError),
    /// The session failed.
    Session(SessionError),
    /// Anything else, said in words.
    Text(String),
}

impl From<CommandParseError> for Failure {
    fn from(e: CommandParseError) -> Self {
        Failure::Parse(e)
    }
}

impl From<ParseError> for Failure {
    fn from(e: ParseError) -> Self {
        Failure::Parse(e.into())
    }
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Self {
        Failure::Session(e)
    }
}

enum Flow {
    Continue,
    Quit,
}

type Result<T> = std::result::Result<T, Failure>;

/// Where output goes, and in which form.
pub struct Printer {
    out: Box<dyn Write>,
    err: Box<dyn Write>,
    json: bool,
    location: Option<String>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("json", &self.json)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Printer {
    /// Results go to `out` (as text, or one JSON object per line with `json`), problems to
    /// `err`.
    pub fn new(out: Box<dyn Write>, err: Box<dyn Write>, json: bool) -> Printer {
        Printer {
            out,
            err,
            json,
            location: None,
        }
    }

    // Write errors (a closed pipe) are ignored: there is nobody left to tell.
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    fn text(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        if !text.is_empty() && !text.ends_with('\n') {
            let _ = self.out.write_all(b"\n");
        }
    }

    fn json_line(&mut self, j: &Json) {
        let _ = writeln!(self.out, "{}", j.to_compact());
    }

    /// Reports a problem on the error writer: `error: ...`, prefixed with the script location.
    pub fn error(&mut self, text: &str) {
        let prefix = match &self.location {
            Some(l) => format!("{l}: "),
            None => String::new(),
        };
        let mut lines = text.lines();
        let _ = writeln!(
            self.err,
            "{prefix}error: {}",
            lines.next().unwrap_or_default()
        );
        for l in lines {
            let _ = writeln!(self.err, "  {l}");
        }
        let _ = self.err.flush();
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// Prints one received message, decoded, and returns its retval; a message that cannot be
    /// decoded is an error, described.
    fn message(&mut self, api: &Api, bytes: &[u8]) -> std::result::Result<Option<i32>, String> {
        let d = api.decode(bytes).map_err(|e| format!("received {e}"))?;
        if self.json {
            self.json_line(&message_json(d.info, &d.value));
        } else {
            let s = vlibapi::pretty::format_fields(
                api.schema(),
                d.info.name(),
                &d.info.def.fields,
                &d.value,
            );
            self.line(&s);
        }
        Ok(d.retval())
    }
}

/// A message as a JSON object: `_msgname`, then its fields.
pub fn message_json(info: &MsgInfo, v: &Value) -> Json {
    let mut members = vec![("_msgname".to_owned(), Json::String(info.name().to_owned()))];
    if let Json::Object(fields) = v.to_json() {
        members.extend(fields);
    }
    Json::Object(members)
}

fn num(n: u64) -> Json {
    Json::Number(Number::UInt(n))
}

fn float(x: f64) -> Json {
    Json::Number(Number::Float(x))
}

/// The name VPP gives a retval, for the common ones.
pub fn retval_name(r: i32) -> Option<&'static str> {
    Some(match r {
        -1 => "UNSPECIFIED",
        -6 => "NO_SUCH_ENTRY",
        -7 => "INVALID_VALUE",
        -9 => "UNIMPLEMENTED",
        -31 => "INVALID_REGISTRATION",
        -70 => "INVALID_MEMORY_SIZE",
        -73 => "INVALID_ARGUMENT",
        -107 => "QUEUE_FULL",
        -116 => "ENTRY_ALREADY_EXISTS",
        -126 => "UNSUPPORTED",
        _ => return None,
    })
}

fn describe_retval(r: i32) -> String {
    match retval_name(r) {
        Some(n) => format!("retval {r} ({n})"),
        None => format!("retval {r}"),
    }
}

/// Runs command lines against a session.
#[derive(Debug)]
pub struct Runner {
    /// The session.
    pub session: Session,
    printer: Printer,
    progress: bool,
}

impl Runner {
    /// A runner printing through `printer`; `progress` enables the progress line of long runs
    /// (pass whether stderr is a terminal).
    pub fn new(session: Session, printer: Printer, progress: bool) -> Runner {
        Runner {
            session,
            printer,
            progress,
        }
    }

    /// Names errors with this location (`script.vat:3`) from now on.
    pub fn set_location(&mut self, location: Option<String>) {
        self.printer.location = location;
    }

    /// Reports a problem the way command failures are reported.
    pub fn report(&mut self, text: &str) {
        self.printer.error(text);
    }

    /// Runs one line. Blank lines and `#` comments do nothing.
    pub fn run_line(&mut self, line: &str) -> Outcome {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Outcome::Ok;
        }
        let mut input = Input::new(line);
        let result = self.dispatch(&mut input);
        let outcome = match result {
            Ok(Flow::Continue) => Outcome::Ok,
            Ok(Flow::Quit) => Outcome::Quit,
            Err(f) => self.fail(line, f),
        };
        if outcome == Outcome::Fatal {
            self.printer.flush();
            return outcome;
        }
        match self.print_events() {
            Ok(()) => outcome,
            Err(f) => self.fail(line, f),
        }
    }

    /// Prints the events that have arrived; a fatal error if the connection is gone.
    pub fn poll_events(&mut self) -> Outcome {
        match self.print_events() {
            Ok(()) => Outcome::Ok,
            Err(f) => self.fail("", f),
        }
    }

    fn print_events(&mut self) -> Result<()> {
        let r = self.session.link.poll();
        for m in self.session.link.take_unclaimed() {
            if let Err(e) = self.printer.message(&self.session.api, &m) {
                self.printer.error(&e);
            }
        }
        self.printer.flush();
        r.map_err(Failure::Session)
    }

    fn fail(&mut self, line: &str, f: Failure) -> Outcome {
        self.printer.flush();
        match f {
            Failure::Parse(e) => {
                self.printer.error(&e.render(line));
                Outcome::Failed
            }
            Failure::Session(e) => {
                let fatal = e.is_fatal();
                self.printer.error(&e.to_string());
                if fatal {
                    Outcome::Fatal
                } else {
                    Outcome::Failed
                }
            }
            Failure::Text(t) => {
                self.printer.error(&t);
                Outcome::Failed
            }
        }
    }

    fn dispatch(&mut self, input: &mut Input<'_>) -> Result<Flow> {
        let start = input.checkpoint();
        let Some(word) = input.word() else {
            return Ok(Flow::Continue);
        };
        match word {
            "quit" | "exit" => {
                input.end()?;
                return Ok(Flow::Quit);
            }
            "help" => self.help(input)?,
            "exec" | "exec_inband" => self.exec(input)?,
            "dump_msg_api_table" => self.dump_table(input)?,
            "get_msg_id" => self.get_msg_id(input)?,
            "api_versions" => self.api_versions(input)?,
            "ping" => self.ping(input)?,
            "time" => {
                let begin = Instant::now();
                let flow = self.dispatch(input)?;
                let elapsed = begin.elapsed();
                if self.printer.json {
                    let j = Json::Object(vec![(
                        "time_ms".to_owned(),
                        float(elapsed.as_secs_f64() * 1e3),
                    )]);
                    self.printer.json_line(&j);
                } else {
                    self.printer
                        .line(&format!("time: {} ms", stats::ms(elapsed)));
                }
                return Ok(flow);
            }
            "repeat" => self.repeat(input)?,
            "events" => self.events(input)?,
            "sock_init_shm" => self.pivot(input, PivotRequest::SockInitShm)?,
            "memfd_segment_create" => self.pivot(input, PivotRequest::MemfdSegmentCreate)?,
            _ => {
                input.rewind(start);
                self.message_command(input)?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The message named by the next word, or an error with the nearest names.
    fn lookup<'a>(api: &'a Api, input: &mut Input<'_>) -> Result<&'a MsgInfo> {
        let start = input.checkpoint();
        let name = input.word().unwrap_or_default();
        // A name, or a name_crc as the table has it.
        let info = api
            .by_name(name)
            .or_else(|| api.id_of(name).and_then(|id| api.by_id(id)));
        if let Some(info) = info {
            return Ok(info);
        }
        input.rewind(start);
        let candidates = BUILTINS
            .iter()
            .map(|b| b.name)
            .chain(api.messages().map(MsgInfo::name));
        let hint = suggest::did_you_mean(name, candidates)
            .unwrap_or_else(|| "`help` lists the commands and messages".to_owned());
        Err(Failure::Text(format!(
            "unknown command or message `{name}`; {hint}"
        )))
    }

    fn message_command(&mut self, input: &mut Input<'_>) -> Result<()> {
        let api = &self.session.api;
        let info = Self::lookup(api, input)?;
        let value = command::parse_message_args(api.schema(), &info.def, input)?;
        let answer = self.session.link.request(api, info, &value)?;
        print_answer(&mut self.printer, api, info, &answer)
    }

    fn help(&mut self, input: &mut Input<'_>) -> Result<()> {
        let Some(topic) = input.word() else {
            let text = help_overview(&self.session.api);
            self.printer.text(&text);
            return Ok(());
        };
        input.end()?;
        if topic == "syntax" {
            self.printer.text(command::SYNTAX_HELP);
            return Ok(());
        }
        if let Some(b) = BUILTINS.iter().find(|b| b.name == topic) {
            let text = format!("{}\n  {}", b.usage, b.about);
            self.printer.line(&text);
            return Ok(());
        }
        let mut again = Input::new(topic);
        let info = Self::lookup(&self.session.api, &mut again)?;
        let text = help_message(&self.session.api, info);
        self.printer.text(&text);
        Ok(())
    }

    fn exec(&mut self, input: &mut Input<'_>) -> Result<()> {
        let cmd = input.rest_of_line().to_owned();
        if cmd.is_empty() {
            return Err(input.error("a CLI command after `exec`").into());
        }
        let api = &self.session.api;
        let (info, value) = cli_inband(api, &cmd)?;
        let answer = self.session.link.request(api, info, &value)?;
        let Some(reply) = answer.messages.last() else {
            return Err(Failure::Text("cli_inband got no reply".to_owned()));
        };
        let d = api
            .decode(reply)
            .map_err(|e| Failure::Text(format!("received {e}")))?;
        let retval = d.retval().unwrap_or(0);
        let text = d.value.get("reply").and_then(Value::as_str).unwrap_or("");
        if self.printer.json {
            self.printer.json_line(&message_json(d.info, &d.value));
        } else if retval == 0 {
            self.printer.text(text);
        }
        if retval != 0 {
            let mut msg = format!("exec `{cmd}` failed with {}", describe_retval(retval));
            if !text.trim().is_empty() && !self.printer.json {
                msg.push('\n');
                msg.push_str(text.trim_end());
            }
            return Err(Failure::Text(msg));
        }
        Ok(())
    }

    fn dump_table(&mut self, input: &mut Input<'_>) -> Result<()> {
        input.end()?;
        let table = self.session.api.table();
        if self.printer.json {
            let rows = table
                .iter()
                .map(|(id, n)| {
                    Json::Object(vec![
                        ("id".to_owned(), num(u64::from(*id))),
                        ("name_crc".to_owned(), Json::String(n.clone())),
                    ])
                })
                .collect();
            let j = Json::Object(vec![("message_table".to_owned(), Json::Array(rows))]);
            self.printer.json_line(&j);
            return Ok(());
        }
        let mut text = format!("{:>5}  {}\n", "ID", "Name");
        for (id, n) in table {
            text.push_str(&format!("{id:>5}  {n}\n"));
        }
        self.printer.text(&text);
        Ok(())
    }

    fn get_msg_id(&mut self, input: &mut Input<'_>) -> Result<()> {
        let start = input.checkpoint();
        let name = input.expect_word()?;
        input.end()?;
        let api = &self.session.api;
        let Some(id) = api.id_of(name) else {
            input.rewind(start);
            let names: Vec<&str> = api.table().values().map(String::as_str).collect();
            let hint = suggest::did_you_mean(name, names.iter().copied());
            let e = CommandParseError::from(
                input.error("a message name or name_crc in the server's table"),
            );
            return Err(Failure::Parse(match hint {
                Some(h) => e.with_hint(h),
                None => e,
            }));
        };
        let name_crc = api.table().get(&id).cloned().unwrap_or_default();
        if self.printer.json {
            let j = Json::Object(vec![
                ("name_crc".to_owned(), Json::String(name_crc)),
                ("id".to_owned(), num(u64::from(id))),
            ]);
            self.printer.json_line(&j);
        } else {
            self.printer.line(&format!("{name_crc} has id {id}"));
        }
        Ok(())
    }

    fn api_versions(&mut self, input: &mut Input<'_>) -> Result<()> {
        input.end()?;
        let api = &self.session.api;
        let info = api
            .by_name("api_versions")
            .ok_or_else(|| Failure::Text("the server does not have api_versions".to_owned()))?;
        let answer = self
            .session
            .link
            .request(api, info, &Value::Struct(vec![]))?;
        if self.printer.json {
            return print_answer(&mut self.printer, api, info, &answer);
        }
        let Some(reply) = answer.messages.last() else {
            return Err(Failure::Text("api_versions got no reply".to_owned()));
        };
        let d = api
            .decode(reply)
            .map_err(|e| Failure::Text(format!("received {e}")))?;
        let mut text = format!("{:<24} {}\n", "Module", "Version");
        if let Some(Value::Array(mods)) = d.value.get("api_versions") {
            for m in mods {
                let n = |k: &str| m.get(k).and_then(Value::as_i128).unwrap_or(0);
                let name = m.get("name").and_then(Value::as_str).unwrap_or("?");
                text.push_str(&format!(
                    "{name:<24} {}.{}.{}\n",
                    n("major"),
                    n("minor"),
                    n("patch")
                ));
            }
        }
        self.printer.text(&text);
        match d.retval() {
            Some(r) if r != 0 => Err(Failure::Text(format!(
                "api_versions_reply: {}",
                describe_retval(r)
            ))),
            _ => Ok(()),
        }
    }

    fn ping(&mut self, input: &mut Input<'_>) -> Result<()> {
        let mut count = 5u64;
        let mut interval = 0.0f64;
        loop {
            if let Some(n) = input.keyed("count", |i| i.u64())? {
                count = n;
            } else if let Some(s) = input.keyed("interval", |i| i.f64())? {
                interval = s.max(0.0);
            } else {
                break;
            }
        }
        input.end()?;
        let api = &self.session.api;
        let info = api
            .by_name("control_ping")
            .ok_or_else(|| Failure::Text("the server does not have control_ping".to_owned()))?;
        let mut samples = Vec::with_capacity(count.min(1 << 20) as usize);
        let mut lost = 0u64;
        let mut pid = None;
        let mut progress = Progress::new("ping", count, self.progress);
        for seq in 1..=count {
            if seq > 1 && interval > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(interval));
            }
            let begin = Instant::now();
            let answer = match self.session.link.request(api, info, &Value::Struct(vec![])) {
                Ok(a) => a,
                Err(SessionError::Timeout { .. }) => {
                    lost += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let rtt = begin.elapsed();
            samples.push(rtt);
            let reply = answer.messages.last().and_then(|m| api.decode(m).ok());
            if let Some(d) = &reply {
                pid = d.value.get("vpe_pid").and_then(Value::as_i128);
            }
            if interval > 0.0 && !self.printer.json {
                self.printer.line(&format!(
                    "control_ping_reply from pid {}: seq {seq} time {} ms",
                    pid.unwrap_or(0),
                    stats::ms(rtt)
                ));
                self.printer.flush();
            }
            progress.update(seq);
        }
        progress.finish();
        let received = samples.len() as u64;
        let latency = Latency::of(&mut samples);
        if self.printer.json {
            let mut m = vec![
                ("sent".to_owned(), num(count)),
                ("received".to_owned(), num(received)),
            ];
            if let Some(l) = latency {
                for (k, d) in [
                    ("min_ms", l.min),
                    ("avg_ms", l.avg),
                    ("median_ms", l.median),
                    ("p99_ms", l.p99),
                    ("max_ms", l.max),
                ] {
                    m.push((k.to_owned(), float(d.as_secs_f64() * 1e3)));
                }
            }
            self.printer
                .json_line(&Json::Object(vec![("ping".to_owned(), Json::Object(m))]));
        } else {
            let mut line = format!("ping: {count} sent, {received} received, {lost} lost");
            if let Some(l) = latency {
                line.push_str(", ");
                line.push_str(&l.render());
            }
            self.printer.line(&line);
        }
        if lost > 0 {
            return Err(Failure::Text(format!(
                "ping: {lost} of {count} control_ping(s) got no reply within {}",
                vppinfra::format::format_duration(self.session.link.timeout())
            )));
        }
        Ok(())
    }

    /// `sock_init_shm [size N]`, `memfd_segment_create [size N]`: the pivot, then where the
    /// connection is now.
    fn pivot(&mut self, input: &mut Input<'_>, how: PivotRequest) -> Result<()> {
        let size = input
            .keyed("size", |i| i.memory_size())?
            .unwrap_or(DEFAULT_SHM_SIZE);
        input.end()?;
        let link = &mut self.session.link;
        link.pivot(size, how)?;
        let kind = transport::kind_name(link.kind());
        let index = link.client_index();
        if self.printer.json {
            let j = Json::Object(vec![(
                how.name().to_owned(),
                Json::Object(vec![
                    ("transport".to_owned(), Json::String(kind.to_owned())),
                    ("client_index".to_owned(), num(u64::from(index))),
                ]),
            )]);
            self.printer.json_line(&j);
        } else {
            self.printer.line(&format!(
                "{}: now on {}, client index {index:#010x}",
                how.name(),
                link.describe()
            ));
        }
        Ok(())
    }

    fn repeat(&mut self, input: &mut Input<'_>) -> Result<()> {
        let total = input.u64()?;
        let window = input.keyed("window", |i| i.usize())?.unwrap_or(32).max(1);
        input.skip_whitespace();
        let inner = input.checkpoint();
        let api = &self.session.api;
        let (info, value) = match input.word() {
            Some("exec" | "exec_inband") => {
                let cmd = input.rest_of_line().to_owned();
                cli_inband(api, &cmd)?
            }
            Some(_) => {
                input.rewind(inner);
                let info = Self::lookup(api, input)?;
                let value = command::parse_message_args(api.schema(), &info.def, input)?;
                (info, value)
            }
            None => return Err(input.error("a message command to repeat").into()),
        };
        let mut progress = Progress::new(&format!("repeat {}", info.name()), total, self.progress);
        let report = self
            .session
            .link
            .burst(api, info, &value, total, window, &mut |done| {
                progress.update(done)
            });
        progress.finish();
        let report = report?;
        let secs = report.elapsed.as_secs_f64();
        let rate = report.completed as f64 / secs.max(1e-9);
        if self.printer.json {
            let j = Json::Object(vec![(
                "repeat".to_owned(),
                Json::Object(vec![
                    ("message".to_owned(), Json::String(info.name().to_owned())),
                    ("requests".to_owned(), num(report.completed)),
                    ("window".to_owned(), num(window as u64)),
                    ("seconds".to_owned(), float(secs)),
                    ("per_second".to_owned(), float(rate)),
                    ("failed".to_owned(), num(report.failed)),
                ]),
            )]);
            self.printer.json_line(&j);
        } else {
            self.printer.line(&format!(
                "repeat: {} {} in {}: {} (window {window}), {} failed",
                report.completed,
                info.name(),
                vppinfra::format::format_duration(report.elapsed),
                vppinfra::format::format_rate(rate),
                report.failed
            ));
        }
        if report.failed > 0 {
            return Err(Failure::Text(format!(
                "repeat: {} of {} {} failed (first with {})",
                report.failed,
                report.completed,
                info.name(),
                describe_retval(report.first_retval.unwrap_or(0))
            )));
        }
        Ok(())
    }

    fn events(&mut self, input: &mut Input<'_>) -> Result<()> {
        let mut count = 1u64;
        let mut timeout = self.session.link.timeout();
        loop {
            if let Some(n) = input.keyed("count", |i| i.u64())? {
                count = n;
            } else if let Some(s) = input.keyed("timeout", |i| i.f64())? {
                timeout = Duration::from_secs_f64(s.max(0.0));
            } else {
                break;
            }
        }
        input.end()?;
        let deadline = Instant::now() + timeout;
        let mut seen = 0u64;
        while seen < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(m) = self.session.link.next_unclaimed(left)? else {
                if left.is_zero() {
                    break;
                }
                continue;
            };
            seen += 1;
            if let Err(e) = self.printer.message(&self.session.api, &m) {
                self.printer.error(&e);
            }
            self.printer.flush();
        }
        if seen < count {
            return Err(Failure::Text(format!(
                "events: {seen} of {count} event(s) arrived within {}",
                vppinfra::format::format_duration(timeout)
            )));
        }
        Ok(())
    }
}

/// `cli_inband` with `cmd`, ready to send.
fn cli_inband<'a>(api: &'a Api, cmd: &str) -> Result<(&'a MsgInfo, Value)> {
    let info = api
        .by_name("cli_inband")
        .ok_or_else(|| Failure::Text("the server does not have cli_inband".to_owned()))?;
    let value = Value::Struct(vec![("cmd".to_owned(), Value::String(cmd.to_owned()))]);
    Ok((info, value))
}

/// Prints an answer and checks every retval in it.
fn print_answer(printer: &mut Printer, api: &Api, info: &MsgInfo, answer: &Answer) -> Result<()> {
    let mut failures = Vec::new();
    for m in answer.messages.iter().chain(&answer.ping_reply) {
        let is_ping = answer.ping_reply.as_ref() == Some(m);
        let retval = if is_ping {
            // A dump's closing ping is not printed, only checked.
            api.decode(m).ok().and_then(|d| d.retval())
        } else {
            match printer.message(api, m) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            }
        };
        if let Some(r) = retval.filter(|&r| r != 0) {
            let name = api
                .decode(m)
                .map(|d| d.info.name().to_owned())
                .unwrap_or_default();
            failures.push(format!("{name}: {}", describe_retval(r)));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Text(format!(
            "{} failed: {}",
            info.name(),
            failures.join("; ")
        )))
    }
}

/// `help` without arguments.
pub fn help_overview(api: &Api) -> String {
    let mut s = String::from("Built-in commands:\n");
    let width = BUILTINS.iter().map(|b| b.usage.len()).max().unwrap_or(0);
    for b in BUILTINS {
        s.push_str(&format!("  {:width$}  {}\n", b.usage, b.about));
    }
    s.push_str("\nMessages (`help <message>` lists its fields):\n");
    for m in api.modules() {
        let names: Vec<&str> = api
            .messages()
            .filter(|i| i.module == m.name)
            .map(MsgInfo::name)
            .collect();
        if names.is_empty() {
            continue;
        }
        s.push_str(&format!("  {} {}:\n", m.name, m.version));
        let mut line = String::from("   ");
        for n in names {
            if line.len() + n.len() + 1 > 78 && line.len() > 3 {
                s.push_str(&line);
                s.push('\n');
                line = String::from("   ");
            }
            line.push(' ');
            line.push_str(n);
        }
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str(
        "\nA message command is the name and `field value` pairs: \
         sw_thing_add_del name foo count 4 enable\n\
         `help syntax` explains values (numbers, strings, enums, { structs }, [ arrays ]).\n",
    );
    s
}

/// `help <message>`.
pub fn help_message(api: &Api, info: &MsgInfo) -> String {
    let answered = match &info.reply {
        ReplyKind::None => "no reply is awaited".to_owned(),
        ReplyKind::Single { reply } => format!("replies {reply}"),
        ReplyKind::Dump { details } => format!("dump: {details} until control_ping_reply"),
        ReplyKind::StreamThenReply { details, reply } => format!("stream: {details}, then {reply}"),
    };
    let mut s = format!(
        "{} (module {}, id {}, {}): {answered}\n",
        info.name(),
        info.module,
        info.id,
        info.name_crc
    );
    let mut lines = Vec::new();
    command::describe_fields(api.schema(), &info.def.fields, true, 2, &mut lines);
    if lines.is_empty() {
        s.push_str("  (no fields to set)\n");
    }
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    let filled: Vec<&str> = command::FILLED_BY_VAT
        .iter()
        .copied()
        .filter(|f| info.has_field(f))
        .collect();
    if !filled.is_empty() {
        s.push_str(&format!("  ({} filled in by vat)\n", filled.join(" and ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Fake;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.borrow_mut())).unwrap()
        }
    }

    fn runner_over(fake: Fake, json: bool) -> (Runner, Shared, Shared) {
        let (out, err) = (Shared::default(), Shared::default());
        let session = Session::over(Box::new(fake), Duration::from_millis(50)).unwrap();
        let printer = Printer::new(Box::new(out.clone()), Box::new(err.clone()), json);
        (Runner::new(session, printer, false), out, err)
    }

    fn runner(json: bool) -> (Runner, Shared, Shared) {
        runner_over(Fake::new(), json)
    }

    #[test]
    fn prints_replies_details_and_events() {
        let (mut r, out, err) = runner(false);
        assert_eq!(r.run_line("poke value 1 color COLOR_BLUE"), Outcome::Ok);
        let text = out.take();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "poke_reply { context: 3, retval: 0, value: 2, color: COLOR_BLUE }"
        );
        // The event that came with it is printed after the command's output.
        assert!(
            lines[1].starts_with("tick_event { client_index: "),
            "{text}"
        );
        assert_eq!(r.run_line("thing_dump count 2"), Outcome::Ok);
        assert_eq!(
            out.take(),
            "thing_details { context: 4, index: 0 }\nthing_details { context: 4, index: 1 }\n"
        );
        assert_eq!(r.run_line("thing_get"), Outcome::Ok);
        assert_eq!(
            out.take().lines().last(),
            Some("thing_get_reply { context: 5, retval: 0, cursor: 2 }")
        );
        assert_eq!(r.run_line("   # a comment"), Outcome::Ok);
        assert_eq!(r.run_line(""), Outcome::Ok);
        assert_eq!(r.run_line("time oneway"), Outcome::Ok);
        assert!(out.take().starts_with("time: "));
        assert_eq!(err.take(), "");
    }

    #[test]
    fn failures_are_reported_with_location() {
        let (mut r, out, err) = runner(false);
        r.set_location(Some("t.vat:3".into()));
        assert_eq!(r.run_line("fail retval -6"), Outcome::Failed);
        assert_eq!(out.take(), "fail_reply { context: 3, retval: -6 }\n");
        assert_eq!(
            err.take(),
            "t.vat:3: error: fail failed: fail_reply: retval -6 (NO_SUCH_ENTRY)\n"
        );
        assert_eq!(r.run_line("poke color green"), Outcome::Failed);
        assert_eq!(
            err.take(),
            "t.vat:3: error: expected a value of enum color or a number for `color` (enum color) \
             at column 12, found \"green\"\n  poke color green\n             ^\n  \
             values: COLOR_RED, COLOR_BLUE\n"
        );
        assert_eq!(r.run_line("silent"), Outcome::Failed);
        assert!(
            err.take()
                .contains("timed out after 50.000ms waiting for silent_reply")
        );
        assert_eq!(r.run_line("thing_dmp"), Outcome::Failed);
        assert_eq!(
            err.take(),
            "t.vat:3: error: unknown command or message `thing_dmp`; \
             did you mean `thing_dump` or `thing_get`?\n"
        );
        // The fake cannot pivot: the refusal is said, and the session goes on.
        assert_eq!(r.run_line("sock_init_shm size 2m"), Outcome::Failed);
        assert_eq!(
            err.take(),
            "t.vat:3: error: sock_init_shm: cannot move to shared memory: the in-process test \
             server has no shared memory\n"
        );
        assert_eq!(r.run_line("memfd_segment_create size 1g"), Outcome::Failed);
        assert!(err.take().contains("memfd_segment_create: cannot move"));
        assert_eq!(r.run_line("sock_init_shm size 2m extra"), Outcome::Failed);
        assert!(err.take().contains("expected end of input"));
        assert_eq!(
            r.run_line("memfd_segment_create size lots"),
            Outcome::Failed
        );
        assert!(err.take().contains("expected a memory size"));
        assert_eq!(r.run_line("repeat 3 fail retval 1"), Outcome::Failed);
        assert!(
            err.take()
                .contains("repeat: 3 of 3 fail failed (first with retval 1)")
        );
        assert_eq!(r.run_line("quit now"), Outcome::Failed);
        assert_eq!(r.run_line("exit"), Outcome::Quit);
    }

    #[test]
    fn json_output() {
        let (mut r, out, _err) = runner(true);
        assert_eq!(r.run_line("poke value 5"), Outcome::Ok);
        let text = out.take();
        let first = vlibapi::json::parse(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first.get("_msgname").and_then(Json::as_str),
            Some("poke_reply")
        );
        assert_eq!(first.get("value").and_then(Json::as_u64), Some(6));
        assert_eq!(r.run_line("repeat 5 window 2 poke"), Outcome::Ok);
        let text = out.take();
        let summary = text.lines().next().unwrap();
        let j = vlibapi::json::parse(summary).unwrap();
        assert_eq!(
            j.get("repeat")
                .and_then(|r| r.get("requests"))
                .and_then(Json::as_u64),
            Some(5)
        );
        // The five events of the burst follow, as JSON too.
        assert_eq!(text.lines().filter(|l| l.contains("tick_event")).count(), 5);
    }

    #[test]
    fn help_and_table() {
        let (mut r, out, _err) = runner(false);
        assert_eq!(r.run_line("help poke"), Outcome::Ok);
        let text = out.take();
        assert!(text.starts_with("poke (module t, id "), "{text}");
        assert!(text.contains("replies poke_reply"), "{text}");
        assert!(
            text.contains("  color  enum color\n      COLOR_RED=1 COLOR_BLUE=2\n"),
            "{text}"
        );
        assert_eq!(r.run_line("help thing_get"), Outcome::Ok);
        assert!(
            out.take()
                .contains("stream: thing_details, then thing_get_reply")
        );
        assert_eq!(r.run_line("help"), Outcome::Ok);
        let text = out.take();
        assert!(
            text.contains("t 3.2.1:\n    fail fail_reply oneway poke"),
            "{text}"
        );
        // A message by its name_crc.
        let name_crc = r.session.api.by_name("thing_get").unwrap().name_crc.clone();
        assert_eq!(r.run_line(&name_crc), Outcome::Ok);
        assert!(out.take().contains("thing_get_reply"));
        assert_eq!(r.run_line("get_msg_id thing_get"), Outcome::Ok);
        assert!(out.take().starts_with("thing_get_"));
        assert_eq!(r.run_line("dump_msg_api_table"), Outcome::Ok);
        assert!(out.take().contains("    1  memclnt_create_9c5e1c2f\n"));
    }

    #[test]
    fn a_lost_server_is_fatal() {
        let (mut r, _out, err) = runner_over(Fake::new().hang_up_after(3), false);
        assert_eq!(r.run_line("poke"), Outcome::Ok);
        assert_eq!(r.run_line("poke"), Outcome::Fatal);
        assert_eq!(
            err.take(),
            "error: the server closed the connection (server gone)\n"
        );
    }
}
