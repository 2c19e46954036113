//! User-chosen text: user names, passwords, display names and memos.

use chrono::{DateTime, Duration, Utc};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::GeneralSecurityProfile;

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
    #[error("{0} must not be blank (only white space)")]
    Blank(&'static str),
    #[error(
        "{0} must not contain invisible or format characters (zero-width characters, byte order marks, \
         bidirectional overrides and isolates, other default-ignorable or unassigned code points, line separators)"
    )]
    Invisible(&'static str),
}

/// Characters that show as nothing, or rearrange or hide what is around them: format
/// characters (general category Cf: zero-width spaces and joiners, the byte order mark,
/// bidirectional overrides and isolates, tags), the other default-ignorable code points (Hangul
/// fillers, variation selectors, the combining grapheme joiner, ...), unassigned code points
/// (where later Unicode versions put more of them) and line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || c.identifier_type() == Some(IdentifierType::Default_Ignorable)
}

/// The checks every user-written text shares, on its NFC form (what is stored and shown, so
/// that "é" typed as one code point or as "e" and a combining accent is the same text).
fn checked_text(field: &'static str, value: &str) -> Result<String, TextError> {
    let text: String = value.nfc().collect();
    if text.is_empty() {
        return Err(TextError::Empty(field));
    }
    if text.chars().count() > NAME_LENGTH_MAX_CHARS {
        return Err(TextError::TooLong(field, NAME_LENGTH_MAX_CHARS));
    }
    if text.chars().any(char::is_control) {
        return Err(TextError::BadCharacters(field));
    }
    if text.chars().any(is_invisible) {
        return Err(TextError::Invisible(field));
    }
    if text.chars().all(char::is_whitespace) {
        return Err(TextError::Blank(field));
    }
    Ok(text)
}

/// A user's unique name: 1..=64 characters (NFC), not blank, no control or invisible
/// characters, no surrounding blanks. Unique by its [skeleton](UserName::skeleton).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(value: &str) -> Result<Self, TextError> {
        let name = checked_text("name", value)?;
        if name.trim() != name {
            return Err(TextError::BadCharacters("name"));
        }
        Ok(UserName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's confusable skeleton (Unicode TS #39): names that look alike (`bob` with a
    /// Latin, Cyrillic or Greek o; `paypal` and `paypa1`) share it, so no two users may have
    /// the same one.
    pub fn skeleton(&self) -> String {
        skeleton(&self.0)
    }
}

/// The confusable skeleton of any stored name, including one from before the current rules
/// (its invisible characters are dropped, so `\u{feff}bob` is `bob`).
pub fn skeleton(name: &str) -> String {
    unicode_security::skeleton(name).collect()
}

/// How long a name freed by a rename stays reserved for the user who had it.
pub const NAME_RESERVED_DAYS: i64 = 30;

/// Whether a name freed at `released_at` is still kept for its old user at `now`.
pub fn still_reserved(released_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now < released_at + Duration::days(NAME_RESERVED_DAYS)
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

/// Optional free text shown with a movement (display name, memo): absent, or 1..=64
/// characters (NFC), not blank, no control or invisible characters.
pub fn parse_short_text(field: &'static str, value: Option<&str>) -> Result<Option<String>, TextError> {
    value.map(|text| checked_text(field, text)).transpose()
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
        assert_eq!(parse_short_text("memo", Some("lunch")), Ok(Some("lunch".into())));
        assert_eq!(parse_short_text("memo", Some(" a b ")), Ok(Some(" a b ".into())));
        assert!(parse_short_text("memo", Some(&"m".repeat(65))).is_err());
    }

    #[test]
    fn blank_texts_are_refused() {
        assert_eq!(parse_short_text("memo", Some("")), Err(TextError::Empty("memo")));
        for blank in [" ", "   ", "\u{3000}", "\u{a0}", " \u{2003} "] {
            assert_eq!(
                parse_short_text("display_name", Some(blank)),
                Err(TextError::Blank("display_name")),
                "{blank:?}"
            );
            assert!(UserName::parse(blank).is_err(), "{blank:?}");
        }
    }

    #[test]
    fn invisible_and_format_characters_are_refused() {
        for text in [
            "\u{feff}bob",         // byte order mark
            "bo\u{202e}b",         // right-to-left override
            "\u{2066}bob\u{2069}", // isolates
            "bob\u{200b}",         // zero-width space
            "b\u{200d}ob",         // zero-width joiner
            "b\u{ad}ob",           // soft hyphen
            "bob\u{e0062}",        // tag
            "\u{3164}",            // Hangul filler (a letter, but default-ignorable)
            "bo\u{34f}b",          // combining grapheme joiner
            "bob\u{fe0f}",         // variation selector
            "bo\u{2028}b",         // line separator
            "bob\u{2065}",         // unassigned, default-ignorable
        ] {
            assert_eq!(UserName::parse(text), Err(TextError::Invisible("name")), "{text:?}");
            assert_eq!(parse_short_text("memo", Some(text)), Err(TextError::Invisible("memo")), "{text:?}");
        }
        // Visible text of any script, spaces inside, emoji without selectors are fine.
        for text in ["김철수", "Zoë", "a b", "\u{1f355} lunch", "\u{5e9}\u{5dc}\u{5d5}\u{5dd}"] {
            assert!(parse_short_text("memo", Some(text)).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn texts_are_kept_composed() {
        let decomposed = "rene\u{301}";
        assert_eq!(UserName::parse(decomposed).unwrap().as_str(), "ren\u{e9}");
        assert_eq!(parse_short_text("memo", Some(decomposed)), Ok(Some("ren\u{e9}".into())));
        // 64 decomposed characters are 128 code points, and fit.
        assert!(UserName::parse(&"e\u{301}".repeat(64)).is_ok());
    }

    #[test]
    fn look_alike_names_share_a_skeleton() {
        let skeleton = |name: &str| UserName::parse(name).unwrap().skeleton();
        assert_eq!(skeleton("bob"), skeleton("b\u{43e}b"));
        assert_eq!(skeleton("bob"), skeleton("b\u{3bf}b"));
        assert_eq!(skeleton("paypal"), skeleton("paypa1"));
        assert_eq!(skeleton("ren\u{e9}"), skeleton("rene\u{301}"));
        assert_ne!(skeleton("bob"), skeleton("rob"));
        assert_ne!(skeleton("alice"), skeleton("alice2"));
        // Names stored before the rules: invisible characters do not make another name.
        assert_eq!(super::skeleton("\u{feff}bob"), skeleton("bob"));
    }

    #[test]
    fn a_freed_name_is_reserved_for_thirty_days() {
        let released: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        assert!(still_reserved(released, released));
        assert!(still_reserved(released, released + Duration::days(30) - Duration::microseconds(1)));
        assert!(!still_reserved(released, released + Duration::days(30)));
    }
}
