//! RFC 6749 §4.3, the legacy resource owner password grant, as seed 003
//! (Anchor) uses it: off unless a client lists it; the account's two-step
//! verification (`missing_totp` / `invalid_totp` with `two_step_mode`); the
//! lockout; and the device registered by `guid`, `dns_name`, `os_type` and
//! `os_version`.

use keyport_proto::{GrantType, TokenResponse};

use super::audit::Audit;
use super::authorize::{WorkspaceChoice, choose_workspace};
use super::clients::Client;
use super::metadata::DeviceMetadata;
use super::scopes::Role;
use super::signin::SignInError;
use super::tokens::Grant;
use super::two_step::{self, TwoStepMode};
use super::{Error, ErrorCode, Result};
use crate::crypto::{self, tokens::Password};
use crate::service::{Caller, Keyport};
use crate::store::{self, sessions::Session, two_step::Device};

/// Longest password accepted (PRODUCT.md: 8 to 1,024 characters); longer
/// is a malformed request and counts nothing.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// What the device says about itself on a password or refresh request.
#[derive(Debug, Clone, Default)]
pub struct DeviceReport {
    pub guid: Option<String>,
    pub dns_name: Option<String>,
    pub os_type: Option<String>,
    pub os_version: Option<String>,
}

impl DeviceReport {
    /// What the device reported, cleaned ([`DeviceMetadata::cleaned`]),
    /// as the device `guid`: the guid Keyport chose or recognised, never
    /// the one in the request.
    pub fn cleaned_for(&self, guid: &str) -> DeviceMetadata {
        DeviceMetadata {
            guid: Some(guid.to_string()),
            dns_name: self.dns_name.clone(),
            os_type: self.os_type.clone(),
            os_version: self.os_version.clone(),
            ..DeviceMetadata::default()
        }
        .cleaned()
    }
}

/// The stored form of a device's cleaned report.
fn device_row(reported: &DeviceMetadata) -> Device {
    Device {
        guid: reported.guid.clone().unwrap_or_default(),
        dns_name: reported.dns_name.clone(),
        os_type: reported.os_type.clone(),
        os_version: reported.os_version.clone(),
    }
}

/// A refresh's report for the session's device `guid`, when it reported
/// anything: the row to update in the refresh's transaction.
pub(crate) fn refreshed_device(guid: Option<&str>, report: &DeviceReport) -> Option<Device> {
    let device = device_row(&report.cleaned_for(guid?));
    let reported =
        device.dns_name.is_some() || device.os_type.is_some() || device.os_version.is_some();
    reported.then_some(device)
}

/// A password grant request, parsed at the edge.
#[derive(Debug)]
pub struct PasswordRequest {
    pub username: String,
    pub password: Password,
    /// The two-step code; empty counts as missing.
    pub auth_code: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    /// A workspace slug; default the user's first workspace.
    pub workspace: Option<String>,
    pub device: DeviceReport,
}

/// A `guid` as Keyport issues them: a UUID, in its lower-case hyphenated form.
pub fn parse_guid(text: &str) -> Option<String> {
    uuid::Uuid::try_parse(text.trim())
        .ok()
        .map(|u| u.hyphenated().to_string())
}

fn new_guid() -> String {
    uuid::Builder::from_random_bytes(crypto::random_bytes::<16>())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// What the second step of a password sign-in comes to, before any code
/// is checked.
#[derive(Debug, PartialEq, Eq)]
pub enum SecondStep<'a> {
    /// The account has no second step.
    NotAsked,
    /// No code came: `missing_totp` (an email or text code is sent now).
    Missing(TwoStepMode),
    /// A code came: check it; a wrong one is `invalid_totp`.
    Check(TwoStepMode, &'a str),
}

/// The account's second step against the request's `auth_code` (blank
/// counts as missing).
pub fn second_step(mode: Option<TwoStepMode>, auth_code: Option<&str>) -> SecondStep<'_> {
    match (mode, auth_code.filter(|c| !c.trim().is_empty())) {
        (None, _) => SecondStep::NotAsked,
        (Some(mode), None) => SecondStep::Missing(mode),
        (Some(mode), Some(code)) => SecondStep::Check(mode, code),
    }
}

