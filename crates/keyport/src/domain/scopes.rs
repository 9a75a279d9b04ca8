//! Scopes and roles: the catalogue (each scope's least role), parsing of
//! `scope` parameters (RFC 6749 §3.3) and filtering by a member's role.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::ScopeDef;

/// Workspace roles, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `scope` parameter: distinct scope tokens in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// RFC 6749 §3.3: space-delimited tokens of `%x21 / %x23-5B / %x5D-7E`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut set = BTreeSet::new();
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            let valid = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return None;
            }
            set.insert(token.to_string());
        }
        Some(Self(set))
    }

    pub fn from_list(items: &[String]) -> Self {
        Self(items.iter().cloned().collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn retain(&mut self, keep: impl FnMut(&String) -> bool) {
        self.0.retain(keep);
    }

    pub fn to_scope_string(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}

/// Scopes that need no workspace role: identity and refresh.
pub const IDENTITY_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The scope catalogue: the identity scopes, the workspace scopes of seed 000
/// and whatever the configuration adds.
#[derive(Debug, Clone)]
pub struct Catalogue(Vec<ScopeDef>);

impl Catalogue {
    pub fn new(extra: &[ScopeDef]) -> Self {
        let builtin: &[(&str, Option<Role>, &str)] = &[
            ("openid", None, "Sign you in (OpenID Connect)"),
            ("profile", None, "Your name"),
            ("email", None, "Your email address"),
            ("offline_access", None, "Stay signed in (refresh tokens)"),
            ("agents:read", Some(Role::Viewer), "List and get agents"),
            (
                "agents:write",
                Some(Role::Member),
                "Create, update and delete agents",
            ),
            ("operations:write", Some(Role::Member), "Run operations"),
            (
                "workspace:read",
                Some(Role::Viewer),
                "Read workspace settings, usage and activity",
            ),
            (
                "workspace:write",
                Some(Role::Admin),
                "Change workspace settings",
            ),
            ("integrations:read", Some(Role::Viewer), "List integrations"),
            (
                "integrations:write",
                Some(Role::Admin),
                "Connect and disconnect integrations",
            ),
            ("audit:read", Some(Role::Admin), "Read the audit trail"),
        ];
        let mut defs: Vec<ScopeDef> = builtin
            .iter()
            .map(|(name, min_role, description)| ScopeDef {
                name: name.to_string(),
                min_role: *min_role,
                description: Some(description.to_string()),
            })
            .collect();
        for def in extra {
            defs.retain(|d| d.name != def.name);
            defs.push(def.clone());
        }
        Self(defs)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|d| d.name.clone()).collect()
    }

    /// The scopes that need a workspace role, with that role and their
    /// description: what an API key may carry.
    pub fn workspace_scopes(&self) -> Vec<(String, Role, String)> {
        self.0
            .iter()
            .filter_map(|d| {
                let role = d.min_role?;
                Some((
                    d.name.clone(),
                    role,
                    d.description.clone().unwrap_or_default(),
                ))
            })
            .collect()
    }

    pub fn describe(&self, scope: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|d| d.name == scope)
            .and_then(|d| d.description.as_deref())
    }

    /// The least role a scope needs. A scope outside the catalogue (a
    /// client's own API scope) needs membership but no particular role.
    pub fn min_role(&self, scope: &str) -> Option<Role> {
        match self.0.iter().find(|d| d.name == scope) {
            Some(def) => def.min_role,
            None => Some(Role::Viewer),
        }
    }

    /// Whether `role` (none: not a member of any workspace) may be granted `scope`.
    pub fn allows(&self, scope: &str, role: Option<Role>) -> bool {
        match self.min_role(scope) {
            None => true,
            Some(min) => role.is_some_and(|role| role >= min),
        }
    }

    /// Splits requested scopes into those the role allows and those it does not.
    /// What a consent page lists: each requested scope, its description,
    /// and whether `role` allows it.
    pub fn review(&self, requested: &Scopes, role: Option<Role>) -> Vec<(String, String, bool)> {
        requested
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    self.describe(s).unwrap_or("").to_string(),
                    self.allows(s, role),
                )
            })
            .collect()
    }

    pub fn filter(&self, requested: &Scopes, role: Option<Role>) -> (Scopes, Vec<String>) {
        let mut granted = requested.clone();
        let mut refused = Vec::new();
        granted.retain(|scope| {
            let ok = self.allows(scope, role);
            if !ok {
                refused.push(scope.clone());
            }
            ok
        });
        (granted, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing_dedupes_and_rejects_bad_characters() {
        let s = Scopes::parse("openid  profile openid").unwrap();
        assert_eq!(s.to_scope_string(), "openid profile");
        assert!(Scopes::parse("a\"b").is_none());
        assert!(Scopes::parse("a\\b").is_none());
    }

    #[test]
    fn roles_filter_scopes_as_seed_000_says() {
        let catalogue = Catalogue::new(&[]);
        let requested = Scopes::parse("openid agents:read agents:write audit:read").unwrap();
        let (granted, refused) = catalogue.filter(&requested, Some(Role::Member));
        assert_eq!(granted.to_scope_string(), "agents:read agents:write openid");
        assert_eq!(refused, vec!["audit:read".to_string()]);
        let (granted, _) = catalogue.filter(&requested, None);
        assert_eq!(granted.to_scope_string(), "openid");
        assert!(
            Role::Owner > Role::Admin && Role::Admin > Role::Member && Role::Member > Role::Viewer
        );
    }
}
