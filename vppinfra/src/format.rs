//! Human-readable formatting for a VPP-style CLI: memory sizes, hex dumps, tables, durations.
//!
//! Each formatter is a small [`Display`] adapter, so it composes with `format!`,
//! `write!` and width flags (`{:>8}`) without building intermediate strings, plus a
//! `format_*` function returning a `String` for convenience:
//!
//! - [`MemorySize`] / [`format_memory_size`]: `512`, `64K`, `1.5M`, `2G` (powers of 1024).
//! - [`HexDump`] / [`format_hexdump`]: offset, 16 bytes in hex, and an ASCII column.
//! - [`Table`]: column headers, left or right alignment, widths computed from the contents.
//! - [`FormatDuration`] / [`format_duration`]: `850ns`, `12.5us`, `1.234ms`, `3.250s`, `02:03:04`,
//!   `1d 02:03:04`.
//! - [`TimeInterval`] / [`format_time_interval`]: `h:mm:ss`, with `{:.N}` for fractions.
//! - [`Si`], [`format_rate`], [`format_thousands`]: `2.50M`, `2.50M/s`, `1,234,567`.
//!
//! ```
//! use vppinfra::format::{format_memory_size, Align, Table};
//! assert_eq!(format_memory_size(1536 * 1024), "1.5M");
//! let mut t = Table::new().gap(1).min_width(8);
//! for h in ["Owner", "Size", "Nitems", "Hits", "Misses"] {
//!     t = t.column(h, Align::Right);
//! }
//! t.row(["vlib", "1024", "0", "12", "0"]);
//! assert_eq!(t.to_string(), "   Owner     Size   Nitems     Hits   Misses\n    vlib     1024        0       12        0");
//! ```
//!
//! # References
//! VPP `src/vppinfra/std-formats.c` (`format_memory_size`, `format_hexdump`,
//! `format_time_interval`, `format_duration`) and `src/vlibmemory/memory_api.c` (`show api ring`).

use std::fmt::{self, Display, Write as _};
use std::time::Duration;

/// Binary unit suffixes, each 1024 times the previous one.
const BINARY_UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];

/// A byte count shown with a binary unit and at most one decimal: `512`, `64K`, `1.5M`, `2G`.
///
/// Counts below 1024 are shown as plain numbers. Larger counts use the largest unit not
/// exceeding them, rounded half up to one decimal, with a trailing `.0` dropped; a count that
/// rounds up to 1024 of a unit moves to the next one (`1048575` is `1M`, not `1024.0K`).
#[doc(alias = "format_memory_size")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySize(pub u64);

impl Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n < 1024 {
            return f.pad(&n.to_string());
        }
        // Largest unit with 1024^(k+1) <= n; ilog2 >= 10 here.
        let mut unit_idx = (n.ilog2() / 10 - 1) as usize;
        let mut tenths;
        loop {
            let shift = 10 * (unit_idx as u32 + 1);
            // Round half up in integer arithmetic: tenths = round(n * 10 / 2^shift).
            tenths = ((u128::from(n) * 10 + (1u128 << (shift - 1))) >> shift) as u64;
            if tenths >= 10 * 1024 && unit_idx + 1 < BINARY_UNITS.len() {
                unit_idx += 1;
                continue;
            }
            break;
        }
        let unit = BINARY_UNITS[unit_idx];
        let text = if tenths % 10 == 0 {
            format!("{}{unit}", tenths / 10)
        } else {
            format!("{}.{}{unit}", tenths / 10, tenths % 10)
        };
        f.pad(&text)
    }
}

/// Formats a byte count: `format_memory_size(1536 * 1024) == "1.5M"`. See [`MemorySize`].
pub fn format_memory_size(bytes: u64) -> String {
    MemorySize(bytes).to_string()
}

/// A hex dump: one line per 16 bytes with the offset, the bytes in hex and their printable ASCII.
///
/// ```text
/// 0000: 68 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a 00 ff  |hello, world!...|
/// ```
///
/// The offset has at least four hex digits and more when the last offset needs them. Lines are
/// separated by `\n` with no newline after the last one; an empty slice formats as nothing.
/// Bytes outside printable ASCII show as `.` so a dump is always safe to print to a terminal.
#[doc(alias = "format_hexdump")]
#[derive(Debug, Clone, Copy)]
pub struct HexDump<'a> {
    bytes: &'a [u8],
    base: u64,
    indent: usize,
}

