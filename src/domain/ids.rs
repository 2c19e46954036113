//! Ids of the records the domain speaks of. A leaf module, so every domain module can name
//! them without depending on another.
//!
//! Each id is a newtype over the `BIGINT` the database assigns, so an account id cannot be
//! passed where a user id is expected (the compiler rejects it). They cost nothing at run
//! time: `#[repr(transparent)]`, `Copy`, and the same JSON (a bare integer, through
//! `#[serde(transparent)]`), the same SQL type (through `#[sqlx(transparent)]` and the
//! `tokio_postgres` impls below) and the same OpenAPI schema (`integer`, `int64`) as `i64`.
//!
//! Construct one with `From<i64>` / `new` only where an id enters the program: a path or
//! body the HTTP layer parsed, a row read from PostgreSQL or ClickHouse. Everything inside
//! passes the typed id along; `get()` gives the integer back at the other boundaries (SQL
//! binds of id arrays, keys in logs).

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            sqlx::Type,
        )]
        #[repr(transparent)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a raw id (at a boundary: a parsed request, a database row).
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            /// The raw integer, for SQL binds and other boundaries.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(raw: i64) -> Self {
                Self(raw)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <i64 as utoipa::PartialSchema>::schema()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl tokio_postgres::types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
            {
                self.0.to_sql(ty, out)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                i64::from_sql(ty, raw).map(Self)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <i64 as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

id_type!(
    /// An account (`accounts.id`).
    AccountId
);
id_type!(
    /// A user (`users.id`).
    UserId
);
id_type!(
    /// A split bill (`settlements.id`).
    SettlementId
);
id_type!(
    /// A transfer between users (`transfers.id`).
    TransferId
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes an account id only: `owner_of(UserId::new(1))` does not compile, which is the
    /// point of the newtypes (a swapped user and account used to compile as two `i64`s).
    fn owner_of(account: AccountId) -> i64 {
        account.get()
    }

    #[test]
    fn ids_are_distinct_types_with_the_same_wire_form() {
        let account = AccountId::new(7);
        let user = UserId::from(7);
        assert_eq!(owner_of(account), 7);
        assert_eq!(i64::from(user), 7);
        assert_eq!(serde_json::to_string(&account).unwrap(), "7");
        assert_eq!(serde_json::from_str::<UserId>("42").unwrap(), UserId::new(42));
        assert_eq!(account.to_string(), "7");
        assert_eq!("9".parse::<AccountId>().unwrap(), AccountId::new(9));
        assert_eq!(std::mem::size_of::<AccountId>(), std::mem::size_of::<i64>());
    }
}
