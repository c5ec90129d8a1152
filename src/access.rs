//! Who may operate cspsync (issue 4): the setup account is admin; allowed users are viewers
//! (reconcile, read-only) or operators (may also apply syncs); anyone else signed in can use
//! nothing but Sign in. Derived from the settings, never stored separately.

use crate::config::{Role, Settings};

/// The signed-in person's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No setup account yet: the first-time wizard, open to whoever runs it.
    FirstSetup,
    /// Set up, but nobody is signed in: only Sign in.
    SignedOut,
    /// The account that ran the setup.
    Admin,
    /// An allowed user with this role.
    Allowed(Role),
    /// Signed in, but not on the allowed list.
    Denied { name: String },
}

impl Access {
    /// Whether tabs other than Sign in may be used.
    pub fn may_use_app(&self) -> bool {
        matches!(
            self,
            Access::FirstSetup | Access::Admin | Access::Allowed(_)
        )
    }

    /// Whether the allowed-users list and the setup steps may be changed.
    pub fn is_admin(&self) -> bool {
        matches!(self, Access::FirstSetup | Access::Admin)
    }

    /// Whether syncs may be applied (issue 6).
    pub fn may_apply_sync(&self) -> bool {
        matches!(
            self,
            Access::FirstSetup | Access::Admin | Access::Allowed(Role::Operator)
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            Access::FirstSetup => "setup",
            Access::SignedOut => "signed out",
            Access::Admin => "admin",
            Access::Allowed(Role::Operator) => "operator",
            Access::Allowed(Role::Viewer) => "viewer",
            Access::Denied { .. } => "not allowed",
        }
    }
}

/// Decide from the settings (and whether a Microsoft session is stored).
pub fn decide(settings: &Settings, has_session: bool) -> Access {
    let ms = &settings.microsoft;
    if ms.setup_user_oid.trim().is_empty() {
        return Access::FirstSetup;
    }
    // Older settings have no signed-in user recorded: the session is the setup account's.
    let signed_in = if ms.signed_in_oid.trim().is_empty() {
        &ms.setup_user_oid
    } else {
        &ms.signed_in_oid
    };
    if !has_session {
        return Access::SignedOut;
    }
    if signed_in.eq_ignore_ascii_case(&ms.setup_user_oid) {
        return Access::Admin;
    }
    match settings
        .access
        .allowed
        .iter()
        .find(|u| u.oid.eq_ignore_ascii_case(signed_in))
    {
        Some(u) => Access::Allowed(u.role),
        None => Access::Denied {
            name: if ms.signed_in_name.is_empty() {
                signed_in.clone()
            } else {
                ms.signed_in_name.clone()
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AllowedUser;

    fn settings() -> Settings {
        let mut s = Settings::default();
        s.microsoft.setup_user_oid = "admin-oid".into();
        s.access.allowed.push(AllowedUser {
            oid: "op-oid".into(),
            role: Role::Operator,
            ..Default::default()
        });
        s.access.allowed.push(AllowedUser {
            oid: "view-oid".into(),
            role: Role::Viewer,
            ..Default::default()
        });
        s
    }

    #[test]
    fn every_standing() {
        assert_eq!(decide(&Settings::default(), false), Access::FirstSetup);
        let mut s = settings();
        assert_eq!(decide(&s, false), Access::SignedOut);
        assert_eq!(decide(&s, true), Access::Admin);
        s.microsoft.signed_in_oid = "OP-OID".into();
        assert_eq!(decide(&s, true), Access::Allowed(Role::Operator));
        assert!(decide(&s, true).may_apply_sync());
        s.microsoft.signed_in_oid = "view-oid".into();
        let v = decide(&s, true);
        assert!(v.may_use_app() && !v.may_apply_sync() && !v.is_admin());
        s.microsoft.signed_in_oid = "stranger".into();
        s.microsoft.signed_in_name = "eve@msp.example".into();
        let d = decide(&s, true);
        assert_eq!(
            d,
            Access::Denied {
                name: "eve@msp.example".into()
            }
        );
        assert!(!d.may_use_app());
    }
}