impl<'a> HexDump<'a> {
    /// A dump of `bytes` with offsets starting at zero.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            base: 0,
            indent: 0,
        }
    }

    /// Offsets start at `base` (for dumping a window of a larger buffer).
    pub fn base(mut self, base: u64) -> Self {
        self.base = base;
        self
    }

    /// Indents every line after the first by `indent` spaces (the first line continues wherever
    /// the caller's text left off, as in VPP's indented format output).
    pub fn indent(mut self, indent: usize) -> Self {
        self.indent = indent;
        self
    }
}

impl Display for HexDump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PER_LINE: usize = 16;
        let last = self
            .base
            .saturating_add(self.bytes.len().saturating_sub(1) as u64);
        let digits = if last == 0 {
            4
        } else {
            (last.ilog2() / 4 + 1).max(4) as usize
        };
        for (line_idx, chunk) in self.bytes.chunks(PER_LINE).enumerate() {
            if line_idx > 0 {
                write!(f, "\n{:1$}", "", self.indent)?;
            }
            let offset = self.base.saturating_add((line_idx * PER_LINE) as u64);
            write!(f, "{offset:0digits$x}:")?;
            for i in 0..PER_LINE {
                if i == PER_LINE / 2 {
                    f.write_char(' ')?;
                }
                match chunk.get(i) {
                    Some(b) => write!(f, " {b:02x}")?,
                    None => f.write_str("   ")?,
                }
            }
            f.write_str("  |")?;
            for &b in chunk {
                let c = if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                };
                f.write_char(c)?;
            }
            f.write_char('|')?;
        }
        Ok(())
    }
}

/// Formats a hex dump of `bytes`. See [`HexDump`].
pub fn format_hexdump(bytes: &[u8]) -> String {
    HexDump::new(bytes).to_string()
}

/// Horizontal alignment of a table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    /// Padded on the right.
    Left,
    /// Padded on the left (numbers).
    #[default]
    Right,
}

/// One table column: its title, alignment and minimum width.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    title: String,
    align: Align,
    min_width: usize,
}

/// A fixed-width text table: headers, then one line per row, columns sized to their widest cell.
///
/// Widths count characters (not terminal cells, so wide CJK glyphs misalign). Trailing spaces are
/// trimmed from every line, and there is no newline after the last line. A row with fewer cells
/// than columns leaves the rest blank; a row with more cells gets extra left-aligned columns with
/// empty titles rather than losing data.
///
/// ```
/// use vppinfra::format::{Align, Table};
/// let mut t = Table::new().column("Name", Align::Left).column("Count", Align::Right);
/// t.row(["rx", "1024"]).row(["tx-error", "7"]);
/// assert_eq!(t.to_string(), "Name      Count\nrx         1024\ntx-error      7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    gap: usize,
    default_min_width: usize,
    show_header: bool,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    /// An empty table: no columns, two spaces between columns, header shown.
    pub fn new() -> Self {
        Self {
            columns: Vec::new(),
            rows: Vec::new(),
            gap: 2,
            default_min_width: 0,
            show_header: true,
        }
    }

    /// A table of right-aligned columns with these titles.
    pub fn with_headers<I, S>(titles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        titles
            .into_iter()
            .fold(Self::new(), |t, title| t.column(title, Align::Right))
    }

    /// Adds a column (using the current [`Table::min_width`]).
    pub fn column(mut self, title: impl Into<String>, align: Align) -> Self {
        self.columns.push(Column {
            title: title.into(),
            align,
            min_width: self.default_min_width,
        });
        self
    }

    /// Adds a column with its own minimum width.
    pub fn column_min(mut self, title: impl Into<String>, align: Align, min_width: usize) -> Self {
        self.columns.push(Column {
            title: title.into(),
            align,
            min_width,
        });
        self
    }

    /// Sets the minimum width of every column added so far and of those added later
    /// (`%8s`-style output uses 8).
    pub fn min_width(mut self, width: usize) -> Self {
        self.default_min_width = width;
        for c in &mut self.columns {
            c.min_width = width;
        }
        self
    }

    /// Spaces between columns (default 2).
    pub fn gap(mut self, gap: usize) -> Self {
        self.gap = gap;
        self
    }

    /// Whether to print the header line (default yes).
    pub fn header(mut self, show: bool) -> Self {
        self.show_header = show;
        self
    }

    /// Appends a row of cells.
    pub fn row<I>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator,
        I::Item: Display,
    {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
        self
    }

    /// Number of rows (the header not counted).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The column layout: alignment and width of every column, extra columns included.
    fn layout(&self) -> Vec<(Align, usize)> {
        let n_cols = self
            .rows
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(self.columns.len());
        (0..n_cols)
            .map(|i| {
                let (align, min, title_width) = match self.columns.get(i) {
                    Some(c) => (c.align, c.min_width, c.title.chars().count()),
                    None => (Align::Left, self.default_min_width, 0),
                };
                let title_width = if self.show_header { title_width } else { 0 };
                let cell_width = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0);
                (align, min.max(title_width).max(cell_width))
            })
            .collect()
    }

    fn write_line<'s>(
        &self,
        f: &mut fmt::Formatter<'_>,
        layout: &[(Align, usize)],
        cells: impl Iterator<Item = &'s str>,
    ) -> fmt::Result {
        let mut line = String::new();
        let mut cells = cells;
        for (i, &(align, width)) in layout.iter().enumerate() {
            if i > 0 {
                line.extend(std::iter::repeat_n(' ', self.gap));
            }
            let cell = cells.next().unwrap_or("");
            match align {
                Align::Left => write!(line, "{cell:<width$}")?,
                Align::Right => write!(line, "{cell:>width$}")?,
            }
        }
        f.write_str(line.trim_end())
    }
}

