//! `KEY=VALUE` settings, as given on the command line with `--set`.
//!
//! Keys are dotted: the part before the first dot names the group of options
//! (`relay`, and later one group per protocol), the rest the option within it.
//! Each options type parses its own keys, so a new option is one match arm in
//! one place, and an unknown key can always list the keys that do exist.

/// Why a setting was refused. The message names the key and says what to
/// write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// The argument has no `=`.
    #[error("setting `{0}` is not KEY=VALUE; write it as e.g. `relay.buffer_size=65536`")]
    NotAnAssignment(String),
    /// No option has this key.
    #[error("unknown setting `{key}`; use one of: {}", known.join(", "))]
    UnknownKey {
        /// The key as given.
        key: String,
        /// Every key that would have been accepted here.
        known: Vec<String>,
    },
    /// The key exists, the value does not fit it.
    #[error("bad value `{value}` for setting `{key}`: expected {expected}")]
    BadValue {
        /// The key as given.
        key: String,
        /// The value as given.
        value: String,
        /// What a good value looks like.
        expected: String,
    },
}

/// Splits `KEY=VALUE` at the first `=`. Both sides are trimmed; an empty key
/// is refused, an empty value is left to the option to judge.
pub fn parse_assignment(arg: &str) -> Result<(&str, &str), SettingError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value.trim())),
        _ => Err(SettingError::NotAnAssignment(arg.to_owned())),
    }
}

/// Parses an integer value within `min..=max` for `key`.
pub(crate) fn parse_in_range(
    key: &str,
    value: &str,
    min: usize,
    max: usize,
    example: usize,
) -> Result<usize, SettingError> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(SettingError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: format!("a whole number from {min} to {max}, e.g. {key}={example}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments() {
        assert_eq!(parse_assignment("a.b=1"), Ok(("a.b", "1")));
        assert_eq!(parse_assignment(" a.b = x=y "), Ok(("a.b", "x=y")));
        assert_eq!(parse_assignment("a.b="), Ok(("a.b", "")));
        for bad in ["a.b", "=1", ""] {
            assert_eq!(
                parse_assignment(bad),
                Err(SettingError::NotAnAssignment(bad.to_owned()))
            );
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_in_range("k", "5", 1, 10, 2), Ok(5));
        for bad in ["0", "11", "-1", "x", "", "1.5"] {
            let err = parse_in_range("k", bad, 1, 10, 2).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("`k`") && msg.contains("from 1 to 10"), "{msg}");
        }
    }
}
