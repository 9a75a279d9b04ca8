//! The hosted pages over plain HTTP: a cookie jar, the forms' hidden
//! fields, and the device approval a person makes.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::Value;

/// A person at a browser: a cookie jar on the server at `base` (redirects
/// followed), and the account they sign in with.
pub struct Browser {
    pub http: reqwest::Client,
    base: String,
    email: String,
    password: String,
}

impl Browser {
    /// A fresh browser (no cookies) on the server at `base`, for the user
    /// with this email and password.
    pub fn new(base: &str, email: &str, password: &str) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap(),
            base: base.to_string(),
            email: email.to_string(),
            password: password.to_string(),
        }
    }

    /// The server's base URL, which form actions are relative to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The page at `url`, whatever its status.
    pub async fn get(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Opens `url` and signs in there; returns the page after.
    pub async fn sign_in_at(&self, url: &str) -> String {
        let page = self.get(url).await;
        self.sign_in_on(&page).await
    }

    /// Submits the form whose action is `action` with its hidden fields
    /// (csrf_token, request_id, …) plus `fields`.
    pub async fn submit(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> String {
        let mut form = form_fields(page, action);
        for (k, v) in fields {
            form.insert(k.to_string(), v.to_string());
        }
        self.http
            .post(format!("{}{action}", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Fills the sign-in form on `page` with this browser's account.
    async fn sign_in_on(&self, page: &str) -> String {
        self.submit(
            page,
            "/device/sign-in",
            &[("email", &self.email), ("password", &self.password)],
        )
        .await
    }
}

/// Signs in with `email` and `password` on the server at `base` and makes
/// `decision` (`"approve"` or `"deny"`) on the device request behind
/// `verification_uri_complete`, as a person who opened that link would;
/// returns the page that answers the decision.
pub async fn decide_device(
    base: &str,
    verification_uri_complete: &str,
    email: &str,
    password: &str,
    decision: &str,
) -> String {
    let browser = Browser::new(base, email, password);
    let response = browser
        .http
        .get(verification_uri_complete)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "GET {verification_uri_complete}: {response:?}"
    );
    let page = browser.sign_in_on(&response.text().await.unwrap()).await;
    assert!(
        page.contains("Approve"),
        "no approval form after sign-in:\n{page}"
    );
    browser
        .submit(&page, "/device/decision", &[("decision", decision)])
        .await
}

/// The `name="…" value="…"` inputs of the form posting to `action`.
pub fn form_fields(page: &str, action: &str) -> HashMap<String, String> {
    let start = page
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form for {action} in:\n{page}"));
    let end = page[start..]
        .find("</form>")
        .map_or(page.len(), |i| start + i);
    let mut fields = HashMap::new();
    for input in page[start..end].split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        if let (Some(name), Some(value)) = (attr(tag, "name"), attr(tag, "value")) {
            fields.insert(name, html_unescape(&value));
        }
    }
    fields
}

/// The status and body of `response`: its JSON, `Null` when empty, or the
/// text as a JSON string when it is not JSON.
pub async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// The claims of a JWT, unverified: what a test reads of a token it holds.
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("a JWT's payload is base64url");
    serde_json::from_slice(&bytes).expect("a JWT's payload is JSON")
}

/// The double-quoted attribute `name` of an HTML tag, still escaped.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_string())
}

/// Undoes the escapes the pages' templates write into attribute values.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|end| *end <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_reads_the_named_form_only_and_unescapes() {
        let page = r#"
            <form method="post" action="/other"><input name="x" value="no"></form>
            <form method="post" action="/device/sign-in">
              <input type="hidden" name="csrf_token" value="a&amp;b&#x2d;c">
              <label for="email">Email</label><input id="email" name="email">
              <input type="hidden" name="user_code" value="BCDF&#45;GHJK">
            </form>"#;
        let fields = form_fields(page, "/device/sign-in");
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert_eq!(fields["csrf_token"], "a&b-c");
        assert_eq!(fields["user_code"], "BCDF-GHJK");
    }
}
