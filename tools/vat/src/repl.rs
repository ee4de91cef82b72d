//! Interactive mode: line editing, history and tab completion (rustyline).
//!
//! Completion is computed by [`Completions::complete`], a pure function of the line and the
//! cursor: the first word completes to built-ins and message names; after a message name, to
//! the fields not given yet, or after an enum field to its value names; `help`, `time` and
//! `repeat` complete what they take.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use vlibapi::schema::{ArrayKind, BaseType, NamedType, TypeLookup, TypeRef};

use crate::api::Api;
use crate::command;
use crate::runner::{BUILTINS, Outcome, Runner};

/// What a field's value completes to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldValue {
    /// A bool: the field alone is a flag, so the next word may be another field.
    Flag,
    /// Names of enum values or flags.
    Names(Vec<String>),
    /// Anything else (no completion).
    Free,
}

/// Everything completion needs, copied out of the [`Api`].
#[derive(Debug, Clone, Default)]
pub struct Completions {
    /// Built-ins and requests: what a line starts with.
    commands: Vec<String>,
    /// Built-ins and every message: what `help` takes.
    topics: Vec<String>,
    fields: BTreeMap<String, Vec<(String, FieldValue)>>,
}

impl Completions {
    /// Indexes the built-ins and the API's messages and fields.
    pub fn new(api: &Api) -> Completions {
        let mut commands: Vec<String> = BUILTINS.iter().map(|b| b.name.to_owned()).collect();
        let mut topics = commands.clone();
        topics.push("syntax".to_owned());
        let mut fields = BTreeMap::new();
        for m in api.messages() {
            topics.push(m.name().to_owned());
            if !m.is_answer {
                commands.push(m.name().to_owned());
            }
            let fs = command::settable_fields(&m.def.fields, true)
                .map(|f| (f.name.clone(), field_value(api.schema(), &f.ty, &f.array)))
                .collect();
            fields.insert(m.name().to_owned(), fs);
        }
        for list in [&mut commands, &mut topics] {
            list.sort();
            list.dedup();
        }
        Completions {
            commands,
            topics,
            fields,
        }
    }

    /// The start of the word at `pos` and its candidates, sorted.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = line.get(..pos).unwrap_or(line);
        let partial_start = before.rfind(char::is_whitespace).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        let partial = &before[partial_start..];
        let words: Vec<&str> = before[..partial_start].split_whitespace().collect();
        let mut out: Vec<String> = self
            .candidates(&words)
            .into_iter()
            .filter(|c| c.starts_with(partial))
            .collect();
        out.sort();
        out.dedup();
        (partial_start, out)
    }

    /// Candidates for the word after `words`. The first word completes to built-ins and
    /// requests only (replies, details and events can be sent but rarely are).
    fn candidates(&self, words: &[&str]) -> Vec<String> {
        let Some((&first, rest)) = words.split_first() else {
            return self.commands.clone();
        };
        let unused = |options: &[&str]| -> Vec<String> {
            match rest.last() {
                // After a keyword comes its value.
                Some(last) if options.contains(last) => Vec::new(),
                _ => options
                    .iter()
                    .filter(|o| !rest.contains(o))
                    .map(|o| (*o).to_owned())
                    .collect(),
            }
        };
        match first {
            "help" if rest.is_empty() => self.topics.clone(),
            "time" => self.candidates(rest),
            "repeat" => {
                // repeat N [window W] <command...>
                let skip = match rest {
                    [] => return Vec::new(),
                    [_n] => {
                        return vec!["window".to_owned()]
                            .into_iter()
                            .chain(self.commands.clone())
                            .collect();
                    }
                    [_n, "window"] => return Vec::new(),
                    [_n, "window", _w, ..] => 3,
                    [_n, ..] => 1,
                };
                self.candidates(&rest[skip..])
            }
            "ping" => unused(&["count", "interval"]),
            "events" => unused(&["count", "timeout"]),
            "sock_init_shm" | "memfd_segment_create" => unused(&["size"]),
            name => match self.fields.get(name) {
                Some(fields) => field_candidates(fields, rest),
                None => Vec::new(),
            },
        }
    }
}

