//! Alternative spellings of namespace names.
//!
//! Some published examples spell a namespace differently from its schema
//! (the Exchange documentation rewrote `http://schemas.microsoft.com/...` to
//! `https://...`). A server may accept such a spelling, read the request as if
//! it used the canonical name, and answer in the spelling the request used.

/// A set of namespace prefixes that may be spelled two ways.
///
/// Each entry maps an alias prefix to a canonical prefix; a namespace name
/// starting with the alias is read as the same name starting with the
/// canonical prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceAliases {
    entries: Vec<(String, String)>,
}

impl NamespaceAliases {
    /// No aliases: every namespace must be spelled exactly as in the schema.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds an alias: names starting with `alias` are read as starting with
    /// `canonical`.
    pub fn with(mut self, alias: impl Into<String>, canonical: impl Into<String>) -> Self {
        self.entries.push((alias.into(), canonical.into()));
        self
    }

    /// Whether no alias is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The canonical spelling of `ns` and the index of the alias used, if any.
    pub fn to_canonical(&self, ns: &str) -> Option<(usize, String)> {
        self.entries
            .iter()
            .enumerate()
            .find_map(|(i, (alias, canonical))| {
                ns.strip_prefix(alias.as_str())
                    .map(|rest| (i, format!("{canonical}{rest}")))
            })
    }

    /// The spelling of canonical `ns` under alias `index` (the inverse of
    /// [`to_canonical`](Self::to_canonical)); `None` when `ns` is not covered.
    pub fn to_alias(&self, index: usize, ns: &str) -> Option<String> {
        let (alias, canonical) = self.entries.get(index)?;
        ns.strip_prefix(canonical.as_str())
            .map(|rest| format!("{alias}{rest}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let a = NamespaceAliases::none().with("https://example.com/", "http://example.com/");
        let (i, c) = a.to_canonical("https://example.com/x").unwrap();
        assert_eq!(c, "http://example.com/x");
        assert_eq!(a.to_alias(i, &c).unwrap(), "https://example.com/x");
        assert!(a.to_canonical("http://example.com/x").is_none());
        assert!(a.to_alias(i, "urn:other").is_none());
    }
}