impl Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = self.layout();
        let mut first = true;
        if self.show_header {
            self.write_line(f, &layout, self.columns.iter().map(|c| c.title.as_str()))?;
            first = false;
        }
        for row in &self.rows {
            if !first {
                f.write_char('\n')?;
            }
            first = false;
            self.write_line(f, &layout, row.iter().map(String::as_str))?;
        }
        Ok(())
    }
}

/// A duration in the unit that reads best.
///
/// | range | form | example |
/// |---|---|---|
/// | below 1 µs | whole nanoseconds | `850ns` |
/// | below 1 ms | microseconds, one decimal | `12.5us` |
/// | below 1 s | milliseconds, three decimals | `1.234ms` |
/// | below 1 min | seconds, three decimals | `3.250s` |
/// | below 1 day | `HH:MM:SS` | `02:03:04` |
/// | longer | `Nd HH:MM:SS` | `1d 02:03:04` |
///
/// Values are rounded to the shown precision (half up); a value that rounds up to the next
/// range is shown in it (`999.96us` is `1.000ms`). Clock forms truncate to whole seconds.
#[doc(alias = "format_duration")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatDuration(pub Duration);

impl Display for FormatDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let round = |unit: u128| (ns + unit / 2) / unit;
        let text = if ns < 1_000 {
            format!("{ns}ns")
        } else if round(100) < 10_000 {
            let tenths_us = round(100);
            format!("{}.{}us", tenths_us / 10, tenths_us % 10)
        } else if round(1_000) < 1_000_000 {
            let us = round(1_000);
            format!("{}.{:03}ms", us / 1_000, us % 1_000)
        } else if round(1_000_000) < 60_000 {
            let ms = round(1_000_000);
            format!("{}.{:03}s", ms / 1_000, ms % 1_000)
        } else {
            let secs = self.0.as_secs();
            let (days, rest) = (secs / 86_400, secs % 86_400);
            let clock = format!(
                "{:02}:{:02}:{:02}",
                rest / 3_600,
                rest % 3_600 / 60,
                rest % 60
            );
            if days > 0 {
                format!("{days}d {clock}")
            } else {
                clock
            }
        };
        f.pad(&text)
    }
}

/// Formats a duration: `850ns`, `12.5us`, `3.250s`, `1d 02:03:04`. See [`FormatDuration`].
pub fn format_duration(d: Duration) -> String {
    FormatDuration(d).to_string()
}