/// The checks that need nothing stored: a request failing them is
/// malformed and counts toward no lockout.
fn check_shape(request: &PasswordRequest) -> Result<()> {
    if request.username.trim().is_empty() {
        return Err(Error::invalid_request("username is required"));
    }
    if request.password.expose().is_empty() {
        return Err(Error::invalid_request("password is required"));
    }
    if request.password.expose().chars().count() > MAX_PASSWORD_CHARS {
        // Longer than any password can be (`check_new_password`): malformed.
        return Err(Error::invalid_request(
            "a password has at most 1,024 characters",
        ));
    }
    Ok(())
}

impl Keyport {
    /// The password grant. Every failure after the request's shape is
    /// checked counts toward the account's lockout: a wrong password, a
    /// missing second step (the email or text-message code is sent then)
    /// and a wrong one.
    pub async fn password_grant(
        &self,
        client: &Client,
        request: PasswordRequest,
        caller: &Caller,
    ) -> Result<TokenResponse> {
        client.require(GrantType::Password)?;
        check_shape(&request)?;
        let requested = client.requested_scopes(request.scope.as_deref())?;
        let resource = client.check_resource(request.resource.as_deref())?;
        let checked = self
            .check_password(&request.username, &request.password, caller)
            .await
            .map_err(SignInError::into_oauth)?;
        let user = checked.user.clone();
        // The workspace is settled before any code is spent: a request
        // naming a workspace the user is not in changes nothing.
        let memberships = store::directory::memberships_of(self.store.pool(), &user.id).await?;
        let chosen = match request.workspace.as_deref() {
            Some(slug) => choose_workspace(&memberships, Some(slug)).map(|choice| match choice {
                WorkspaceChoice::Chosen(ws, role) => (Some(ws.clone()), role),
                _ => (None, None),
            }),
            None => Ok(match memberships.first() {
                Some((ws, role)) => (Some(ws.clone()), Role::parse(role)),
                None => (None, None),
            }),
        };
        let (workspace, role) = match chosen {
            Ok(chosen) => chosen,
            Err(e) => {
                self.release_attempt(&request.username).await?;
                return Err(e);
            }
        };
        let refused = match second_step(two_step::mode_of(&user), request.auth_code.as_deref()) {
            SecondStep::NotAsked => None,
            SecondStep::Missing(mode) => {
                self.second_step_failed(&checked, "missing_code", caller)
                    .await?;
                self.send_sign_in_code(&user, mode).await?;
                Some((ErrorCode::MissingTotp, mode))
            }
            SecondStep::Check(mode, code) => {
                if self.check_second_step(&user, code).await? {
                    None
                } else {
                    self.second_step_failed(&checked, "wrong_code", caller)
                        .await?;
                    Some((ErrorCode::InvalidTotp, mode))
                }
            }
        };
        if let Some((code, mode)) = refused {
            return Err(Error::TwoStep { code, mode });
        }
        self.finish_sign_in(&request.username, &user, "password_grant", caller)
            .await?;

        let (scope, _) = self.catalogue.filter(&requested, role);

        let now = self.clock.now();
        let guid = match request.device.guid.as_deref().and_then(parse_guid) {
            Some(guid)
                if store::two_step::device_of(self.store.pool(), &guid, &user.id).await? =>
            {
                guid
            }
            _ => new_guid(),
        };
        let reported = request.device.cleaned_for(&guid);
        let device = device_row(&reported);
        let session = Session {
            id: crypto::random_id(),
            user_id: Some(user.id.clone()),
            client_id: client.id.to_string(),
            workspace_id: workspace.as_ref().map(|w| w.slug.clone()),
            role,
            scope: scope.to_scope_string(),
            resource,
            label: reported.dns_name.clone().or(Some(client.name.clone())),
            metadata: serde_json::to_string(&reported)
                .map_err(|_| Error::internal("device metadata"))?,
            ip: caller.ip_string(),
            grant_type: GrantType::Password.as_str().into(),
            auth_time: Some(now),
            created_at: now,
            last_used_at: now,
            revoked_at: None,
        };
        let refresh = (scope.contains("offline_access") && client.allows(GrantType::RefreshToken))
            .then(|| crypto::tokens::new_refresh_token(&client.refresh_token_prefix));
        let refresh_hash = refresh.as_ref().map(crypto::tokens::Secret::hash);
        let minted = self.mint(
            client,
            Grant {
                session: session.clone(),
                refresh,
                user: Some(user.clone()),
                id_token: false,
                nonce: None,
                scope,
            },
            caller,
        )?;
        let refresh_expires = self.refresh_expiry(now, now);
        let (caller, email, opaque) = (caller.clone(), user.email.clone(), minted.opaque.clone());
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::two_step::upsert_device(&mut *c, &user.id, &device, now).await?;
                    let refresh = refresh_hash.as_deref().map(|h| (h, refresh_expires));
                    store::sessions::open(&mut *c, &session, refresh, opaque.as_ref()).await?;
                    Audit::new("token.issue", "success")
                        .actor(Some(&email))
                        .client(&session.client_id)
                        .session(&session.id)
                        .detail(serde_json::json!({
                            "grant_type": GrantType::Password.as_str(),
                            "scope": session.scope,
                            "guid": device.guid,
                        }))
                        .record(c, now * 1000, &caller)
                        .await
                })
            })
            .await?;
        Ok(minted.response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(username: &str, password: &str) -> PasswordRequest {
        PasswordRequest {
            username: username.into(),
            password: Password::new(password.to_string()),
            auth_code: None,
            scope: None,
            resource: None,
            workspace: None,
            device: DeviceReport::default(),
        }
    }

    #[test]
    fn malformed_requests_are_refused_before_anything_counts() {
        assert!(check_shape(&request("ada@example.com", "correct horse")).is_ok());
        assert!(check_shape(&request("  ", "correct horse")).is_err());
        assert!(check_shape(&request("ada@example.com", "")).is_err());
        assert!(check_shape(&request("ada@example.com", &"x".repeat(1024))).is_ok());
        assert!(check_shape(&request("ada@example.com", &"x".repeat(1025))).is_err());
    }

    #[test]
    fn the_second_step_is_asked_for_only_when_the_account_has_one() {
        use TwoStepMode::*;
        let cases = [
            (None, None, SecondStep::NotAsked),
            (None, Some("123456"), SecondStep::NotAsked),
            (
                Some(Authenticator),
                None,
                SecondStep::Missing(Authenticator),
            ),
            (Some(Email), Some("  "), SecondStep::Missing(Email)),
            (Some(Sms), Some("123456"), SecondStep::Check(Sms, "123456")),
        ];
        for (mode, code, expected) in cases {
            assert_eq!(second_step(mode, code), expected, "{mode:?} {code:?}");
        }
    }

    #[test]
    fn a_refresh_updates_the_sessions_device_only_with_something_reported() {
        let report = DeviceReport {
            guid: Some("a guid the request made up".into()),
            os_version: Some(" 5.1.0\u{202e} ".into()),
            ..DeviceReport::default()
        };
        let device = refreshed_device(Some("session-guid"), &report).unwrap();
        assert_eq!(device.guid, "session-guid");
        assert_eq!(device.os_version.as_deref(), Some("5.1.0\u{fffd}"));
        assert_eq!(refreshed_device(None, &report), None);
        assert_eq!(refreshed_device(Some("g"), &DeviceReport::default()), None);
    }

    #[test]
    fn guids_are_uuids_in_one_form() {
        let guid = new_guid();
        assert_eq!(parse_guid(&guid), Some(guid.clone()));
        assert_eq!(parse_guid(&guid.to_uppercase()), Some(guid));
        assert_eq!(parse_guid("my-laptop"), None);
        assert_eq!(parse_guid(""), None);
    }
}
