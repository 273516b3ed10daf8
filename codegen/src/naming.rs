//! Rust names for schema and WSDL names.

use xsd_parser::models::Naming as XsdNaming;
use xsd_parser::traits::Naming as _;

/// The Rust type name xsd-parser gives a global element or type `local`.
pub(crate) fn type_name(local: &str) -> String {
    XsdNaming::default().format_type_name(local)
}

/// `ResetPIN` -> `reset_pin`, `IsUMEnabled` -> `is_um_enabled`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && i > 0 {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower)
                {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_owned();
    match out.chars().next() {
        None => "op".into(),
        Some(c) if c.is_ascii_digit() => format!("_{out}"),
        _ => out,
    }
}

/// `ResetPIN` -> `RESET_PIN`.
pub(crate) fn constant_case(name: &str) -> String {
    snake_case(name).to_ascii_uppercase()
}

/// A constant name for a namespace, from the last segment of its name:
/// `http://schemas.microsoft.com/exchange/services/2006/messages` ->
/// `MESSAGES`, `urn:example:calc` -> `CALC`.
pub(crate) fn namespace_constant(namespace: &str) -> String {
    namespace
        .trim_end_matches(['/', '#'])
        .rsplit(['/', ':', '#'])
        .find(|s| !s.is_empty())
        .map(constant_case)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "NAMESPACE".into())
}

/// `UMServiceSoap` -> `UmServiceSoap`.
pub(crate) fn pascal_case(name: &str) -> String {
    snake_case(name)
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// An identifier that is valid Rust, raw when it is a keyword.
pub(crate) fn ident(name: &str) -> proc_macro2::Ident {
    let name = if name.is_empty() { "_x" } else { name };
    syn::parse_str::<syn::Ident>(name)
        .unwrap_or_else(|_| proc_macro2::Ident::new_raw(name, proc_macro2::Span::call_site()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        assert_eq!(snake_case("ResetPIN"), "reset_pin");
        assert_eq!(snake_case("IsUMEnabled"), "is_um_enabled");
        assert_eq!(snake_case("GetUMProperties"), "get_um_properties");
        assert_eq!(
            snake_case("SetPlayOnPhoneDialString"),
            "set_play_on_phone_dial_string"
        );
        assert_eq!(snake_case("get-item.v2"), "get_item_v2");
        assert_eq!(constant_case("ResetPIN"), "RESET_PIN");
        assert_eq!(pascal_case("UMServiceSoap"), "UmServiceSoap");
        assert_eq!(
            namespace_constant("http://schemas.microsoft.com/exchange/services/2006/messages"),
            "MESSAGES"
        );
        assert_eq!(namespace_constant("urn:example:calc"), "CALC");
        assert_eq!(namespace_constant("http://example.com/ns/"), "NS");
        assert_eq!(namespace_constant(""), "NAMESPACE");
        assert_eq!(type_name("ResetPIN"), "ResetPin");
        assert_eq!(ident("type").to_string(), "r#type");
        assert_eq!(ident("move_item").to_string(), "move_item");
    }
}
