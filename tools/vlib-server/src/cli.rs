//! The server's debug CLI, reached through `cli_inband` (command text in, text out).
//!
//! Commands are word paths (`show api clients`). Each input word may be abbreviated to any
//! unique prefix, as in VPP (`sh api cl`). The server's own commands need its internals and are
//! matched by the server; modules add theirs with [`Cli::add`].

use vppinfra::unformat::Input;

/// What a command returns: its output, or an error text (sent with retval -1, as VPP does).
pub type CliResult = Result<String, String>;

/// A command handler: it gets the input positioned after the command's words.
pub type CliFn = Box<dyn FnMut(&mut Input<'_>) -> CliResult>;

/// A registered command.
pub struct Command {
    /// The words of the command, e.g. `["show", "thing"]`.
    pub words: Vec<String>,
    /// One line of help.
    pub help: String,
    run: Option<CliFn>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("words", &self.words)
            .field("help", &self.help)
            .finish()
    }
}

/// The result of looking a command line up.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Command number `usize` matched; the input was advanced past its words.
    Found(usize),
    /// No command matches.
    Unknown,
    /// Several commands match equally well.
    Ambiguous(Vec<String>),
}

/// A set of commands.
#[derive(Debug, Default)]
pub struct Cli {
    commands: Vec<Command>,
}

impl Cli {
    /// An empty CLI.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a command with a handler (`path` is space-separated words).
    pub fn add(&mut self, path: &str, help: &str, run: CliFn) {
        self.commands.push(Command {
            words: path.split_whitespace().map(str::to_owned).collect(),
            help: help.to_owned(),
            run: Some(run),
        });
    }

    /// Adds a command whose handler lives elsewhere (the server's built-ins).
    pub fn add_builtin(&mut self, path: &str, help: &str) {
        self.commands.push(Command {
            words: path.split_whitespace().map(str::to_owned).collect(),
            help: help.to_owned(),
            run: None,
        });
    }

    /// The registered commands.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// Finds the command `input` starts with and advances past its words. The longest match
    /// wins; equal matches of different commands are ambiguous.
    pub fn lookup(&self, input: &mut Input<'_>) -> Lookup {
        let start = input.checkpoint();
        let mut words = Vec::new();
        while let Some(w) = input.word() {
            words.push(w);
        }
        input.rewind(start);
        let mut best: Vec<usize> = Vec::new();
        let mut best_len = 0;
        for (i, c) in self.commands.iter().enumerate() {
            let n = c.words.len();
            if n == 0 || n > words.len() {
                continue;
            }
            let matches = c
                .words
                .iter()
                .zip(&words)
                .all(|(cw, iw)| cw.starts_with(*iw));
            if !matches {
                continue;
            }
            // An exact word beats an abbreviation of the same length (`show` vs `sh`).
            if n > best_len {
                best_len = n;
                best = vec![i];
            } else if n == best_len {
                best.push(i);
            }
        }
        if best.len() > 1 {
            // Prefer the commands whose words match exactly, if that leaves one.
            let exact: Vec<usize> = best
                .iter()
                .copied()
                .filter(|&i| {
                    self.commands[i]
                        .words
                        .iter()
                        .zip(&words)
                        .all(|(a, b)| a == b)
                })
                .collect();
            if exact.len() == 1 {
                best = exact;
            }
        }
        match best.as_slice() {
            [] => Lookup::Unknown,
            [i] => {
                for _ in 0..best_len {
                    input.word();
                }
                Lookup::Found(*i)
            }
            many => Lookup::Ambiguous(
                many.iter()
                    .map(|&i| self.commands[i].words.join(" "))
                    .collect(),
            ),
        }
    }

    /// Runs command `i` if it has its own handler; `None` for built-ins.
    pub fn run(&mut self, i: usize, input: &mut Input<'_>) -> Option<CliResult> {
        let run = self.commands.get_mut(i)?.run.as_mut()?;
        Some(run(input))
    }

    /// The help listing: every command and its line of help, sorted.
    pub fn help(&self) -> String {
        let mut rows: Vec<(String, &str)> = self
            .commands
            .iter()
            .map(|c| (c.words.join(" "), c.help.as_str()))
            .collect();
        rows.sort();
        let width = rows.iter().map(|(w, _)| w.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (w, h) in rows {
            out.push_str(&format!("  {w:<width$}  {h}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Cli {
        let mut c = Cli::new();
        c.add_builtin("show version", "v");
        c.add_builtin("show api clients", "c");
        c.add_builtin("show api ring", "r");
        c.add(
            "show thing",
            "t",
            Box::new(|i| Ok(format!("thing [{}]", i.rest_of_line()))),
        );
        c
    }

    #[test]
    fn full_and_abbreviated_words_match() {
        let c = cli();
        let mut i = Input::new("show version");
        assert_eq!(c.lookup(&mut i), Lookup::Found(0));
        let mut i = Input::new("sh api cl");
        assert_eq!(c.lookup(&mut i), Lookup::Found(1));
        assert!(i.eof());
    }

    #[test]
    fn ambiguous_and_unknown_are_reported() {
        let c = cli();
        let mut i = Input::new("show api");
        assert_eq!(c.lookup(&mut i), Lookup::Unknown);
        let mut i = Input::new("show api r");
        assert_eq!(c.lookup(&mut i), Lookup::Found(2));
        let mut i = Input::new("sh");
        assert_eq!(c.lookup(&mut i), Lookup::Unknown);
        let mut c2 = cli();
        c2.add_builtin("show api rx", "x");
        let mut i = Input::new("show api r");
        assert!(matches!(c2.lookup(&mut i), Lookup::Ambiguous(v) if v.len() == 2));
        let mut i = Input::new("frobnicate");
        assert_eq!(c.lookup(&mut i), Lookup::Unknown);
    }

    #[test]
    fn module_commands_run_with_the_rest_of_the_line() {
        let mut c = cli();
        let mut i = Input::new("show thing a b");
        let Lookup::Found(n) = c.lookup(&mut i) else {
            panic!("not found")
        };
        assert_eq!(c.run(n, &mut i), Some(Ok("thing [a b]".to_owned())));
        assert_eq!(
            c.run(0, &mut Input::new("")),
            None,
            "built-ins run elsewhere"
        );
        assert!(c.help().contains("show thing"));
    }
}