/// Formats a duration given in seconds as [`format_duration`] does, with a leading `-` for
/// negative values and `nan`/`inf` for non-finite ones (never panics).
pub fn format_seconds(seconds: f64) -> String {
    if seconds.is_nan() {
        return "nan".to_owned();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    match Duration::try_from_secs_f64(seconds.abs()) {
        Ok(d) => format!("{sign}{}", FormatDuration(d)),
        Err(_) => format!("{sign}inf"),
    }
}

/// Seconds shown as `h:mm:ss` (hours unbounded and unpadded); a precision adds that many decimal
/// places of seconds: `format!("{:.3}", TimeInterval(3723.5)) == "1:02:03.500"`.
///
/// Negative values get a leading `-`; non-finite ones print as `nan` or `inf`.
#[doc(alias = "format_time_interval")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeInterval(pub f64);

impl Display for TimeInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        if secs.is_nan() {
            return f.pad("nan");
        }
        let sign = if secs < 0.0 { "-" } else { "" };
        if secs.is_infinite() {
            return f.pad(&format!("{sign}inf"));
        }
        let decimals = f.precision().unwrap_or(0).min(9) as u32;
        let scale = 10u128.pow(decimals);
        // Round once, in units of the last shown decimal, so 59.9996 with 3 decimals carries
        // into the minutes rather than printing 60.000 seconds. `as` saturates absurd values.
        let units = (secs.abs() * scale as f64).round() as u128;
        let (whole, frac) = (units / scale, units % scale);
        let text = if decimals == 0 {
            format!(
                "{sign}{}:{:02}:{:02}",
                whole / 3_600,
                whole % 3_600 / 60,
                whole % 60
            )
        } else {
            format!(
                "{sign}{}:{:02}:{:02}.{frac:0width$}",
                whole / 3_600,
                whole % 3_600 / 60,
                whole % 60,
                width = decimals as usize
            )
        };
        // The precision was consumed above; pad with width and alignment only.
        let mut out = String::new();
        match (f.width(), f.align()) {
            (Some(w), Some(fmt::Alignment::Left)) => write!(out, "{text:<w$}")?,
            (Some(w), Some(fmt::Alignment::Center)) => write!(out, "{text:^w$}")?,
            (Some(w), _) => write!(out, "{text:>w$}")?,
            (None, _) => out = text,
        }
        f.write_str(&out)
    }
}

/// Formats seconds as `h:mm:ss`. See [`TimeInterval`].
pub fn format_time_interval(seconds: f64) -> String {
    TimeInterval(seconds).to_string()
}

/// A quantity with a decimal SI prefix (powers of 1000) and two decimals: `2.50M`, `12.00K`.
///
/// Magnitudes below 1000 print as integers when whole (`512`) and with two decimals otherwise
/// (`0.25`). Negative values keep their sign; non-finite ones print as `NaN`, `inf`, `-inf`.
#[doc(alias = "format_base10")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Si(pub f64);

impl Display for Si {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PREFIXES: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
        let v = self.0;
        if !v.is_finite() {
            return f.pad(&format!("{v}"));
        }
        let mut scaled = v.abs();
        let mut idx = 0;
        // Move up while the value would print as 1000.00 or more in the current prefix.
        while scaled >= 999.995 && idx + 1 < PREFIXES.len() {
            scaled /= 1000.0;
            idx += 1;
        }
        let sign = if v < 0.0 { "-" } else { "" };
        let text = if idx == 0 && scaled.fract() == 0.0 {
            format!("{sign}{scaled:.0}")
        } else {
            format!("{sign}{scaled:.2}{}", PREFIXES[idx])
        };
        f.pad(&text)
    }
}

/// Formats a per-second rate with an SI prefix: `format_rate(2.5e6) == "2.50M/s"`.
pub fn format_rate(per_second: f64) -> String {
    format!("{}/s", Si(per_second))
}

