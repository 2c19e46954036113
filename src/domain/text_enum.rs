//! `text_enum!`: the text form of a plain enum (`as_str`, `parse`), as the database and the
//! API spell it, and its reading from a `text` column by `tokio_postgres` (the ledger writer
//! reads accounts column by column).

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

        impl<'a> tokio_postgres::types::FromSql<'a> for $type {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                $type::parse(text).ok_or_else(|| format!("{text:?} is not a {}", stringify!($type)).into())
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use tokio_postgres::types::{FromSql, Type};

    use crate::domain::accounts::AccountKind;

    #[test]
    fn a_text_column_reads_as_its_variant_and_nothing_else() {
        assert_eq!(AccountKind::from_sql(&Type::TEXT, b"savings").unwrap(), AccountKind::Savings);
        let error = AccountKind::from_sql(&Type::TEXT, b"checking").unwrap_err();
        assert_eq!(error.to_string(), "\"checking\" is not a AccountKind");
        assert!(<AccountKind as FromSql>::accepts(&Type::TEXT) && !<AccountKind as FromSql>::accepts(&Type::INT8));
    }
}
