//! Output helpers shared by the commands: terminal facts, JSON, tables,
//! relative times and durations.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use banger_api::UnixMillis;
use comfy_table::{Attribute, Cell, Color, Table};
use serde::Serialize;

use crate::error::CliError;

/// What the terminal the CLI writes to can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Term {
    /// stdout is a terminal.
    pub out_tty: bool,
    /// stderr is a terminal (progress spinners are drawn there).
    pub err_tty: bool,
    /// Tables may use colour: stdout is a terminal and `NO_COLOR` is unset.
    pub color: bool,
}

impl Term {
    /// Look at the real stdout, stderr and `NO_COLOR`.
    pub fn detect() -> Term {
        let out_tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Term {
            out_tty,
            err_tty: std::io::stderr().is_terminal(),
            color: out_tty && !no_color,
        }
    }
}

/// Print `value` as pretty JSON followed by a newline.
pub fn print_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Failed {
        message: format!("cannot encode the output as JSON: {e}"),
        code: 1,
    })?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// A borderless table in the style of `docker ps`, with a header row.
pub fn table(term: Term, header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.force_no_tty();
    if term.color {
        t.enforce_styling();
        t.style_text_only();
    }
    let header: Vec<Cell> = header
        .iter()
        .map(|h| {
            let c = Cell::new(h);
            if term.color {
                c.add_attribute(Attribute::Bold)
            } else {
                c
            }
        })
        .collect();
    t.set_header(header);
    t
}

/// A two-column table of field names and values, for `show` commands.
pub fn kv_table(term: Term, rows: Vec<(&str, String)>) -> Table {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.force_no_tty();
    if term.color {
        t.enforce_styling();
        t.style_text_only();
    }
    for (k, v) in rows {
        let key = Cell::new(format!("{k}:"));
        let key = if term.color {
            key.add_attribute(Attribute::Bold)
        } else {
            key
        };
        t.add_row(vec![key, Cell::new(v)]);
    }
    t
}

/// Write `t` with two spaces between columns and no trailing blanks.
pub fn print_table(out: &mut dyn Write, mut t: Table) -> Result<(), CliError> {
    for col in t.column_iter_mut() {
        col.set_padding((0, 2));
    }
    for line in t.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A cell coloured by `color` when colour is on.
pub fn colored(term: Term, text: impl ToString, color: Color) -> Cell {
    let c = Cell::new(text.to_string());
    if term.color { c.fg(color) } else { c }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMillis)
        .unwrap_or_default()
}

/// `then` relative to `now`: "just now", "42s ago", "3m ago", "5h ago", "2d ago".
pub fn age(now: UnixMillis, then: UnixMillis) -> String {
    let secs = (now - then) / 1000;
    if secs < 1 {
        return "just now".into();
    }
    format!("{} ago", short_duration(secs as u64))
}

/// A duration in its largest unit: "42s", "3m", "5h", "2d".
pub fn short_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A duration in its two largest units: "42s", "3m 12s", "5h 3m", "2d 4h".
pub fn long_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// "-" for a missing value.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now = 1_000_000_000;
        assert_eq!(age(now, now), "just now");
        assert_eq!(age(now, now + 5000), "just now");
        assert_eq!(age(now, now - 42_000), "42s ago");
        assert_eq!(age(now, now - 3 * 60_000 - 5000), "3m ago");
        assert_eq!(age(now, now - 5 * 3_600_000), "5h ago");
        assert_eq!(age(now, now - 2 * 86_400_000), "2d ago");
    }

    #[test]
    fn durations() {
        assert_eq!(long_duration(42), "42s");
        assert_eq!(long_duration(192), "3m 12s");
        assert_eq!(long_duration(5 * 3600 + 180), "5h 3m");
        assert_eq!(long_duration(2 * 86400 + 4 * 3600 + 1), "2d 4h");
    }

    #[test]
    fn tables_have_no_colour_unless_asked() {
        let plain = Term::default();
        let mut t = table(plain, &["NAME", "STATE"]);
        t.add_row(vec![
            Cell::new("dev"),
            colored(plain, "running", Color::Green),
        ]);
        let mut out = Vec::new();
        print_table(&mut out, t).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "NAME  STATE\ndev   running\n");

        let color = Term {
            color: true,
            ..Term::default()
        };
        let mut t = table(color, &["NAME"]);
        t.add_row(vec![colored(color, "running", Color::Green)]);
        let mut out = Vec::new();
        print_table(&mut out, t).unwrap();
        assert!(String::from_utf8(out).unwrap().contains('\u{1b}'));
    }
}
