//! Ids of the records the domain speaks of. A leaf module, so every domain module can name
//! them without depending on another.

pub type AccountId = i64;
pub type UserId = i64;
