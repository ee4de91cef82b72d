//! The server's log: one line per event on stderr, with a level and the seconds since start.
//!
//! A handful of lines (clients refused or disconnected, framing errors, start and stop) do not
//! justify a logging framework; embedders that want one can read the same facts from counters.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// How much the server says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing.
    Off,
    /// Failures of the server itself.
    Error,
    /// Misbehaving clients and refused connections.
    Warn,
    /// Start, stop, clients coming and going.
    Info,
    /// Every registration detail.
    Debug,
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "off" => Self::Off,
            "error" => Self::Error,
            "warn" | "warning" => Self::Warn,
            "info" => Self::Info,
            "debug" => Self::Debug,
            other => {
                return Err(format!(
                    "unknown log level `{other}` (off, error, warn, info, debug)"
                ));
            }
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
        })
    }
}

/// A leveled logger writing to stderr.
#[derive(Debug, Clone)]
pub struct Log {
    level: Level,
    start: Instant,
}

impl Log {
    /// A logger that prints messages at `level` or more severe.
    pub fn new(level: Level) -> Self {
        Self {
            level,
            start: Instant::now(),
        }
    }

    /// True when messages at `level` are printed.
    pub fn enabled(&self, level: Level) -> bool {
        level != Level::Off && level <= self.level
    }

    /// Prints one line.
    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        if self.enabled(level) {
            eprintln!(
                "[{:>10.3}] api-server {level}: {args}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// An error line.
    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Error, args);
    }

    /// A warning line.
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Warn, args);
    }

    /// An info line.
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Info, args);
    }

    /// A debug line.
    pub fn debug(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Debug, args);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("WARN".parse::<Level>().unwrap(), Level::Warn);
        assert!("loud".parse::<Level>().is_err());
        let log = Log::new(Level::Warn);
        assert!(log.enabled(Level::Error));
        assert!(log.enabled(Level::Warn));
        assert!(!log.enabled(Level::Info));
        assert!(!Log::new(Level::Off).enabled(Level::Off));
    }
}
