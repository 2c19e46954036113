//! Pure domain rules: money, names, business days, split bills, who may reach whom. No I/O and no framework types here.

pub mod accounts;
pub mod business_day;
pub mod ids;
pub mod interest;
pub mod money;
pub mod names;
pub mod notifications;
pub mod passwords;
pub mod settlements;
pub mod social;
pub mod text_enum;
pub mod transfers;
pub mod weak_passwords;
