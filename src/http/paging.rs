//! Page sizes and cursors, the same on every list route.

use super::error::ApiError;

pub const PAGE_SIZE_DEFAULT: i64 = 50;
pub const PAGE_SIZE_MAX: i64 = 200;

/// `limit` is 1..=200, 50 when absent; anything else is refused.
pub fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(PAGE_SIZE_DEFAULT),
        Some(limit) if (1..=PAGE_SIZE_MAX).contains(&limit) => Ok(limit),
        Some(_) => Err(ApiError::validation(format!("limit must be between 1 and {PAGE_SIZE_MAX}"))),
    }
}

/// Cursors over id-ordered lists: the last id seen, as an opaque string.
pub fn encode_id_cursor(id: i64) -> String {
    format!("i{id}")
}

pub fn decode_id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    match cursor {
        None => Ok(None),
        Some(text) => text
            .strip_prefix('i')
            .and_then(|digits| digits.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or_else(|| ApiError::validation("malformed cursor")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_validated() {
        assert_eq!(page_size(None).unwrap(), 50);
        assert_eq!(page_size(Some(200)).unwrap(), 200);
        assert!(page_size(Some(0)).is_err() && page_size(Some(201)).is_err());
        assert_eq!(decode_id_cursor(Some(&encode_id_cursor(42))).unwrap(), Some(42));
        assert!(decode_id_cursor(Some("garbage")).is_err());
        assert!(decode_id_cursor(Some("i-1")).is_err());
        assert_eq!(decode_id_cursor(None).unwrap(), None);
    }
}
