//! The one rule for tenant ids, applied wherever the gateway takes one: the `tenant` of
//! `POST /v1/orders` and the `?tenant=` of `GET /v1/features`.

/// The longest tenant id, in characters: the width of the `orders.tenant` column
/// (`VARCHAR(100)`, which PostgreSQL counts in characters).
pub const MAX_TENANT_CHARS: usize = 100;

/// Checks a tenant id: 1 to [`MAX_TENANT_CHARS`] characters, no control characters (NUL, line
/// breaks, ...), no whitespace at either end. Ids are stored and compared as sent, so `" a"` and
/// `"a"` would be two tenants; refusing the first keeps that from happening by accident.
///
/// The error names the rule that was broken and never repeats the id, which may be long.
pub(crate) fn validate_tenant(tenant: &str) -> Result<(), String> {
    if tenant.is_empty() {
        return Err(format!(
            "tenant is empty: send 1 to {MAX_TENANT_CHARS} characters"
        ));
    }
    // Four bytes per character at most, so a longer string is over the limit without counting.
    if tenant.len() > 4 * MAX_TENANT_CHARS || tenant.chars().count() > MAX_TENANT_CHARS {
        return Err(format!(
            "tenant is too long: send 1 to {MAX_TENANT_CHARS} characters"
        ));
    }
    if tenant.chars().any(char::is_control) {
        return Err(
            "tenant must not contain control characters (NUL, line breaks, ...)".to_owned(),
        );
    }
    if tenant.starts_with(char::is_whitespace) || tenant.ends_with(char::is_whitespace) {
        return Err("tenant must not begin or end with whitespace".to_owned());
    }
    Ok(())
}

/// The tenant as one part of a Redis key: `%` and `:` are percent-encoded, so the part holds no
/// `:` and the parts of a key joined with `:` cannot be read another way (tenant `acme` with
/// key `k1:x` and tenant `acme:k1` with key `x` stay apart). Ids without either character are
/// unchanged.
pub(crate) fn key_part(tenant: &str) -> std::borrow::Cow<'_, str> {
    if !tenant.contains(['%', ':']) {
        return tenant.into();
    }
    tenant.replace('%', "%25").replace(':', "%3A").into()
}

#[cfg(test)]
mod tests {
    use super::{key_part, validate_tenant};

    #[test]
    fn the_rule_counts_characters_and_refuses_control_characters_and_padding() {
        assert!(validate_tenant("tenant-1").is_ok());
        assert!(validate_tenant("acme:eu west").is_ok());
        assert!(validate_tenant(&"é".repeat(100)).is_ok());
        for (tenant, expected) in [
            ("", "empty"),
            (&*"t".repeat(101), "100 characters"),
            (&*"é".repeat(101), "100 characters"),
            ("a\0b", "control characters"),
            ("a\u{85}b", "control characters"),
            (" pad ", "whitespace"),
            ("pad\u{a0}", "whitespace"),
        ] {
            let message = validate_tenant(tenant).err().unwrap_or_default();
            assert!(message.contains(expected), "{tenant:?}: {message}");
        }
    }

    #[test]
    fn key_parts_never_contain_the_separator() {
        assert_eq!(key_part("acme"), "acme");
        assert_eq!(key_part("acme:k1"), "acme%3Ak1");
        assert_eq!(key_part("100%:"), "100%25%3A");
        assert_ne!(
            format!("{}:{}", key_part("acme"), "k1:x"),
            format!("{}:{}", key_part("acme:k1"), "x")
        );
    }
}
