//! User-chosen text: user names, passwords, display names and memos.

/// Upper bound for names, display names and memos, in characters.
pub const NAME_LENGTH_MAX_CHARS: usize = 64;
pub const PASSWORD_LENGTH_MIN_CHARS: usize = 8;
/// Hashing cost grows with the input; a bound keeps one request from burning CPU.
pub const PASSWORD_LENGTH_MAX_CHARS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} must be at most {1} characters")]
    TooLong(&'static str, usize),
    #[error("{0} must be at least {1} characters")]
    TooShort(&'static str, usize),
    #[error("{0} must not contain control characters or start or end with white space")]
    BadCharacters(&'static str),
    #[error("password is too easy to guess ({0})")]
    WeakPassword(&'static str),
}

fn clean_text(field: &'static str, value: &str) -> Result<(), TextError> {
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(TextError::BadCharacters(field));
    }
    Ok(())
}

/// A user's unique name: 1..=64 characters, no control characters, no surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(value: &str) -> Result<Self, TextError> {
        if value.is_empty() {
            return Err(TextError::Empty("name"));
        }
        if value.chars().count() > NAME_LENGTH_MAX_CHARS {
            return Err(TextError::TooLong("name", NAME_LENGTH_MAX_CHARS));
        }
        clean_text("name", value)?;
        Ok(UserName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as given at sign-up: 8..=256 characters, and not too easy to guess (see
/// `weak_passwords`).
pub struct Password(String);

impl Password {
    pub fn parse(value: &str) -> Result<Self, TextError> {
        let length = value.chars().count();
        if length < PASSWORD_LENGTH_MIN_CHARS {
            return Err(TextError::TooShort("password", PASSWORD_LENGTH_MIN_CHARS));
        }
        if length > PASSWORD_LENGTH_MAX_CHARS {
            return Err(TextError::TooLong("password", PASSWORD_LENGTH_MAX_CHARS));
        }
        if let Some(weakness) = super::weak_passwords::weakness(value) {
            return Err(TextError::WeakPassword(weakness.describe()));
        }
        Ok(Password(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Optional free text shown with a movement (display name, memo): at most 64 characters,
/// no control characters. Empty counts as absent.
pub fn parse_short_text(field: &'static str, value: Option<&str>) -> Result<Option<String>, TextError> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => {
            if text.chars().count() > NAME_LENGTH_MAX_CHARS {
                return Err(TextError::TooLong(field, NAME_LENGTH_MAX_CHARS));
            }
            if text.chars().any(char::is_control) {
                return Err(TextError::BadCharacters(field));
            }
            Ok(Some(text.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_bounded_and_clean() {
        assert!(UserName::parse("alice").is_ok());
        assert!(UserName::parse("김철수").is_ok());
        assert_eq!(UserName::parse(""), Err(TextError::Empty("name")));
        assert!(UserName::parse(&"a".repeat(64)).is_ok());
        assert_eq!(UserName::parse(&"a".repeat(65)), Err(TextError::TooLong("name", 64)));
        assert_eq!(UserName::parse(" alice"), Err(TextError::BadCharacters("name")));
        assert_eq!(UserName::parse("al\nice"), Err(TextError::BadCharacters("name")));
    }

    #[test]
    fn passwords_have_a_minimum_and_maximum_length() {
        assert!(Password::parse("correct horse").is_ok());
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"p".repeat(257)).is_err());
    }

    #[test]
    fn short_texts_are_optional_and_bounded() {
        assert_eq!(parse_short_text("memo", None), Ok(None));
        assert_eq!(parse_short_text("memo", Some("")), Ok(None));
        assert_eq!(parse_short_text("memo", Some("lunch")), Ok(Some("lunch".into())));
        assert!(parse_short_text("memo", Some(&"m".repeat(65))).is_err());
    }
}
