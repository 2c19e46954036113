//! Idempotency keys: the key, the fingerprint of its request and the response given, read and
//! written by the ledger writer, the record in the same transaction as the effect (see
//! `ledger::store`).

use crate::domain::accounts::UserId;

/// A response as first given, replayed for repeats of the same key and request.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub fingerprint: Vec<u8>,
    pub response: StoredResponse,
}

pub type KeyId = (UserId, String);
