//! Config keys and environment names: text that operators type and read in terminals and logs.
//!
//! Control characters — C0 (U+0000 to U+001F: newline, carriage return, tab, escape, ...), DEL
//! (U+007F) and C1 (U+0080 to U+009F) — are refused wherever a key or an environment name is
//! written or loaded from a file: they cannot be typed back, and they rewrite a terminal or split
//! a log line when printed. Every other character, including spaces and non-ASCII letters, is
//! allowed, as the table allows it.

use std::fmt;

/// A key or environment name holds a control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "{what} {name:?} contains {character} at byte {at}; control characters (U+0000 to U+001F, \
     U+007F to U+009F) are refused in {what}s",
    character = Described(*character)
)]
pub struct ControlCharacter {
    /// `config key` or `environment name`.
    pub what: &'static str,
    /// The name, printed escaped (`"log\nlevel"`), never raw.
    pub name: String,
    /// The first control character.
    pub character: char,
    /// Its byte offset in the name.
    pub at: usize,
}

/// Refuses a `what` (e.g. `config key`) that holds a control character.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), ControlCharacter> {
    match name.char_indices().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((at, character)) => Err(ControlCharacter {
            what,
            name: name.to_owned(),
            character,
            at,
        }),
    }
}

/// A character named for people: `a newline (U+000A)`.
struct Described(char);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            '\n' => "a newline",
            '\r' => "a carriage return",
            '\t' => "a tab",
            '\u{1b}' => "an escape",
            '\0' => "a NUL",
            '\u{7f}' => "a delete",
            _ => "a control character",
        };
        write!(f, "{name} (U+{:04X})", u32::from(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn control_characters_are_named_with_their_offset() {
        let cases = [
            ("a\nb", "a newline (U+000A) at byte 1"),
            ("é\u{85}", "a control character (U+0085) at byte 2"),
            ("\u{7f}", "a delete (U+007F) at byte 0"),
        ];
        for (name, expected) in cases {
            let message = check_name("config key", name)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            assert!(message.contains(expected), "{message}");
        }
        assert!(check_name("config key", "matching.algorithm.weights").is_ok());
        assert!(check_name("config key", "ключ с пробелом").is_ok());
    }
}