/// After `message w1 w2 ...`: the value names of an enum field just named, else the fields not
/// given yet. Walks the words as the parser would: a field name, then its value unless it is a
/// flag.
fn field_candidates(fields: &[(String, FieldValue)], rest: &[&str]) -> Vec<String> {
    let mut used = Vec::new();
    let mut expecting: Option<&FieldValue> = None;
    for w in rest {
        if expecting.take().is_some() {
            continue;
        }
        if let Some((name, kind)) = fields.iter().find(|(n, _)| n == w) {
            used.push(name.as_str());
            if *kind != FieldValue::Flag {
                expecting = Some(kind);
            }
        }
    }
    match expecting {
        Some(FieldValue::Names(names)) => names.clone(),
        Some(_) => Vec::new(),
        None => fields
            .iter()
            .filter(|(n, _)| !used.contains(&n.as_str()))
            .map(|(n, _)| n.clone())
            .collect(),
    }
}

fn field_value(types: &dyn TypeLookup, ty: &TypeRef, array: &ArrayKind) -> FieldValue {
    if *array != ArrayKind::None {
        return FieldValue::Free;
    }
    match ty {
        TypeRef::Base(BaseType::Bool) => FieldValue::Flag,
        TypeRef::Named(n) => match types.named(n) {
            Some(NamedType::Enum(e) | NamedType::EnumFlags(e)) => {
                FieldValue::Names(e.values.iter().map(|(n, _)| n.clone()).collect())
            }
            Some(NamedType::Alias(a)) if a.length.is_none() => {
                field_value(types, &a.ty, &ArrayKind::None)
            }
            _ => FieldValue::Free,
        },
        _ => FieldValue::Free,
    }
}

/// The rustyline helper: completion only.
#[derive(Debug)]
pub struct VatHelper {
    completions: Completions,
}

