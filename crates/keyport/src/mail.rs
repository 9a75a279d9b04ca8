//! Outbound messages: email through SMTP (lettre, STARTTLS on rustls) or,
//! without an `[smtp]` host, into `outbox/` in the data directory (one
//! `.eml` file a message); text messages to the `[sms]` webhook or the same
//! outbox (one `.sms.json` file a message). Files are written 0600: they
//! hold sign-in codes.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Config, Sms, Smtp};
use crate::crypto;

/// How long one SMTP conversation or webhook call may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid [smtp] settings: {0}")]
    Config(String),
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("sending failed: {0}")]
    Send(String),
}

/// Where mail and text messages go, set up once from the configuration.
#[derive(Clone)]
pub struct Outbound {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    /// The SMS webhook and the HTTP client for it, made only when one is
    /// configured (a client loads the system's root certificates, which
    /// costs start-up time and memory nothing else needs).
    sms_webhook: Option<(url::Url, reqwest::Client)>,
    outbox: PathBuf,
}

impl Outbound {
    pub fn new(config: &Config) -> Result<Self, MailError> {
        Self::from_settings(&config.smtp, &config.sms, config.data_dir.join("outbox"))
    }

    fn from_settings(smtp: &Smtp, sms: &Sms, outbox: PathBuf) -> Result<Self, MailError> {
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|_| MailError::Config(format!("`from` is not an address: {:?}", smtp.from)))?;
        let transport = match &smtp.host {
            None => None,
            Some(host) => {
                let builder = if smtp.starttls {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                        .map_err(|e| MailError::Config(e.to_string()))?
                } else {
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(25)
                };
                let mut builder = builder.timeout(Some(SEND_TIMEOUT));
                if let Some(port) = smtp.port {
                    builder = builder.port(port);
                }
                if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
                    builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
                }
                Some(builder.build())
            }
        };
        let sms_webhook = sms
            .webhook_url
            .as_deref()
            .map(|u| {
                url::Url::parse(u)
                    .map_err(|_| MailError::Config(format!("[sms] webhook_url {u:?} is not a URL")))
            })
            .transpose()?;
        let sms_webhook = match sms_webhook {
            None => None,
            Some(url) => {
                let http = reqwest::Client::builder()
                    .timeout(SEND_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| MailError::Config(e.to_string()))?;
                Some((url, http))
            }
        };
        Ok(Self {
            smtp: transport,
            from,
            sms_webhook,
            outbox,
        })
    }

    /// Sends a plain-text email to `to`.
    pub async fn send_email(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_string()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| MailError::Send(e.to_string()))?;
        match &self.smtp {
            Some(smtp) => {
                smtp.send(message)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
            }
            None => self.write_outbox("eml", &message.formatted()).await?,
        }
        Ok(())
    }

    /// Sends a text message to the phone number `to`.
    pub async fn send_sms(&self, to: &str, text: &str) -> Result<(), MailError> {
        let body = serde_json::json!({ "to": to, "text": text });
        match &self.sms_webhook {
            Some((url, http)) => {
                let response = http
                    .post(url.clone())
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| MailError::Send(e.without_url().to_string()))?;
                if !response.status().is_success() {
                    return Err(MailError::Send(format!(
                        "the SMS webhook answered {}",
                        response.status()
                    )));
                }
            }
            None => {
                self.write_outbox("sms.json", body.to_string().as_bytes())
                    .await?
            }
        }
        Ok(())
    }

    async fn write_outbox(&self, extension: &str, contents: &[u8]) -> Result<(), MailError> {
        let name = format!(
            "{}-{}.{extension}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
            &crypto::random_id()[..8]
        );
        let (dir, contents) = (self.outbox.clone(), contents.to_vec());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            crypto::seal::write_private_file(&dir.join(name), &contents)
        })
        .await
        .map_err(|e| MailError::Send(e.to_string()))?
        .map_err(|e| MailError::Send(format!("cannot write to the outbox: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_host_mail_and_texts_land_in_the_outbox() {
        let dir = std::env::temp_dir().join(format!("keyport-outbox-{}", crypto::random_id()));
        let out = Outbound::from_settings(&Smtp::default(), &Sms::default(), dir.clone()).unwrap();
        out.send_email("ada@example.com", "Your code", "123456")
            .await
            .unwrap();
        out.send_sms("+15550100", "Keyport code 654321")
            .await
            .unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        let eml = names.iter().find(|n| n.ends_with(".eml")).unwrap();
        let text = std::fs::read_to_string(dir.join(eml)).unwrap();
        assert!(text.contains("To: ada@example.com"), "{text}");
        assert!(text.contains("123456"), "{text}");
        assert!(
            Outbound::from_settings(
                &Smtp {
                    from: "not an address".into(),
                    ..Smtp::default()
                },
                &Sms::default(),
                dir.clone()
            )
            .is_err()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
