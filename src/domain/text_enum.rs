//! `text_enum!`: the text form of a plain enum (`as_str`, `parse`), as the database and the
//! API spell it.

macro_rules! text_enum {
    ($type:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($type::$variant),)+
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use text_enum;
