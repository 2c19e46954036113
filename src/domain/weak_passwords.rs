//! Passwords too easy to guess, refused at sign-up whatever their length: blank ones, one
//! character repeated, and the most common passwords (`common_passwords.txt`).

use std::collections::HashSet;
use std::sync::OnceLock;

/// What makes a password too easy to guess, for the error's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    Blank,
    OneCharacterRepeated,
    Common,
}

impl Weakness {
    pub fn describe(self) -> &'static str {
        match self {
            Weakness::Blank => "white space only",
            Weakness::OneCharacterRepeated => "one character repeated",
            Weakness::Common => "one of the most common passwords",
        }
    }
}

const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// The list, lower-cased, read once.
fn common_passwords() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_lowercase)
            .collect()
    })
}

/// Why `password` is too easy to guess, if it is. The list is compared without regard to
/// case: `Password1` is as common as `password1`.
pub fn weakness(password: &str) -> Option<Weakness> {
    let mut chars = password.chars();
    let first = chars.next()?;
    if password.chars().all(char::is_whitespace) {
        return Some(Weakness::Blank);
    }
    if chars.all(|c| c == first) {
        return Some(Weakness::OneCharacterRepeated);
    }
    common_passwords().contains(&password.to_lowercase()).then_some(Weakness::Common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_repeated_and_common_passwords_are_weak() {
        assert_eq!(weakness("        "), Some(Weakness::Blank));
        assert_eq!(weakness("\t \u{3000}     "), Some(Weakness::Blank));
        assert_eq!(weakness("aaaaaaaa"), Some(Weakness::OneCharacterRepeated));
        assert_eq!(weakness("ㅋㅋㅋㅋㅋㅋㅋㅋ"), Some(Weakness::OneCharacterRepeated));
        for common in ["12345678", "password", "PassWord1", "iloveyou", "qwertyuiop", "trustno1"] {
            assert_eq!(weakness(common), Some(Weakness::Common), "{common}");
        }
        for fine in ["correct horse", "aaaaaaab", "12345678 and more", "kx8!Qz2m"] {
            assert_eq!(weakness(fine), None, "{fine}");
        }
    }

    #[test]
    fn the_list_holds_hundreds_of_long_passwords_and_no_comment() {
        let list = common_passwords();
        assert!(list.len() >= 500, "{}", list.len());
        assert!(list.iter().all(|password| password.chars().count() >= 8 && !password.starts_with('#')));
    }
}