impl Completer for VatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = self.completions.complete(line, pos);
        let pairs = words
            .into_iter()
            .map(|w| Pair {
                replacement: format!("{w} "),
                display: w,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for VatHelper {
    type Hint = String;
}

impl Highlighter for VatHelper {}

impl Validator for VatHelper {}

impl Helper for VatHelper {}

/// Where history is kept: `$XDG_STATE_HOME/vat/history`, else `~/.local/state/vat/history`.
pub fn default_history_path() -> Option<PathBuf> {
    history_path_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn history_path_from(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let state = xdg_state_home
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            home.filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(state.join("vat/history"))
}

/// The interactive loop, until `quit`, end of input or a fatal error. Returns
/// [`Outcome::Ok`] if every command succeeded, [`Outcome::Failed`] if one failed, and
/// [`Outcome::Fatal`] if the connection was lost (already reported).
pub fn run(runner: &mut Runner, history: Option<PathBuf>) -> Result<Outcome, ReadlineError> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(true)
        .max_history_size(10_000)?
        .history_ignore_dups(true)?
        .build();
    let mut editor: Editor<VatHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(VatHelper {
        completions: Completions::new(&runner.session.api),
    }));
    if let Some(path) = &history {
        // A missing history file is the first run; nothing to load.
        let _ = editor.load_history(path);
    }
    let mut result = Outcome::Ok;
    loop {
        if runner.poll_events() == Outcome::Fatal {
            return Ok(Outcome::Fatal);
        }
        let line = match editor.readline("vat# ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        };
        let outcome = runner.run_line(&line);
        if let Some(path) = &history {
            save_history(&mut editor, path);
        }
        match outcome {
            Outcome::Ok => {}
            Outcome::Failed => result = Outcome::Failed,
            Outcome::Quit => break,
            Outcome::Fatal => return Ok(Outcome::Fatal),
        }
    }
    Ok(result)
}

fn save_history(editor: &mut Editor<VatHelper, DefaultHistory>, path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // History is a convenience: failing to save it is not worth interrupting the session.
    let _ = editor.save_history(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::example_api;

    fn complete(line: &str) -> (usize, Vec<String>) {
        Completions::new(&example_api()).complete(line, line.len())
    }

    #[test]
    fn first_word_completes_to_commands_and_messages() {
        assert_eq!(complete("sw_thing_a"), (0, vec!["sw_thing_add_del".into()]));
        assert_eq!(
            complete("sw_thing_"),
            (0, vec!["sw_thing_add_del".into(), "sw_thing_dump".into()])
        );
        // `help` takes answers too.
        assert_eq!(
            complete("help sw_thing_d").1,
            vec!["sw_thing_details".to_owned(), "sw_thing_dump".to_owned()]
        );
        assert_eq!(complete("dump_m"), (0, vec!["dump_msg_api_table".into()]));
        assert_eq!(complete("get_msg").1, vec!["get_msg_id".to_owned()]);
        let (_, all) = complete("");
        assert!(all.contains(&"help".to_owned()) && all.contains(&"control_ping".to_owned()));
        assert_eq!(complete("  control_pi").0, 2);
    }

    #[test]
    fn fields_values_and_nested_commands() {
        assert_eq!(
            complete("sw_thing_add_del "),
            (
                17,
                vec![
                    "count".into(),
                    "enable".into(),
                    "is_add".into(),
                    "name".into()
                ]
            )
        );
        // Given fields are not offered again; a flag takes no value.
        assert_eq!(
            complete("sw_thing_add_del name foo enable c"),
            (33, vec!["count".into()])
        );
        // After a field that takes a value, nothing is guessed.
        assert_eq!(complete("sw_thing_add_del count ").1, Vec::<String>::new());
        assert_eq!(
            complete("time sw_thing_add_del na").1,
            vec!["name".to_owned()]
        );
        assert_eq!(
            complete("repeat 10 window 4 sw_thing_d").1,
            vec!["sw_thing_dump".to_owned()]
        );
        assert_eq!(
            complete("repeat 10 contr").1,
            vec!["control_ping".to_owned()]
        );
        assert_eq!(
            complete("help sw_thing_du").1,
            vec!["sw_thing_dump".to_owned()]
        );
        assert_eq!(complete("help syn").1, vec!["syntax".to_owned()]);
        assert_eq!(complete("ping count 3 ").1, vec!["interval".to_owned()]);
        assert_eq!(complete("ping count ").1, Vec::<String>::new());
        // Fields vat fills in are never offered.
        assert!(!complete("control_ping ").1.contains(&"context".to_owned()));
    }

    #[test]
    fn enum_fields_complete_to_value_names() {
        let api = example_api();
        let c = Completions::new(&api);
        // api_client_details has an enum field (a reply, but completion does not care).
        let line = "api_client_details transport API_CLIENT_TRANSPORT_SO";
        assert_eq!(
            c.complete(line, line.len()).1,
            vec![
                "API_CLIENT_TRANSPORT_SOCKET".to_owned(),
                "API_CLIENT_TRANSPORT_SOCKET_SHM".to_owned()
            ]
        );
    }

    #[test]
    fn history_path_prefers_xdg_state() {
        let p = |x: Option<&str>, h: Option<&str>| {
            history_path_from(x.map(Into::into), h.map(Into::into))
        };
        assert_eq!(
            p(Some("/s"), Some("/h")),
            Some(PathBuf::from("/s/vat/history"))
        );
        assert_eq!(
            p(Some(""), Some("/h")),
            Some(PathBuf::from("/h/.local/state/vat/history"))
        );
        assert_eq!(
            p(None, Some("/h")),
            Some(PathBuf::from("/h/.local/state/vat/history"))
        );
        assert_eq!(p(None, None), None);
    }
}