/// Formats an integer with `,` between groups of three digits: `1,234,567`.
pub fn format_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_follow_vpp_style() {
        let cases: &[(u64, &str)] = &[
            (0, "0"),
            (512, "512"),
            (1023, "1023"),
            (1024, "1K"),
            (64 * 1024, "64K"),
            (1536, "1.5K"),
            (1536 * 1024, "1.5M"),
            (2 << 30, "2G"),
            (3 << 40, "3T"),
            (5 << 50, "5P"),
            (7 << 60, "7E"),
            (u64::MAX, "16E"),
            // Rounds half up to one decimal.
            (1024 + 51, "1K"),
            (1024 + 52, "1.1K"),
            (10 * 1024 + 1, "10K"),
            // Rounds up into the next unit rather than printing 1024K.
            ((1 << 20) - 1, "1M"),
            ((1 << 20) - 52, "1023.9K"),
            ((1 << 30) + (1 << 29), "1.5G"),
        ];
        for &(n, want) in cases {
            assert_eq!(format_memory_size(n), want, "{n}");
        }
        assert_eq!(format!("[{:>6}]", MemorySize(1536 * 1024)), "[  1.5M]");
        assert_eq!(format!("[{:<5}]", MemorySize(12)), "[12   ]");
    }

    #[test]
    fn hexdump_has_offset_hex_and_ascii() {
        let data: Vec<u8> = b"hello, world!\n\x00\xffABC".to_vec();
        let dump = format_hexdump(&data);
        let lines: Vec<&str> = dump.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "0000: 68 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a 00 ff  |hello, world!...|"
        );
        assert_eq!(
            lines[1],
            "0010: 41 42 43                                          |ABC|"
        );
        // Columns line up between full and partial lines.
        assert_eq!(lines[0].find('|'), lines[1].find('|'));
        assert_eq!(format_hexdump(&[]), "");
    }

    #[test]
    fn hexdump_offsets_grow_and_indent() {
        let data = [0u8; 20];
        let dump = HexDump::new(&data).base(0xfffff8).indent(3).to_string();
        let lines: Vec<&str> = dump.lines().collect();
        assert!(lines[0].starts_with("0fffff8: 00"), "{dump}");
        assert!(lines[1].starts_with("   1000008: 00"), "{dump}");
        let near_max = HexDump::new(&data).base(u64::MAX - 4).to_string();
        assert!(near_max.starts_with("fffffffffffffffb:"), "{near_max}");
        assert_eq!(near_max.lines().count(), 2);
    }

    #[test]
    fn table_reproduces_show_api_ring_header() {
        let t = Table::with_headers(["Owner", "Size", "Nitems", "Hits", "Misses"])
            .gap(1)
            .min_width(8);
        assert_eq!(
            t.to_string(),
            "   Owner     Size   Nitems     Hits   Misses"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn table_sizes_columns_to_contents() {
        let mut t = Table::new()
            .column("Name", Align::Left)
            .column("Value", Align::Right);
        t.row(["a", "1"]).row(["longer-name", "123456"]);
        assert_eq!(
            t.to_string(),
            "Name          Value\na                 1\nlonger-name  123456"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn table_handles_ragged_rows_and_no_header() {
        let mut t = Table::new().column("A", Align::Right).header(false);
        t.row([1, 2, 3]).row([40]);
        assert_eq!(t.to_string(), " 1  2  3\n40");
        let mut t = Table::new().column_min("X", Align::Left, 4);
        t.row(Vec::<String>::new());
        assert_eq!(t.to_string(), "X\n");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0ns"),
            (Duration::from_nanos(850), "850ns"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_nanos(12_500), "12.5us"),
            (Duration::from_nanos(999_960), "1.000ms"),
            (Duration::from_micros(1_234), "1.234ms"),
            (Duration::from_millis(3_250), "3.250s"),
            (Duration::from_millis(59_999), "59.999s"),
            (Duration::from_secs(60), "00:01:00"),
            (Duration::from_secs(2 * 3600 + 3 * 60 + 4), "02:03:04"),
            (
                Duration::from_secs(86_400 + 2 * 3600 + 3 * 60 + 4),
                "1d 02:03:04",
            ),
            (Duration::MAX, "213503982334601d 07:00:15"),
        ];
        for &(d, want) in cases {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
        assert_eq!(
            format!("{:>8}", FormatDuration(Duration::from_nanos(5))),
            "     5ns"
        );
    }

    #[test]
    fn seconds_handle_sign_and_non_finite() {
        assert_eq!(format_seconds(3.25), "3.250s");
        assert_eq!(format_seconds(-0.0000125), "-12.5us");
        assert_eq!(format_seconds(f64::NAN), "nan");
        assert_eq!(format_seconds(f64::INFINITY), "inf");
        assert_eq!(format_seconds(-1e300), "-inf");
    }

    #[test]
    fn time_interval_is_h_mm_ss() {
        assert_eq!(format_time_interval(0.0), "0:00:00");
        assert_eq!(format_time_interval(3723.4), "1:02:03");
        assert_eq!(format_time_interval(100.0 * 3600.0), "100:00:00");
        assert_eq!(format!("{:.3}", TimeInterval(3723.5)), "1:02:03.500");
        assert_eq!(format!("{:.3}", TimeInterval(59.9996)), "0:01:00.000");
        assert_eq!(format!("{:>10}", TimeInterval(61.0)), "   0:01:01");
        assert_eq!(format_time_interval(-61.0), "-0:01:01");
        assert_eq!(format_time_interval(f64::NAN), "nan");
        assert_eq!(format_time_interval(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn si_and_rates() {
        assert_eq!(Si(512.0).to_string(), "512");
        assert_eq!(Si(0.25).to_string(), "0.25");
        assert_eq!(Si(12_000.0).to_string(), "12.00K");
        assert_eq!(Si(999_999.0).to_string(), "1.00M");
        assert_eq!(Si(-2.5e9).to_string(), "-2.50G");
        assert_eq!(Si(f64::NAN).to_string(), "NaN");
        assert_eq!(format_rate(2.5e6), "2.50M/s");
        assert_eq!(format_rate(15.0), "15/s");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(format_thousands(0), "0");
        assert_eq!(format_thousands(999), "999");
        assert_eq!(format_thousands(1_000), "1,000");
        assert_eq!(format_thousands(1_234_567), "1,234,567");
        assert_eq!(format_thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
