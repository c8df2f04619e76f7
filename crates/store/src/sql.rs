//! Small SQLite helpers shared by the table modules: recognising constraint
//! violations and decoding text columns into typed values.

use std::error::Error;
use std::str::FromStr;

use rusqlite::Row;
use rusqlite::ffi;
use rusqlite::types::Type;

/// A constraint violation worth turning into a typed error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Violation<'a> {
    /// A UNIQUE or PRIMARY KEY constraint on `table.column`.
    Unique(&'a str),
    /// A FOREIGN KEY constraint (SQLite does not say which one).
    ForeignKey,
}

/// Classifies `err` if it is a constraint violation this crate maps.
pub(crate) fn violation(err: &rusqlite::Error) -> Option<Violation<'_>> {
    let rusqlite::Error::SqliteFailure(code, message) = err else {
        return None;
    };
    match code.extended_code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            // "UNIQUE constraint failed: vms.name"
            let column = message.as_deref()?.rsplit(": ").next()?;
            Some(Violation::Unique(column))
        }
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// Reads text column `idx` and parses it, reporting a parse failure as a
/// conversion error on that column.
pub(crate) fn parse_column<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    text.parse()
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(err)))
}
