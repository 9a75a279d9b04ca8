//! Building audit events. Each is written in the same transaction as the
//! change it records (or, for the few a crash may lose, queued off the
//! response's path), and echoed to the `audit` tracing target.

use crate::crypto;
use crate::service::Caller;
use crate::store::{self, Store, audit::AuditEvent};

/// An event about to be recorded.
pub struct Audit<'a> {
    pub event: &'static str,
    pub outcome: &'static str,
    pub actor: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub workspace_id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub detail: Option<serde_json::Value>,
}

impl<'a> Audit<'a> {
    pub fn new(event: &'static str, outcome: &'static str) -> Self {
        Self {
            event,
            outcome,
            actor: None,
            client_id: None,
            session_id: None,
            workspace_id: None,
            target: None,
            detail: None,
        }
    }

    pub fn actor(mut self, actor: Option<&'a str>) -> Self {
        self.actor = actor;
        self
    }

    pub fn client(mut self, client_id: &'a str) -> Self {
        self.client_id = Some(client_id);
        self
    }

    pub fn session(mut self, session_id: &'a str) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// The workspace the event concerns.
    pub fn workspace(mut self, workspace_id: &'a str) -> Self {
        self.workspace_id = Some(workspace_id);
        self
    }

    /// What the event acted on: a member's email, a session or a key id.
    pub fn target(mut self, target: &'a str) -> Self {
        self.target = Some(target);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn into_event(self, at_ms: i64, caller: &Caller) -> AuditEvent {
        // Time-ordered ids keep exports stable within one millisecond.
        let id = format!("{at_ms:013x}{}", &crypto::random_id()[..12]);
        AuditEvent {
            id,
            at_ms,
            event: self.event.into(),
            outcome: self.outcome.into(),
            actor: self.actor.map(str::to_string),
            client_id: self.client_id.map(str::to_string),
            session_id: self.session_id.map(str::to_string),
            workspace_id: self.workspace_id.map(str::to_string),
            target: self.target.map(str::to_string),
            ip: caller.ip_string(),
            detail: self.detail,
        }
    }

    pub async fn record<'e>(
        self,
        into: impl Into<store::reads::Source<'e>>,
        at_ms: i64,
        caller: &Caller,
    ) -> store::Result<()> {
        let event = self.logged(at_ms, caller);
        store::audit::insert(into, &event).await
    }

    /// Records the event without waiting for its row to commit
    /// ([`Store::append_audit`](crate::store::Store::append_audit)): only
    /// for an event whose row a crash may lose without losing anything a
    /// client was told.
    pub async fn record_detached(self, store: &Store, at_ms: i64, caller: &Caller) {
        store.append_audit(self.logged(at_ms, caller)).await;
    }

    /// The event, written to the log as it is made.
    fn logged(self, at_ms: i64, caller: &Caller) -> AuditEvent {
        let event = self.into_event(at_ms, caller);
        tracing::info!(
            target: "audit",
            event = %event.event,
            outcome = %event.outcome,
            actor = event.actor.as_deref(),
            client_id = event.client_id.as_deref(),
            session_id = event.session_id.as_deref(),
            workspace_id = event.workspace_id.as_deref(),
            target = event.target.as_deref(),
            ip = event.ip.as_deref(),
        );
        event
    }
}
